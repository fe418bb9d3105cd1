//! PKCS#11 applications storing certificates and data objects in `libhsmkit_pkcs11.so`:
//! OpenSC's `pkcs11-tool --write-object`, GnuTLS (`p11tool` generates a key on the token,
//! `certtool` self-signs with it, `p11tool --write` stores the certificate, OpenSSL verifies its
//! signature), OpenSSL's engine decrypting with a token key, remote use through `p11-kit server`
//! and `p11-kit-client.so`, and python-pkcs11 in a virtual environment. `bash scripts/test.sh`
//! installs OpenSC, GnuTLS (`gnutls-bin`), p11-kit and `python3-venv` when they are missing;
//! python-pkcs11 comes from PyPI into a virtual environment kept in cargo's target folder.

mod common;

use std::path::Path;
use std::process::{Command, ExitCode, Output};

fn run(dir: &Path, cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .env("GNUTLS_PIN", common::USER_PIN)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (bash scripts/test.sh installs it)"))
}

use common::text;

/// A virtual environment with python-pkcs11, made once in cargo's target folder.
fn python() -> std::path::PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-pkcs11-venv");
    let py = venv.join("bin").join("python");
    let ready = Command::new(&py).args(["-c", "import pkcs11"]).output().is_ok_and(|o| o.status.success());
    if !ready {
        let _ = std::fs::remove_dir_all(&venv);
        let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).output().expect("python3 -m venv");
        assert!(made.status.success(), "python3 -m venv: {}", text(&made));
        let pip = Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "python-pkcs11"])
            .output()
            .expect("pip install python-pkcs11");
        assert!(pip.status.success(), "pip install python-pkcs11: {}", text(&pip));
    }
    py
}

fn main() -> ExitCode {
    common::with_throwaway_conf(|| {
        drop(common::initialised_backend());
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        let module = common::module_path().display().to_string();
        let token = format!("pkcs11:token={}", common::LABEL);
        let mut report = common::Report::default();
        let mut expect = |what: &str, ok: bool, out: &Output| report.expect(what, ok, out);

        // OpenSC: a certificate made by OpenSSL, written and listed.
        let out = run(
            d,
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "x.key",
                "-out",
                "x.pem",
                "-subj",
                "/CN=written by pkcs11-tool",
                "-days",
                "2",
            ],
        );
        expect("OpenSSL makes a certificate", out.status.success(), &out);
        let out = run(d, "openssl", &["x509", "-in", "x.pem", "-outform", "DER", "-out", "x.der"]);
        expect("as DER", out.status.success(), &out);
        let p11 = |args: &[&str]| {
            let mut all = vec!["--module", module.as_str(), "--login", "--pin", common::USER_PIN];
            all.extend_from_slice(args);
            run(d, "pkcs11-tool", &all)
        };
        let out = p11(&["--write-object", "x.der", "--type", "cert", "--id", "0a", "--label", "written"]);
        expect("pkcs11-tool --write-object of a certificate", out.status.success(), &out);
        let out = p11(&["--list-objects", "--type", "cert"]);
        expect(
            "pkcs11-tool lists it with its subject",
            text(&out).contains("label:      written") && text(&out).contains("CN=written by pkcs11-tool"),
            &out,
        );
        let out = p11(&["--read-object", "--type", "cert", "--label", "written", "--output-file", "back.der"]);
        expect(
            "and reads it back",
            out.status.success() && std::fs::read(d.join("back.der")).ok() == std::fs::read(d.join("x.der")).ok(),
            &out,
        );

        // OpenSSL's PKCS#11 engine decrypts with a token key: PKCS#1 v1.5 and OAEP with SHA-256,
        // the ciphertexts made by OpenSSL in software.
        let out = p11(&[
            "--keypairgen",
            "--key-type",
            "rsa:2048",
            "--label",
            "dec",
            "--id",
            "0d",
            "--usage-decrypt",
            "--usage-sign",
        ]);
        expect("pkcs11-tool makes a decryption key", out.status.success(), &out);
        let out = p11(&["--read-object", "--type", "pubkey", "--id", "0d", "--output-file", "dec.der"]);
        expect("its public key", out.status.success(), &out);
        let out = run(d, "openssl", &["pkey", "-pubin", "-inform", "DER", "-in", "dec.der", "-out", "dec.pem"]);
        expect("as PEM", out.status.success(), &out);
        std::fs::write(d.join("pt"), "engine secret").expect("plaintext");
        let engine_key = format!("{token};object=dec;type=private;pin-value={}", common::USER_PIN);
        let oaep: &[&str] =
            &["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"];
        for (name, opts) in [("PKCS#1 v1.5", &[][..]), ("OAEP-SHA256", oaep)] {
            let mut enc = vec!["pkeyutl", "-encrypt", "-pubin", "-inkey", "dec.pem", "-in", "pt", "-out", "ct"];
            enc.extend_from_slice(opts);
            let out = run(d, "openssl", &enc);
            expect(&format!("OpenSSL encrypts ({name})"), out.status.success(), &out);
            let mut dec = vec![
                "pkeyutl",
                "-decrypt",
                "-engine",
                "pkcs11",
                "-keyform",
                "engine",
                "-inkey",
                &engine_key,
                "-in",
                "ct",
            ];
            dec.extend_from_slice(opts);
            let out = Command::new("openssl")
                .args(&dec)
                .current_dir(d)
                .env("PKCS11_MODULE_PATH", &module)
                .output()
                .expect("openssl");
            expect(
                &format!("the engine decrypts on the token ({name})"),
                String::from_utf8_lossy(&out.stdout) == "engine secret",
                &out,
            );
        }

        // OpenSSL serves TLS 1.3 with the token's RSA key through the engine (the handshake's
        // signature is RSA-PSS over a digest, CKM_RSA_PKCS_PSS), and `s_client` checks it.
        let out = Command::new("openssl")
            .args(["req", "-new", "-x509", "-engine", "pkcs11", "-keyform", "engine", "-key", &engine_key])
            .args(["-subj", "/CN=localhost", "-days", "2", "-out", "tls.pem"])
            .current_dir(d)
            .env("PKCS11_MODULE_PATH", &module)
            .output()
            .expect("openssl");
        expect("OpenSSL self-signs a server certificate with the token key", out.status.success(), &out);
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a port");
        let mut server = Command::new("openssl")
            .args(["s_server", "-engine", "pkcs11", "-keyform", "engine", "-key", &engine_key, "-cert", "tls.pem"])
            .args(["-accept", &port.to_string(), "-naccept", "1", "-tls1_3", "-www"])
            .current_dir(d)
            .env("PKCS11_MODULE_PATH", &module)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("openssl s_server");
        let mut handshake = None;
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let out = Command::new("openssl")
                .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-tls1_3", "-CAfile", "tls.pem"])
                .args(["-servername", "localhost"])
                .current_dir(d)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("openssl s_client");
            if text(&out).contains("Cipher is") {
                handshake = Some(out);
                break;
            }
        }
        let _ = server.kill();
        let served = server.wait_with_output().expect("s_server");
        match handshake {
            Some(out) => expect(
                "a TLS 1.3 handshake with the token's key, verified by s_client",
                text(&out).contains("New, TLSv1.3")
                    && text(&out).contains("Peer signature type: RSA-PSS")
                    && text(&out).contains("Verify return code: 0 (ok)"),
                &out,
            ),
            None => expect("s_server with the token's key accepts a TLS 1.3 client", false, &served),
        }

        // GnuTLS: a token key, a certificate self-signed with it, stored and listed.
        let out = run(
            d,
            "p11tool",
            &[
                "--provider",
                &module,
                "--login",
                "--generate-privkey=rsa",
                "--bits",
                "2048",
                "--label",
                "gnutls",
                &token,
            ],
        );
        expect("p11tool --generate-privkey on the token", out.status.success(), &out);
        std::fs::write(d.join("template"), "cn = \"gnutls on hsmkit\"\nexpiration_days = 2\nsigning_key\n")
            .expect("template");
        let private = format!("{token};object=gnutls;type=private");
        let public = format!("{token};object=gnutls;type=public");
        let out = run(
            d,
            "certtool",
            &[
                "--provider",
                &module,
                "--generate-self-signed",
                "--load-privkey",
                &private,
                "--load-pubkey",
                &public,
                "--template",
                "template",
                "--outfile",
                "gnutls.pem",
            ],
        );
        expect("certtool self-signs with the token key", out.status.success(), &out);
        let out = run(d, "openssl", &["verify", "-CAfile", "gnutls.pem", "gnutls.pem"]);
        expect("OpenSSL verifies the token's signature on it", text(&out).contains("gnutls.pem: OK"), &out);
        let out = run(
            d,
            "p11tool",
            &[
                "--provider",
                &module,
                "--login",
                "--write",
                "--load-certificate",
                "gnutls.pem",
                "--label",
                "gnutls",
                &token,
            ],
        );
        expect("p11tool --write stores the certificate", out.status.success(), &out);
        let out = run(d, "p11tool", &["--provider", &module, "--list-all-certs", &token]);
        expect("p11tool lists it", text(&out).contains("object=gnutls;type=cert"), &out);

        // GnuTLS with an ECDSA key: made on the token, a certificate self-signed with it.
        let out = run(
            d,
            "p11tool",
            &[
                "--provider",
                &module,
                "--login",
                "--generate-privkey=ecdsa",
                "--curve=secp256r1",
                "--label",
                "gnutls-ec",
                &token,
            ],
        );
        expect("p11tool --generate-privkey=ecdsa on the token", out.status.success(), &out);
        std::fs::write(d.join("template-ec"), "cn = \"gnutls ECDSA on hsmkit\"\nexpiration_days = 2\nsigning_key\n")
            .expect("template");
        let out = run(
            d,
            "certtool",
            &[
                "--provider",
                &module,
                "--generate-self-signed",
                "--load-privkey",
                &format!("{token};object=gnutls-ec;type=private"),
                "--load-pubkey",
                &format!("{token};object=gnutls-ec;type=public"),
                "--template",
                "template-ec",
                "--outfile",
                "gnutls-ec.pem",
            ],
        );
        expect("certtool self-signs with the token's ECDSA key", out.status.success(), &out);
        let out = run(d, "openssl", &["x509", "-in", "gnutls-ec.pem", "-noout", "-text"]);
        expect("the certificate holds a P-256 key", text(&out).contains("NIST CURVE: P-256"), &out);
        let out = run(d, "openssl", &["verify", "-CAfile", "gnutls-ec.pem", "gnutls-ec.pem"]);
        expect("OpenSSL verifies the token's ECDSA signature on it", text(&out).contains("gnutls-ec.pem: OK"), &out);

        // Remote use through p11-kit: `p11-kit server` exports the token over a socket and
        // p11-kit-client.so reaches it from other processes; two jobs sign at once, OpenSSL checks.
        let client = [
            "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
            "/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("p11-kit-client.so (bash scripts/test.sh installs p11-kit-modules)");
        let socket = d.join("p11-kit.sock");
        let mut server = Command::new("p11-kit")
            .args(["server", "--foreground", "--provider", &module, "-n"])
            .arg(&socket)
            .arg(&token)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("p11-kit server (bash scripts/test.sh installs p11-kit)");
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let address = format!("unix:path={}", socket.display());
        let jobs: Vec<_> = (0..2)
            .map(|i| {
                Command::new("pkcs11-tool")
                    .args(["--module", client, "--login", "--pin", common::USER_PIN, "--sign", "-m", "SHA256-RSA-PKCS"])
                    .args(["--id", "0d", "-i", "pt", "-o", &format!("remote-{i}.sig")])
                    .current_dir(d)
                    .env("P11_KIT_SERVER_ADDRESS", &address)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("pkcs11-tool")
            })
            .collect();
        for (i, job) in jobs.into_iter().enumerate() {
            let out = job.wait_with_output().expect("job");
            expect(&format!("job {i} signs through p11-kit-client.so"), out.status.success(), &out);
            let sig = format!("remote-{i}.sig");
            let out = run(d, "openssl", &["dgst", "-sha256", "-verify", "dec.pem", "-signature", &sig, "pt"]);
            expect(&format!("OpenSSL verifies job {i}'s signature"), text(&out).contains("Verified OK"), &out);
        }
        let _ = server.kill();
        let _ = server.wait();

        // python-pkcs11's cryptography: OpenSSL makes the RSA ciphertexts and a peer EC key first,
        // and checks the signature and the agreement afterwards.
        for (file, opts) in [("ct-pkcs1", &[][..]), ("ct-oaep", oaep)] {
            let mut enc = vec!["pkeyutl", "-encrypt", "-pubin", "-inkey", "dec.pem", "-in", "pt", "-out", file];
            enc.extend_from_slice(opts);
            let out = run(d, "openssl", &enc);
            expect(&format!("OpenSSL encrypts {file}"), out.status.success(), &out);
        }
        let out = run(
            d,
            "openssl",
            &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "peer-ec.pem"],
        );
        expect("OpenSSL makes a P-256 key", out.status.success(), &out);
        let out =
            run(d, "openssl", &["pkey", "-in", "peer-ec.pem", "-pubout", "-outform", "DER", "-out", "peer-ec.der"]);
        expect("its public key", out.status.success(), &out);
        let out = run(
            d,
            &python().display().to_string(),
            &[
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/crypto.py").display().to_string(),
                &module,
                common::LABEL,
                common::USER_PIN,
                &d.display().to_string(),
            ],
        );
        expect(
            "python-pkcs11: RSA decryption, EC, ECDH, AES-CBC and GCM, HMAC, derivation, wrap and unwrap",
            out.status.success(),
            &out,
        );
        let out = run(
            d,
            "openssl",
            &["dgst", "-sha256", "-verify", "py-ec.der", "-keyform", "DER", "-signature", "py-ec.sig", "pt"],
        );
        expect("OpenSSL verifies python-pkcs11's ECDSA signature", text(&out).contains("Verified OK"), &out);
        let out = run(
            d,
            "openssl",
            &["pkeyutl", "-derive", "-inkey", "peer-ec.pem", "-peerkey", "py-ec.der", "-peerform", "DER"],
        );
        expect(
            "OpenSSL agrees on python-pkcs11's ECDH secret",
            out.status.success() && std::fs::read(d.join("py-ecdh.bin")).ok() == Some(out.stdout.clone()),
            &out,
        );

        // python-pkcs11.
        let out = run(
            d,
            &python().display().to_string(),
            &[
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/check.py").display().to_string(),
                &module,
                common::LABEL,
                common::USER_PIN,
                "x.der",
            ],
        );
        expect("python-pkcs11: data objects, certificates, public session objects", out.status.success(), &out);
        report.exit()
    })
}
