//! Fork safety: a C program (built here with the system's C compiler) forks after `C_Initialize`;
//! the child sees the parent's library as not initialised, initialises its own, and draws random
//! bytes the parent does not draw. And `pkcs11-tool --test-fork`.

mod common;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    common::with_throwaway_conf(|| {
        drop(common::initialised_backend());
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("fork");
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/fork.c");
        let cc = Command::new("cc").arg("-o").arg(&exe).arg(&src).arg("-ldl").output().expect("cc");
        assert!(cc.status.success(), "cc: {}", String::from_utf8_lossy(&cc.stderr));
        let mut ok = true;
        let out = Command::new(&exe).arg(common::module_path()).output().expect("run fork");
        if out.status.success() {
            println!("ok   fork: the child initialises its own library and draws its own random bytes");
        } else {
            println!("FAIL fork: {} {}", out.status, String::from_utf8_lossy(&out.stderr));
            ok = false;
        }
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(common::module_path())
            .arg("--test-fork")
            .output()
            .expect("pkcs11-tool (bash scripts/test.sh installs OpenSC)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() && !text.contains("error") && !text.contains("CKR_") {
            println!("ok   pkcs11-tool --test-fork");
        } else {
            println!("FAIL pkcs11-tool --test-fork: {text}");
            ok = false;
        }
        if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    })
}
