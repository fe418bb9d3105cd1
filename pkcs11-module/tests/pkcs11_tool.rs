//! OpenSC's `pkcs11-tool` drives `libhsmkit_pkcs11.so` as it would any module: token and PIN set-up,
//! its own `--test`, key generation, signing, and wrapping, each result checked with OpenSSL.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Tool {
    conf: PathBuf,
    dir: tempfile::TempDir,
}

impl Tool {
    fn new() -> Tool {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("hsmkit.conf");
        std::fs::write(&conf, format!("slot 0 {}\n", dir.path().join("kmdata").display())).expect("conf");
        Tool { conf, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs pkcs11-tool on the module; panics with its output unless it succeeds.
    fn run(&self, args: &[&str]) -> String {
        let module = common::module_path();
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&module)
            .args(args)
            .env("HSMKIT_CONF", &self.conf)
            .env("HSMKIT_PKCS11_LOG", "1")
            .output()
            .expect("pkcs11-tool is installed (scripts/test.sh installs the Debian package opensc)");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "pkcs11-tool {args:?} failed:\n{text}");
        text
    }

    fn user(&self, args: &[&str]) -> String {
        let mut all = vec!["--login", "--pin", common::USER_PIN];
        all.extend_from_slice(args);
        self.run(&all)
    }
}

fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl").args(args).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn pkcs11_tool_sets_up_tests_signs_and_wraps_and_openssl_agrees() {
    let t = Tool::new();
    let info = t.run(&["--list-slots"]);
    assert!(info.contains("uninitialized"), "a fresh slot shows an uninitialised token:\n{info}");
    t.run(&["--init-token", "--label", common::LABEL, "--so-pin", common::SO_PIN]);
    t.run(&["--init-pin", "--so-pin", common::SO_PIN, "--pin", common::USER_PIN]);
    let slots = t.run(&["--list-slots"]);
    assert!(slots.contains(common::LABEL) && slots.contains("PIN initialized"), "{slots}");

    // An RSA and an EC key pair and an AES key, then pkcs11-tool's own self-test over them: RSA
    // signatures,
    // verification and decryption with CKM_RSA_X_509 and CKM_RSA_PKCS among the mechanisms.
    t.user(&["--keypairgen", "--key-type", "rsa:2048", "--label", "rsa1", "--id", "01"]);
    t.user(&["--keygen", "--key-type", "AES:32", "--label", "aes-self-test", "--id", "0f"]);
    t.user(&["--keypairgen", "--key-type", "EC:prime256v1", "--label", "ec-self-test", "--id", "0e"]);
    let test = t.user(&["--test"]);
    assert!(test.contains("No errors"), "{test}");
    assert!(test.contains("all 4 signature functions seem to work"), "{test}");
    // pkcs11-tool's --test signs with RSA keys only: it reaches the EC key and passes over it.
    assert!(test.contains("non-RSA, skipping"), "{test}");
    assert!(test.contains("all 4 digest functions seem to work"), "{test}");
    for line in ["RSA-X-509: OK", "RSA-PKCS: OK"] {
        assert!(test.matches(line).count() >= 3, "{line} for signing, verifying and decrypting: {test}");
    }

    // Signatures made on the command line verify with OpenSSL, PKCS #1 v1.5 and PSS.
    let data = t.path("data.txt");
    std::fs::write(&data, b"hsmkit through pkcs11-tool\n").expect("data");
    let public = t.path("rsa1.der");
    t.run(&["--read-object", "--type", "pubkey", "--id", "01", "-o", s(&public)]);
    let sig = t.path("sig.bin");
    t.user(&["--sign", "-m", "SHA256-RSA-PKCS", "--id", "01", "-i", s(&data), "-o", s(&sig)]);
    openssl(&["dgst", "-sha256", "-verify", s(&public), "-keyform", "DER", "-signature", s(&sig), s(&data)]);
    let pss = t.path("pss.bin");
    t.user(&["--sign", "-m", "SHA256-RSA-PKCS-PSS", "--id", "01", "-i", s(&data), "-o", s(&pss)]);
    openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        s(&public),
        "-keyform",
        "DER",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        "-signature",
        s(&pss),
        s(&data),
    ]);
    // OpenSSL signs with the token's key through its PKCS#11 engine (libp11, which sends
    // CKM_RSA_PKCS over the DigestInfo it makes), and verifies with the public key alone.
    let engine_sig = t.path("engine.sig");
    let uri = format!("pkcs11:token={};object=rsa1;type=private;pin-value={}", common::LABEL, common::USER_PIN);
    let out = Command::new("openssl")
        .args(["dgst", "-engine", "pkcs11", "-keyform", "engine", "-sign", &uri, "-sha256", "-out", s(&engine_sig)])
        .arg(&data)
        .env("PKCS11_MODULE_PATH", common::module_path())
        .env("HSMKIT_CONF", &t.conf)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl with the pkcs11 engine (Debian package libengine-pkcs11-openssl): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    openssl(&["dgst", "-sha256", "-verify", s(&public), "-keyform", "DER", "-signature", s(&engine_sig), s(&data)]);
    // A flipped byte does not verify: OpenSSL is really checking.
    let mut bad = std::fs::read(&sig).expect("sig");
    bad[10] ^= 1;
    std::fs::write(&sig, bad).expect("bad sig");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify", s(&public), "-keyform", "DER", "-signature", s(&sig), s(&data)])
        .output()
        .expect("openssl");
    assert!(!out.status.success(), "a damaged signature must not verify");

    // Wrapping: a known AES key, wrapped under an OpenSSL RSA key with OAEP and under a known AES
    // key with RFC 3394, comes back out of OpenSSL unchanged.
    let (secret, kek) = (t.path("secret.bin"), t.path("kek.bin"));
    std::fs::write(&secret, (0u8..32).collect::<Vec<_>>()).expect("secret");
    std::fs::write(&kek, (100u8..132).collect::<Vec<_>>()).expect("kek");
    let (private, peer) = (t.path("peer.pem"), t.path("peer.der"));
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", s(&private)]);
    openssl(&["pkey", "-in", s(&private), "-pubout", "-outform", "DER", "-out", s(&peer)]);
    let write = |file: &Path, kind: &str, extra: &[&str], id: &str| {
        let mut a = vec!["--write-object", s(file), "--type", kind, "--id", id];
        a.extend_from_slice(extra);
        t.user(&a);
    };
    write(&secret, "secrkey", &["--key-type", "AES:32", "--extractable"], "05");
    write(&kek, "secrkey", &["--key-type", "AES:32"], "07");
    write(&peer, "pubkey", &[], "06");
    let oaep = t.path("oaep.bin");
    t.user(&["--wrap", "-m", "RSA-PKCS-OAEP", "--id", "06", "--application-id", "05", "-o", s(&oaep)]);
    let out =
        openssl(&["pkeyutl", "-decrypt", "-inkey", s(&private), "-pkeyopt", "rsa_padding_mode:oaep", "-in", s(&oaep)]);
    assert_eq!(out.stdout, std::fs::read(&secret).expect("secret"), "OAEP-wrapped key as OpenSSL unwraps it");
    let kw = t.path("kw.bin");
    t.user(&["--wrap", "-m", "AES-KEY-WRAP", "--id", "07", "--application-id", "05", "-o", s(&kw)]);
    let kek_hex = hex::encode(std::fs::read(&kek).expect("kek"));
    let out = openssl(&["enc", "-d", "-id-aes256-wrap", "-K", &kek_hex, "-iv", "A6A6A6A6A6A6A6A6", "-in", s(&kw)]);
    assert_eq!(out.stdout, std::fs::read(&secret).expect("secret"), "RFC 3394 output as OpenSSL unwraps it");

    // Generic secrets are generated with their length.
    let generic = t.user(&["--keygen", "--key-type", "GENERIC:48", "--label", "gen", "--id", "08"]);
    assert!(generic.contains("Generic secret length 48"), "{generic}");

    // The non-extractable key generated on the token cannot be wrapped.
    let denied = Command::new("pkcs11-tool")
        .arg("--module")
        .arg(common::module_path())
        .args([
            "--login",
            "--pin",
            common::USER_PIN,
            "--wrap",
            "-m",
            "AES-KEY-WRAP",
            "--id",
            "07",
            "--application-id",
            "07",
        ])
        .args(["-o", s(&t.path("no.bin"))])
        .env("HSMKIT_CONF", &t.conf)
        .output()
        .expect("pkcs11-tool");
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("CKR_KEY_UNEXTRACTABLE"), "{denied:?}");
}

/// EC through pkcs11-tool and OpenSSL: P-256 and Ed25519 key pairs made on the token,
/// pkcs11-tool's own `--test-ec`, ECDSA and EdDSA signatures and an ECDH agreement each checked by
/// OpenSSL, and OpenSSL's engine signing with the token's EC key.
#[test]
fn pkcs11_tool_makes_ec_keys_signs_and_agrees_and_openssl_agrees() {
    let t = Tool::new();
    t.run(&["--init-token", "--label", common::LABEL, "--so-pin", common::SO_PIN]);
    t.run(&["--init-pin", "--so-pin", common::SO_PIN, "--pin", common::USER_PIN]);
    t.user(&["--keypairgen", "--key-type", "EC:prime256v1", "--label", "ec1", "--id", "21"]);
    // pkcs11-tool's EC self-test makes, signs with, relabels and deletes a pair of its own (it
    // opens a read-write session only when another operation needs one, so a pair is made too).
    let test = t.user(&["--keypairgen", "--key-type", "EC:secp384r1", "--id", "31", "--test-ec"]);
    assert!(test.contains("==> OK"), "{test}");

    let data = t.path("data.txt");
    std::fs::write(&data, b"hsmkit EC through pkcs11-tool\n").expect("data");
    let public = t.path("ec1.der");
    t.run(&["--read-object", "--type", "pubkey", "--id", "21", "-o", s(&public)]);
    let sig = t.path("ec.sig");
    t.user(&[
        "--sign",
        "-m",
        "ECDSA-SHA256",
        "--signature-format",
        "openssl",
        "--id",
        "21",
        "-i",
        s(&data),
        "-o",
        s(&sig),
    ]);
    openssl(&["dgst", "-sha256", "-verify", s(&public), "-keyform", "DER", "-signature", s(&sig), s(&data)]);

    // ECDH: the token's key and an OpenSSL key agree on the same secret.
    let (peer, peer_public, shared) = (t.path("peer.pem"), t.path("peer.der"), t.path("shared.bin"));
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", s(&peer)]);
    openssl(&["pkey", "-in", s(&peer), "-pubout", "-outform", "DER", "-out", s(&peer_public)]);
    t.user(&["--derive", "-m", "ECDH1-DERIVE", "--id", "21", "--input-file", s(&peer_public), "-o", s(&shared)]);
    let theirs = openssl(&["pkeyutl", "-derive", "-inkey", s(&peer), "-peerkey", s(&public), "-peerform", "DER"]);
    assert_eq!(std::fs::read(&shared).expect("shared"), theirs.stdout, "ECDH through the token and in OpenSSL");

    // OpenSSL signs with the token's EC key through its PKCS#11 engine (libp11 sends CKM_ECDSA
    // over the digest it computes).
    let engine_sig = t.path("engine-ec.sig");
    let uri = format!("pkcs11:token={};object=ec1;type=private;pin-value={}", common::LABEL, common::USER_PIN);
    let out = Command::new("openssl")
        .args(["dgst", "-engine", "pkcs11", "-keyform", "engine", "-sign", &uri, "-sha256", "-out", s(&engine_sig)])
        .arg(&data)
        .env("PKCS11_MODULE_PATH", common::module_path())
        .env("HSMKIT_CONF", &t.conf)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl with the pkcs11 engine: {}", String::from_utf8_lossy(&out.stderr));
    openssl(&["dgst", "-sha256", "-verify", s(&public), "-keyform", "DER", "-signature", s(&engine_sig), s(&data)]);
    // Ed25519, last: libp11 (the engine above) stops enumerating keys at a CKK_EC_EDWARDS key.
    // pkcs11-tool writes the public key as PEM.
    t.user(&["--keypairgen", "--key-type", "EC:edwards25519", "--label", "ed1", "--id", "23"]);
    let (ed_public, ed_sig) = (t.path("ed1.pem"), t.path("ed.sig"));
    t.run(&["--read-object", "--type", "pubkey", "--id", "23", "-o", s(&ed_public)]);
    t.user(&["--sign", "-m", "EDDSA", "--id", "23", "-i", s(&data), "-o", s(&ed_sig)]);
    openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        s(&ed_public),
        "-rawin",
        "-in",
        s(&data),
        "-sigfile",
        s(&ed_sig),
    ]);
    let other = t.path("other.txt");
    std::fs::write(&other, b"other data\n").expect("other");
    let refused = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey", s(&ed_public), "-rawin", "-in", s(&other)])
        .args(["-sigfile", s(&ed_sig)])
        .output()
        .expect("openssl");
    assert!(!refused.status.success(), "an Ed25519 signature over other data must not verify");
}
