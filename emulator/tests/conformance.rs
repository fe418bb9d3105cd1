//! The conformance suite on the emulator (a fresh world in a temporary folder).

use std::process::ExitCode;

use hsmkit_backend::{Backend as _, Pin, SessionMode, UserKind};
use hsmkit_conformance::{Ctx, Expectations, run};
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
    let ctx = Ctx::new(&emu, SLOT, Some(Pin::from("user-pin".to_string())));
    let report = run("the hsmkit emulator", &ctx, &expectations);
    print!("{report}");
    if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
