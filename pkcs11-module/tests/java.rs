//! Java's SunPKCS11 (the JDK's `keytool` and a small program run by the JDK's source launcher)
//! against `libhsmkit_pkcs11.so`: a key pair and its self-signed certificate generated into the
//! token, listed as a private key entry, a signature made on the token and verified by the JDK's
//! own RSA provider, a PKCS#12 key store imported into the token, and an import the module cannot
//! take (an EC key) that leaves nothing behind. `bash scripts/test.sh` installs the JDK
//! (`default-jdk-headless`) when it is missing.

mod common;

use std::path::Path;
use std::process::{Command, ExitCode, Output};

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (bash scripts/test.sh installs the JDK)"))
}

use common::text;

fn keytool(cfg: &Path, args: &[&str]) -> Output {
    let cfg = cfg.display().to_string();
    let mut all = vec![
        "-keystore",
        "NONE",
        "-storetype",
        "PKCS11",
        "-providerClass",
        "sun.security.pkcs11.SunPKCS11",
        "-providerArg",
        &cfg,
        "-storepass",
        common::USER_PIN,
    ];
    all.splice(0..0, args.iter().copied());
    run("keytool", &all)
}

fn main() -> ExitCode {
    common::with_throwaway_conf(|| {
        drop(common::initialised_backend());
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("p11.cfg");
        std::fs::write(&cfg, format!("name = hsmkit\nlibrary = {}\nslot = 0\n", common::module_path().display()))
            .expect("cfg");
        let check = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/Check.java");
        let mut report = common::Report::default();
        let mut expect = |what: &str, ok: bool, out: &Output| report.expect(what, ok, out);

        let out = keytool(
            &cfg,
            &["-genkeypair", "-alias", "k1", "-keyalg", "RSA", "-keysize", "2048", "-dname", "CN=hsmkit java"],
        );
        expect("keytool -genkeypair into the token", out.status.success(), &out);
        let out = keytool(&cfg, &["-list"]);
        expect("keytool -list shows the private key entry", text(&out).contains("k1, PrivateKeyEntry"), &out);
        let cfg_s = cfg.display().to_string();
        let check_s = check.display().to_string();
        let out = run("java", &[&check_s, &cfg_s, common::USER_PIN, "k1", "more"]);
        expect(
            "a token signature verified by the JDK's own provider",
            text(&out).contains("verified k1 (SHA256withRSA)"),
            &out,
        );
        expect(
            "RSASSA-PSS through the token, verified by SunRsaSign",
            text(&out).contains("RSASSA-PSS verified"),
            &out,
        );
        expect(
            "RSA/ECB/PKCS1Padding: SunJCE encrypts, the token decrypts",
            text(&out).contains("RSA/ECB/PKCS1Padding decrypted"),
            &out,
        );
        expect("HmacSHA256 through the token equals SunJCE's", text(&out).contains("HmacSHA256 matches"), &out);
        expect(
            "AES/CBC/PKCS5Padding in parts through the token, decrypted by SunJCE",
            text(&out).contains("AES/CBC/PKCS5Padding matches"),
            &out,
        );
        expect(
            "AES/GCM/NoPadding with AAD through the token, opened by SunJCE",
            text(&out).contains("AES/GCM/NoPadding matches"),
            &out,
        );
        expect(
            "DESede/CBC/PKCS5Padding (legacy) through the token, decrypted by SunJCE",
            text(&out).contains("DESede/CBC/PKCS5Padding matches"),
            &out,
        );

        // A PKCS#12 key store (made by the JDK in software) imported into the token.
        let p12 = dir.path().join("src.p12").display().to_string();
        let out = run(
            "keytool",
            &[
                "-genkeypair",
                "-alias",
                "imported",
                "-keyalg",
                "RSA",
                "-keysize",
                "2048",
                "-dname",
                "CN=imported",
                "-keystore",
                &p12,
                "-storetype",
                "PKCS12",
                "-storepass",
                "changeit",
            ],
        );
        expect("a software PKCS#12 key store", out.status.success(), &out);
        let import = |src: &str, alias: &str| {
            keytool(
                &cfg,
                &[
                    "-importkeystore",
                    "-srckeystore",
                    src,
                    "-srcstoretype",
                    "PKCS12",
                    "-srcstorepass",
                    "changeit",
                    "-srcalias",
                    alias,
                    "-noprompt",
                ],
            )
        };
        let out = import(&p12, "imported");
        expect("keytool -importkeystore into the token", out.status.success(), &out);
        let out = run("java", &[&check_s, &cfg_s, common::USER_PIN, "imported"]);
        expect("the imported key signs on the token", text(&out).contains("verified imported (SHA256withRSA)"), &out);

        // EC: a P-256 key pair made on the token by keytool, and a software EC key store
        // imported; each signs SHA256withECDSA on the token, verified by SunEC.
        let out = keytool(
            &cfg,
            &[
                "-genkeypair",
                "-alias",
                "ec1",
                "-keyalg",
                "EC",
                "-groupname",
                "secp256r1",
                "-dname",
                "CN=hsmkit java ec",
            ],
        );
        expect("keytool -genkeypair of a P-256 key into the token", out.status.success(), &out);
        let out = run("java", &[&check_s, &cfg_s, common::USER_PIN, "ec1"]);
        expect(
            "SHA256withECDSA with the token's P-256 key, verified by SunEC",
            text(&out).contains("verified ec1 (SHA256withECDSA)"),
            &out,
        );
        let ec = dir.path().join("ec.p12").display().to_string();
        let out = run(
            "keytool",
            &[
                "-genkeypair",
                "-alias",
                "eckey",
                "-keyalg",
                "EC",
                "-groupname",
                "secp256r1",
                "-dname",
                "CN=ec",
                "-keystore",
                &ec,
                "-storetype",
                "PKCS12",
                "-storepass",
                "changeit",
            ],
        );
        expect("a software EC key store", out.status.success(), &out);
        let out = import(&ec, "eckey");
        expect("keytool -importkeystore of the EC key into the token", out.status.success(), &out);
        let out = run("java", &[&check_s, &cfg_s, common::USER_PIN, "eckey"]);
        expect(
            "the imported EC key signs on the token (SHA256withECDSA, verified by SunEC)",
            text(&out).contains("verified eckey (SHA256withECDSA)"),
            &out,
        );

        // A key the module cannot hold (RSA-768, under the module's 1024-bit floor): refused, and
        // nothing of it is left on the token.
        let before = text(&keytool(&cfg, &["-list"]));
        let weak = dir.path().join("weak.p12").display().to_string();
        let out = run(
            "keytool",
            &[
                "-genkeypair",
                "-alias",
                "weak",
                "-keyalg",
                "RSA",
                "-keysize",
                "768",
                "-dname",
                "CN=weak",
                "-keystore",
                &weak,
                "-storetype",
                "PKCS12",
                "-storepass",
                "changeit",
            ],
        );
        expect("a software RSA-768 key store", out.status.success(), &out);
        let out = import(&weak, "weak");
        let after = keytool(&cfg, &["-list"]);
        // keytool reports the entry it could not import (and exits 0 for a partial import).
        expect(
            "an import the module cannot take is reported",
            text(&out).contains("Entry for alias weak not imported"),
            &out,
        );
        expect("and leaves nothing behind", text(&after) == before, &after);
        report.exit()
    })
}
