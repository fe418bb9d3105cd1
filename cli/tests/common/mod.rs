//! Shared set-up of the CLI tests: throwaway tokens on the two PKCS#11 modules the tests drive.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `libhsmkit_pkcs11.so` (built beside the tests as a dev-dependency) with a token `label` over
/// `dir/token-kmdata`, initialised by `pkcs11-tool` with SO PIN 5678 and user PIN 1234. Returns the
/// module and its `HSMKIT_CONF`.
pub fn libhsmkit_token(dir: &Path, label: &str) -> (PathBuf, PathBuf) {
    let module = std::env::current_exe().expect("exe").parent().expect("deps").join("libhsmkit_pkcs11.so");
    assert!(module.is_file(), "{} is built with the tests (a dev-dependency)", module.display());
    let conf = dir.join("hsmkit.conf");
    std::fs::write(&conf, format!("slot 0 {}\n", dir.join("token-kmdata").display())).expect("conf");
    for args in [
        &["--init-token", "--label", label, "--so-pin", "5678"][..],
        &["--init-pin", "--so-pin", "5678", "--pin", "1234"][..],
    ] {
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&module)
            .args(args)
            .env("HSMKIT_CONF", &conf)
            .output()
            .expect("pkcs11-tool (bash scripts/test.sh installs OpenSC)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    (module, conf)
}

/// A SoftHSM2 token `label` in `dir/tokens` (user PIN 1234, SO PIN 5678); returns its
/// `SOFTHSM2_CONF`.
pub fn softhsm2_token(dir: &Path, label: &str) -> PathBuf {
    std::fs::create_dir(dir.join("tokens")).expect("tokens");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\n", dir.join("tokens").display()),
    )
    .expect("conf");
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label, "--pin", "1234", "--so-pin", "5678"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (bash scripts/test.sh installs SoftHSM2)");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    conf
}

/// Runs a command-line tool and returns its stdout, failing the test with its stderr.
pub fn tool(cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Unwraps `CKM_RSA_AES_KEY_WRAP` output (OAEP with `md`, then RFC 5649 KWP) for a KEK whose
/// modulus is `n` bytes with OpenSSL's command line alone; returns the key's public half as PEM, or
/// `None` when OpenSSL refuses the material. A PKCS#8 padded to a multiple of 8 before KWP
/// (SoftHSM2) reads the same: OpenSSL reads the DER and ignores what follows it.
pub fn openssl_unwrap_n(dir: &Path, kek_key: &Path, blob: &[u8], md: &str, n: usize) -> Option<String> {
    let (head, tail) = blob.split_at(n);
    let (p1, p2, aes, der) = (dir.join("part1"), dir.join("part2"), dir.join("aes.key"), dir.join("key.der"));
    std::fs::write(&p1, head).expect("p1");
    std::fs::write(&p2, tail).expect("p2");
    let s = |p: &Path| p.display().to_string();
    let ok = Command::new("openssl")
        .args(["pkeyutl", "-decrypt", "-inkey", &s(kek_key), "-in", &s(&p1), "-out", &s(&aes)])
        .args([
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            &format!("rsa_oaep_md:{md}"),
            "-pkeyopt",
            &format!("rsa_mgf1_md:{md}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl")
        .success();
    if !ok {
        return None;
    }
    let key_hex: String = std::fs::read(&aes).expect("aes").iter().map(|b| format!("{b:02x}")).collect();
    let ok = Command::new("openssl")
        .args(["enc", "-d", "-id-aes256-wrap-pad", "-K", &key_hex, "-iv", "A65959A6", "-in", &s(&p2), "-out", &s(&der)])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl")
        .success();
    if !ok {
        return None;
    }
    Some(String::from_utf8(tool("openssl", &["pkey", "-inform", "DER", "-in", &s(&der), "-pubout"])).expect("pem"))
}

/// NSS's software token (`libsoftokn3.so`, Debian's `libnss3`) over a fresh database in
/// `dir/nss`, its user PIN set to 1234 through the seam (NSS's security officer logs in with an
/// empty PIN until a user PIN exists). Returns the module, the initialisation string it needs in
/// `C_Initialize`'s `pReserved`, and the token's label.
pub fn nss_token(dir: &Path) -> (PathBuf, String, &'static str) {
    use hsmkit_backend::{Backend as _, Pin, SessionMode, UserKind};
    let module = ["/usr/lib/x86_64-linux-gnu/libsoftokn3.so", "/usr/lib/aarch64-linux-gnu/libsoftokn3.so"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("libsoftokn3.so (bash scripts/test.sh installs libnss3)");
    let db = dir.join("nss");
    std::fs::create_dir(&db).expect("nss db");
    let init = format!("configdir='sql:{}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=noModDB", db.display());
    let label = "NSS Certificate DB";
    let b = hsmkit_pkcs11_client::Pkcs11Backend::open_with(
        &module,
        hsmkit_pkcs11_client::TokenChoice::Label(label.into()),
        Some(&init),
    )
    .expect("NSS softokn");
    let s = b.open_session(b.slot(), SessionMode::ReadWrite).expect("session");
    s.login(UserKind::SecurityOfficer, &Pin::from(String::new())).expect("NSS SO login (empty PIN)");
    s.init_pin(&Pin::from("1234".to_string())).expect("C_InitPIN");
    s.logout().expect("logout");
    (module, init, label)
}
