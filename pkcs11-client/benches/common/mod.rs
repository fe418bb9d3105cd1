//! Shared set-up of the benches: a throwaway SoftHSM2 token, and criterion's run.

use std::process::Command;

/// Makes a throwaway SoftHSM2 token labelled `label` (user PIN 1234). Unless `SOFTHSM2_CONF` is
/// set, it first makes a temporary token folder and runs this bench again with it, then exits.
pub fn softhsm_token(label: &str) {
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("tokens")).expect("tokens");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\n", dir.path().join("tokens").display()),
        )
        .expect("conf");
        let me = std::env::current_exe().expect("exe");
        let status =
            Command::new(me).args(std::env::args_os().skip(1)).env("SOFTHSM2_CONF", &conf).status().expect("rerun");
        std::process::exit(status.code().unwrap_or(1));
    }
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label, "--pin", "1234", "--so-pin", "5678"])
        .output()
        .expect("softhsm2-util");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
}

/// An emulator with a fresh world (1/1 Administrator card set) in `dir`.
#[allow(dead_code)]
pub fn emulator_world(dir: &std::path::Path) -> hsmkit_emulator::Emulator {
    std::fs::create_dir(dir.join("kmdata")).expect("kmdata");
    let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(dir.join("kmdata"))).expect("emulator");
    emu.create_world(
        hsmkit_emulator::suite::CipherSuite::DLf3072s256mAEScSP800131Ar1,
        hsmkit_emulator::world::Quorum { k: 1, n: 1 },
        &[hsmkit_backend::Pin::from("p".to_string())],
    )
    .expect("world");
    emu
}

/// Makes the token, then runs `bench` under criterion (5 s per row) and prints the summary.
pub fn run(label: &str, bench: fn(&mut criterion::Criterion)) {
    softhsm_token(label);
    let mut c =
        criterion::Criterion::default().measurement_time(std::time::Duration::from_secs(5)).configure_from_args();
    bench(&mut c);
    c.final_summary();
}
