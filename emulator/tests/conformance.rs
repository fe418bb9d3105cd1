//! The conformance suite on the emulator (a fresh world in a temporary folder), its cases side by
//! side as `hsmkit conform` runs them there; it must leave the world's kmdata as it found it.

use std::process::ExitCode;

use hsmkit_backend::{Backend as _, Pin, SessionMode, UserKind};
use hsmkit_conformance::{Body, Ctx, Expectations, ModuleInfo, Report, run_cases_parallel};
use hsmkit_emulator::suite::CipherSuite;
use hsmkit_emulator::world::Quorum;
use hsmkit_emulator::{Config, Emulator, SLOT};

fn main() -> ExitCode {
    let dir = tempfile::tempdir().expect("tempdir");
    let kmdata = dir.path().join("kmdata");
    std::fs::create_dir(&kmdata).expect("kmdata");
    let emu = Emulator::open(Config::beside(&kmdata)).expect("emulator");
    emu.create_world(CipherSuite::DLf3072s256mAEScSP800131Ar1, Quorum { k: 1, n: 1 }, &[Pin::from("card".to_string())])
        .expect("world");
    // The security officer (the card) sets a user PIN, so private keys need the user's login, as
    // on a token initialised through libhsmkit_pkcs11.so.
    {
        let s = emu.open_session(SLOT, SessionMode::ReadWrite).expect("session");
        s.login(UserKind::SecurityOfficer, &Pin::from("card".to_string())).expect("officer");
        s.init_pin(&Pin::from("user-pin".to_string())).expect("init PIN");
        s.logout().expect("logout");
    }
    let expectations = Expectations::builtin("emulator").expect("the emulator's expectation file");
    // The officer of a world is its cards: their PINs, joined by commas (here the one card).
    let ctx = || {
        Ctx::new(&emu, SLOT, Some(Pin::from("user-pin".to_string()))).with_so_pin(Some(Pin::from("card".to_string())))
    };
    let before = files(dir.path());
    // Side by side, as `hsmkit conform` runs the emulator: every case must still pass, each with
    // its own vector count.
    let cases: Vec<_> = hsmkit_conformance::suite().into_iter().filter(|c| matches!(c.body, Body::Seam(_))).collect();
    let findings = run_cases_parallel(&cases, &ctx, 2, &expectations, &mut |_| {});
    let report = Report::new(ModuleInfo::of("the hsmkit emulator", &emu), Vec::new(), findings);
    let checks: u64 = report.findings.iter().map(|f| f.checks).sum();
    assert!(checks > 5_000, "{checks} vector checks");
    assert!(
        report.findings.iter().filter(|f| f.id.starts_with("vectors-")).all(|f| f.checks > 0),
        "a vector set counted nothing"
    );
    print!("{report}");
    let after = files(dir.path());
    let left_as_found = before == after;
    if !left_as_found {
        let names =
            |v: &[(String, Vec<u8>)]| v.iter().map(|(n, b)| format!("{n} ({} bytes)", b.len())).collect::<Vec<_>>();
        let changed: Vec<_> = after.iter().filter(|f| !before.contains(f)).map(|(n, _)| n.as_str()).collect();
        println!("the suite left the module's files changed: {changed:?} (before {:?})", names(&before));
    }
    // The sweep (with the profiles it leaves pairs to) covers every row the emulator lists.
    let gaps = hsmkit_conformance::uncovered(&emu.capabilities().expect("the mechanism list"));
    if !gaps.is_empty() {
        println!("the kit has no case for {gaps:?}");
    }
    if report.ok() && left_as_found && gaps.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Every file under `dir` (kmdata, NVRAM, cards) with its bytes, sorted: key blobs the suite
/// must not leave, and a world, card or token record it must not change. Lock files, empty and
/// made on first use, are no state.
fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    fn walk(d: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(d).expect("a folder of the module").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if !p.to_string_lossy().ends_with(".lock") {
                out.push((p.display().to_string(), std::fs::read(&p).expect("a file of the module")));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}
