//! One transfer matrix, the same test body on three backends: the in-process emulator,
//! `libhsmkit_pkcs11.so` (built as a dev-dependency) and SoftHSM2. On each: a key generated for
//! transfer, narrowed and wrapped in every format; OpenSSL's command line alone unwraps the Key
//! Vault, AWS and Google material and gets the source key; the hsmkit `.byok` is uploaded to the
//! provider's tenant and its Active key signs as the source key.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

const TENANT: &str = "01234567-89ab-cdef-0123-456789abcdef";

/// A backend under test: its spec, token, environment and PIN file.
struct Backend {
    dir: tempfile::TempDir,
    spec: String,
    token: Option<String>,
    env: Vec<(String, PathBuf)>,
    /// Whether a quorum certifies the narrowing (an nShield world) or a PKCS#11 officer does.
    attested: bool,
    /// A declared limit: the module's RSA-OAEP takes SHA-1 only (SoftHSM2 2.6), so a composed
    /// RSA-AES wrap with SHA-256 must be refused with a clear error.
    oaep_sha1_only: bool,
    /// A declared limit: the module's `C_WrapKey` with RSA-OAEP wraps secret keys only (SoftHSM2
    /// 2.6 answers a private key with `CKR_KEY_NOT_WRAPPABLE`).
    oaep_wraps_secrets_only: bool,
}

impl Backend {
    fn hsmkit(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hsmkit"));
        c.arg("--pin-file").arg(self.dir.path().join("pins")).args(args).env_remove("HSMKIT_PIN_FILE");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.output().expect("run hsmkit")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.hsmkit(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "hsmkit {args:?}\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
        text
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.hsmkit(args);
        assert!(!out.status.success(), "hsmkit {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `--backend SPEC [--token T]`.
    fn on(&self) -> Vec<String> {
        let mut v = vec!["--backend".to_string(), self.spec.clone()];
        if let Some(t) = &self.token {
            v.extend(["--token".to_string(), t.clone()]);
        }
        v
    }

    fn transfer(&self, sub: &str, rest: &[&str]) -> String {
        let on = self.on();
        let mut args = vec!["transfer", sub];
        args.extend(on.iter().map(String::as_str));
        args.extend(rest);
        self.ok(&args)
    }

    fn transfer_fails(&self, sub: &str, rest: &[&str]) -> String {
        let on = self.on();
        let mut args = vec!["transfer", sub];
        args.extend(on.iter().map(String::as_str));
        args.extend(rest);
        self.fails(&args)
    }
}

/// The emulator in process: a 1/1 world whose card PIN (5678) is the officer's, with a user PIN
/// (1234) set by `hsmkit init-pin`, so its keys need the user's login as on the PKCS#11 tokens.
fn emulator() -> Backend {
    let dir = tempfile::tempdir().expect("tmp");
    let kmdata = dir.path().join("kmdata");
    std::fs::create_dir(&kmdata).expect("kmdata");
    // init-pin reads the card's PIN, then the new user PIN.
    std::fs::write(dir.path().join("pins"), "5678\n1234\n").expect("pins");
    let b = Backend {
        spec: format!("emulator:{}", kmdata.display()),
        token: None,
        env: Vec::new(),
        attested: true,
        oaep_sha1_only: false,
        oaep_wraps_secrets_only: false,
        dir,
    };
    b.ok(&[
        "--kmdata",
        &kmdata.display().to_string(),
        "new-world",
        "--initialize",
        "--cipher-suite=DLf3072s256mAEScSP800131Ar1",
        "--module=1",
        "--acs-quorum=1/1",
    ]);
    let spec = b.spec.clone();
    let out = b.ok(&["init-pin", "--backend", &spec]);
    assert!(out.contains("User PIN set"), "{out}");
    // The matrix's PIN file: the user, then the card.
    std::fs::write(b.dir.path().join("pins"), "0000\n").expect("pins");
    let err = b.fails(&["transfer", "generate-key", "--backend", &spec, "--label", "x"]);
    assert!(err.contains("wrong user PIN"), "{err}");
    std::fs::write(b.dir.path().join("pins"), "1234\n5678\n").expect("pins");
    b
}

/// `libhsmkit_pkcs11.so`, initialised by `pkcs11-tool` (user PIN 1234, SO PIN 5678).
fn libhsmkit_pkcs11() -> Backend {
    let dir = tempfile::tempdir().expect("tmp");
    let (module, conf) = common::libhsmkit_token(dir.path(), "matrix");
    std::fs::write(dir.path().join("pins"), "1234\n5678\n").expect("pins");
    Backend {
        spec: format!("pkcs11:{}", module.display()),
        token: Some("matrix".into()),
        env: vec![("HSMKIT_CONF".into(), conf)],
        attested: false,
        oaep_sha1_only: false,
        oaep_wraps_secrets_only: false,
        dir,
    }
}

/// SoftHSM2 on a throwaway token (user PIN 1234, SO PIN 5678).
fn softhsm2() -> Backend {
    let dir = tempfile::tempdir().expect("tmp");
    let conf = common::softhsm2_token(dir.path(), "matrix");
    std::fs::write(dir.path().join("pins"), "1234\n5678\n").expect("pins");
    Backend {
        spec: "pkcs11:/usr/lib/softhsm/libsofthsm2.so".into(),
        token: Some("matrix".into()),
        env: vec![("SOFTHSM2_CONF".into(), conf)],
        attested: false,
        oaep_sha1_only: true,
        oaep_wraps_secrets_only: true,
        dir,
    }
}

/// The matrix body: the same on every backend.
fn transfer_matrix(b: &Backend) {
    let d = b.dir.path();
    let s = |p: &Path| p.display().to_string();
    // The key to export, and the cloud KMS's KEK (3072 bits, which every format accepts).
    b.transfer("generate-key", &["--label", "exportkey", "--id", "0e"]);
    let err = b.transfer_fails("generate-key", &["--label", "exportkey"]);
    assert!(err.contains("already has a key labelled"), "{err}");
    let source_pem = d.join("exportkey.pem");
    b.transfer("public-key", &["--label", "exportkey", "--out", &s(&source_pem)]);
    let source = std::fs::read_to_string(&source_pem).expect("pem");
    let (kek_key, kek_pem) = (d.join("kek.key"), d.join("kek.pem"));
    common::tool(
        "openssl",
        &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072", "-out", &s(&kek_key)],
    );
    common::tool("openssl", &["pkey", "-in", &s(&kek_key), "-pubout", "-out", &s(&kek_pem)]);
    // Not narrowed yet: refused.
    let err = b.transfer_fails(
        "package",
        &["--format", "aws", "--label", "exportkey", "--kek-public-key", &s(&kek_pem), "--out", &s(&d.join("x"))],
    );
    assert!(err.contains("has not been narrowed"), "{err}");
    let out = b.transfer("modify-acls", &["--label", "exportkey", "--kek-public-key", &s(&kek_pem)]);
    assert!(out.contains("xferacld-exportkey"), "{out}");
    // Every format, each unwrapped by OpenSSL to the source key.
    let formats: [(&str, &[&str], &str); 5] = [
        ("azure-kv", &["--kid", "https://vault.example/keys/kek/1"], "sha1"),
        ("aws", &["--aws-algorithm", "RSA_AES_KEY_WRAP_SHA_256"], "sha256"),
        ("aws", &["--aws-algorithm", "RSA_AES_KEY_WRAP_SHA_1"], "sha1"),
        ("gcp", &["--gcp-method", "3"], "sha256"),
        ("gcp", &["--gcp-method", "1"], "sha1"),
    ];
    for (i, (format, extra, md)) in formats.iter().enumerate() {
        let out = d.join(format!("material-{i}"));
        // The last format names the key by its CKA_ID, which the narrowed copy shares.
        let name: [&str; 2] = if i == formats.len() - 1 { ["--id", "0e"] } else { ["--label", "exportkey"] };
        let mut args = vec!["--format", format, name[0], name[1], "--kek-public-key"];
        let (kp, op) = (s(&kek_pem), s(&out));
        args.extend([kp.as_str(), "--out", op.as_str()]);
        args.extend(*extra);
        if *md == "sha256" && b.oaep_sha1_only {
            let err = b.transfer_fails("package", &args);
            assert!(err.contains("refuses Sha256") && err.contains("RSA_AES_KEY_WRAP_SHA_1"), "{err}");
            assert!(!out.exists(), "nothing written");
            continue;
        }
        b.transfer("package", &args);
        let bytes = std::fs::read(&out).expect("material");
        let blob = if *format == "azure-kv" {
            use base64ct::Encoding;
            let doc: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(doc["header"]["enc"], "CKM_RSA_AES_KEY_WRAP");
            base64ct::Base64UrlUnpadded::decode_vec(doc["ciphertext"].as_str().expect("ciphertext")).expect("b64")
        } else {
            bytes
        };
        assert_eq!(
            common::openssl_unwrap_n(d, &kek_key, &blob, md, 384).expect("OpenSSL unwraps the material"),
            source,
            "{format} {extra:?}: OpenSSL gets the source key"
        );
    }
    // An EC key in every format that takes one, each unwrapped by OpenSSL to the source key.
    b.transfer("generate-key", &["--label", "eckey", "--id", "0c", "--curve", "P-256"]);
    let ec_pem = d.join("eckey.pem");
    b.transfer("public-key", &["--label", "eckey", "--out", &s(&ec_pem)]);
    let ec_source = std::fs::read_to_string(&ec_pem).expect("pem");
    assert!(
        String::from_utf8(common::tool("openssl", &["pkey", "-pubin", "-in", &s(&ec_pem), "-text", "-noout"]))
            .expect("text")
            .contains("NIST CURVE: P-256"),
        "the exported public key is a P-256 key"
    );
    b.transfer("modify-acls", &["--label", "eckey", "--kek-public-key", &s(&kek_pem)]);
    let ec_formats: [(&str, &[&str], &str); 3] = [
        ("azure-kv", &["--kid", "https://vault.example/keys/kek/1"], "sha1"),
        ("aws", &["--aws-algorithm", "RSA_AES_KEY_WRAP_SHA_1"], "sha1"),
        ("gcp", &["--gcp-method", "1"], "sha1"),
    ];
    for (i, (format, extra, md)) in ec_formats.iter().enumerate() {
        let out = d.join(format!("ec-material-{i}"));
        let (kp, op) = (s(&kek_pem), s(&out));
        let mut args =
            vec!["--format", format, "--label", "eckey", "--kek-public-key", kp.as_str(), "--out", op.as_str()];
        args.extend(*extra);
        b.transfer("package", &args);
        let bytes = std::fs::read(&out).expect("material");
        let blob = if *format == "azure-kv" {
            use base64ct::Encoding;
            let doc: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            base64ct::Base64UrlUnpadded::decode_vec(doc["ciphertext"].as_str().expect("ciphertext")).expect("b64")
        } else {
            bytes
        };
        assert_eq!(
            common::openssl_unwrap_n(d, &kek_key, &blob, md, 384).expect("OpenSSL unwraps the EC material"),
            ec_source,
            "{format} {extra:?}: OpenSSL gets the source EC key"
        );
    }
    // AWS KMS also takes EC key material wrapped with RSAES-OAEP alone: OpenSSL decrypts it.
    let oaep_out = d.join("ec-oaep");
    let oaep_args = [
        "--format",
        "aws",
        "--aws-algorithm",
        if b.oaep_sha1_only { "RSAES_OAEP_SHA_1" } else { "RSAES_OAEP_SHA_256" },
        "--label",
        "eckey",
        "--kek-public-key",
        &s(&kek_pem),
        "--out",
        &s(&oaep_out),
    ];
    if b.oaep_wraps_secrets_only {
        let err = b.transfer_fails("package", &oaep_args);
        assert!(err.contains("CKR_KEY_NOT_WRAPPABLE"), "{err}");
        assert!(!oaep_out.exists(), "nothing written");
        return rest_of_matrix(b, &kek_pem);
    }
    b.transfer("package", &oaep_args);
    let md = "sha256";
    let der = d.join("ec-oaep.der");
    common::tool(
        "openssl",
        &[
            "pkeyutl",
            "-decrypt",
            "-inkey",
            &s(&kek_key),
            "-in",
            &s(&oaep_out),
            "-out",
            &s(&der),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            &format!("rsa_oaep_md:{md}"),
            "-pkeyopt",
            &format!("rsa_mgf1_md:{md}"),
        ],
    );
    let back = common::tool("openssl", &["pkey", "-inform", "DER", "-in", &s(&der), "-pubout"]);
    assert_eq!(
        String::from_utf8(back).expect("pem"),
        ec_source,
        "AWS RSAES_OAEP_SHA_256: OpenSSL gets the source EC key"
    );
    rest_of_matrix(b, &kek_pem);
}

/// The rest of the matrix, after the EC formats.
fn rest_of_matrix(b: &Backend, kek_pem: &Path) {
    let d = b.dir.path();
    let s = |p: &Path| p.display().to_string();

    // Google Cloud KMS takes no P-521 key: refused before anything is wrapped.
    b.transfer("generate-key", &["--label", "ec521", "--curve", "P-521"]);
    b.transfer("modify-acls", &["--label", "ec521", "--kek-public-key", &s(kek_pem)]);
    let none = d.join("ec521-gcp");
    let err = b.transfer_fails(
        "package",
        &["--format", "gcp", "--label", "ec521", "--kek-public-key", &s(kek_pem), "--out", &s(&none)],
    );
    assert!(err.contains("does not import P-521"), "{err}");
    assert!(!none.exists(), "nothing written");

    // A service's rule refuses before anything is wrapped: Google's method 2 needs a 4096-bit KEK.
    let err = b.transfer_fails(
        "package",
        &[
            "--format",
            "gcp",
            "--gcp-method",
            "2",
            "--label",
            "exportkey",
            "--kek-public-key",
            &s(kek_pem),
            "--out",
            &s(&d.join("y")),
        ],
    );
    assert!(err.contains("[4096]"), "{err}");

    // The provider's toolset, the tenant key narrowed for it, packaged, uploaded.
    let provider = d.join("provider");
    b.ok(&["vendor", "init", "--region", "EU", "--dir", &s(&provider), "--out", &s(d)]);
    let (kek_pkg, world_pkg) = (d.join("BYOK-KEK-pkg-EU-1"), d.join("BYOK-SecurityWorld-pkg-EU-1"));
    b.transfer("generate-key", &["--label", "tenantkey"]);
    b.transfer(
        "modify-acls",
        &["--label", "tenantkey", "--kek-package", &s(&kek_pkg), "--world-package", &s(&world_pkg)],
    );
    let out = b.transfer(
        "package",
        &[
            "--label",
            "tenantkey",
            "--kek-package",
            &s(&kek_pkg),
            "--world-package",
            &s(&world_pkg),
            "--tenant",
            TENANT,
            "--friendly-name",
            "Matrix",
            "--out",
            &s(d),
        ],
    );
    assert!(out.ends_with("Result: SUCCESS\n"), "{out}");
    let package_path = d.join("TransferPackage-Matrix.byok");
    let package = hsmkit_transfer::byok::TransferPackage::from_bytes("p", &std::fs::read(&package_path).expect("byok"))
        .expect("a valid package");
    // One meaning for every field: the key hash is the hash of the public key the package
    // carries (SHA-256 for this world's suite and for an unattested package).
    use sha2::Digest;
    assert_eq!(package.body.key_hash, sha2::Sha256::digest(&package.body.public).to_vec());
    assert_eq!(package.body.acl_certificate.is_null(), !b.attested);
    if !b.attested {
        assert_eq!(package.body.acl["pkcs11"]["CKA_EXTRACTABLE"], true, "{}", package.body.acl);
        assert_eq!(package.body.acl["pkcs11"]["CKA_LABEL"], "xferacld-tenantkey");
    }
    let tenant = |cmd: &[&str]| {
        let mut args = vec!["tenant", "--provider", provider.to_str().expect("utf-8"), "--tenant", TENANT];
        args.extend(cmd);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let add = tenant(&["add-key", "--key-file", package_path.to_str().expect("utf-8"), "--yes"]);
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    if !b.attested {
        let err = b.fails(&add);
        assert!(err.contains("--allow-unattested"), "{err}");
        let mut with = add.clone();
        with.push("--allow-unattested");
        b.ok(&with);
    } else {
        let out = b.ok(&add);
        assert!(out.contains("source world"), "{out}");
    }
    // The Active key, in the provider's module, signs as the source key.
    let tenant_pem = d.join("tenantkey.pem");
    b.transfer("public-key", &["--label", "tenantkey", "--out", &s(&tenant_pem)]);
    let spki = {
        use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
        let k = rsa::PublicKey::from_public_key_pem(&std::fs::read_to_string(&tenant_pem).expect("pem")).expect("spki");
        k.to_public_key_der().expect("der").as_bytes().to_vec()
    };
    let provider_module = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(provider.join("kmdata")))
        .expect("the provider's module");
    let store = hsmkit_transfer::tenant::Store::open(&provider.join("tenants.sqlite"), TENANT).expect("store");
    use hsmkit_backend::Backend as _;
    let session =
        provider_module.open_session(hsmkit_emulator::SLOT, hsmkit_backend::SessionMode::ReadOnly).expect("session");
    hsmkit_transfer::provider::active_key_signs_as(session.as_ref(), &store, TENANT, &spki)
        .expect("the Active key signs as the source key");
}

#[test]
fn the_transfer_matrix_runs_on_the_emulator() {
    transfer_matrix(&emulator());
}

#[test]
fn the_transfer_matrix_runs_on_libhsmkit_pkcs11() {
    transfer_matrix(&libhsmkit_pkcs11());
}

#[test]
fn the_transfer_matrix_runs_on_softhsm2() {
    transfer_matrix(&softhsm2());
}
