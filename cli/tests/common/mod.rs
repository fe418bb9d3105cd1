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
