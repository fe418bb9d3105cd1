//! Crash injection at every write: each write-bearing operation is stopped at each stage of each
//! of its writes in turn (half written, written but not renamed, renamed but the folder not
//! synced), until it runs through. After every stop a fresh module on the same folders must open,
//! hold no damaged file, show the state from before the operation or from after it, and the
//! operation run again must work.
//!
//! Each test prints `CRASHES <operation>: <n> crash points` for `docs/reliability.md`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use hsmkit_backend::{Backend as _, ErrorKind, KeyPairSpec, KeyPolicy, Pin, Result, SessionMode, Usage};
use hsmkit_emulator::fsio::FaultHook;
use hsmkit_emulator::{Emulator, SLOT};

/// A module on `dir` whose `k`-th write stage (counting every stage of every write) fails.
fn crashing_at(dir: &Path, seed: u64, k: usize) -> (Result<Emulator>, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let mut c = config(dir, Some(seed));
    c.faults = FaultHook::new(move |_, _| counter.fetch_add(1, Ordering::SeqCst) == k);
    (Emulator::open(c), seen)
}

/// The module as the next process finds it: it opens, and no key blob is damaged.
fn reopened(dir: &Path, seed: u64) -> Emulator {
    let emu = Emulator::open(config(dir, Some(seed))).expect("a module opens after the crash");
    let (_, damaged) = emu.list_keys_and_damage().expect("list");
    assert!(damaged.is_empty(), "a crash left a damaged file: {damaged:?}");
    emu
}

/// Runs `op` on a fresh copy of the fixture once for each write stage, stopped at that stage;
/// after each stop checks `state` on a fresh module (true: before or after, consistent) and that
/// `op` then works.
fn every_stage(
    name: &str,
    setup: impl Fn() -> (tempfile::TempDir, u64),
    op: impl Fn(&Emulator) -> Result<()> + Copy,
    state: impl Fn(&Emulator) -> bool + Copy,
) {
    let mut points = 0;
    for k in 0..200 {
        let (dir, seed) = setup();
        let (emu, seen) = crashing_at(dir.path(), seed, k);
        let result = emu.and_then(|e| op(&e));
        if seen.load(Ordering::SeqCst) <= k {
            result.expect("the operation runs through without a crash");
            break;
        }
        points += 1;
        let fresh = reopened(dir.path(), seed);
        assert!(state(&fresh), "{name}: after a crash at write stage {k} the state is neither before nor after");
        match op(&fresh) {
            Ok(()) => {}
            Err(e) if e.kind() == &ErrorKind::AlreadyExists => {}
            Err(e) => panic!("{name}: after a crash at write stage {k} the operation fails: {e}"),
        }
    }
    assert!(points > 0, "{name}: the operation writes nothing");
    println!("CRASHES {name}: {points} crash points, each left the state before or after");
}

fn world_dir() -> (tempfile::TempDir, u64) {
    let f = legacy_2_of_3();
    f.emu.generate_rsa("simple", "base", "base", 1024, 65537).expect("a key to copy");
    drop(f.emu);
    (f.dir, 42)
}

fn key_loads_or_is_absent(emu: &Emulator, app: &str, ident: &str) -> bool {
    match emu.load_named(app, ident) {
        Ok(_) => true,
        Err(e) => e.kind() == &ErrorKind::NotFound,
    }
}

#[test]
fn generatekey_at_every_write() {
    every_stage(
        "generatekey (RSA)",
        world_dir,
        |e| e.generate_rsa("simple", "crashkey", "crashkey", 1024, 65537).map(|_| ()),
        |e| key_loads_or_is_absent(e, "simple", "crashkey"),
    );
    every_stage(
        "generatekey (ECDSA P-256)",
        world_dir,
        |e| e.generate_ec("simple", "eckey", "eckey", hsmkit_backend::EcCurve::P256).map(|_| ()),
        |e| key_loads_or_is_absent(e, "simple", "eckey"),
    );
}

#[test]
fn cngimport_at_every_write() {
    every_stage(
        "cngimport",
        world_dir,
        |e| e.cng_import("simple", "base", "container", true, "alice").map(|_| ()),
        |e| e.list_keys().expect("list").iter().all(|k| e.load_blob(&k.path).is_ok()),
    );
}

#[test]
fn pkcs11_key_pair_and_changes_at_every_write() {
    let pair = |e: &Emulator| -> Result<()> {
        let s = e.open_session(SLOT, SessionMode::ReadWrite)?;
        let p = KeyPolicy::new(Usage::SIGN | Usage::VERIFY).with_label("pair");
        s.generate_key_pair(&KeyPairSpec::Rsa { bits: 1024, public_exponent: 65537 }, &p).map(|_| ())
    };
    // Both halves or neither: a private key whose public half went missing is not left.
    let halves = |e: &Emulator| {
        let s = e.open_session(SLOT, SessionMode::ReadOnly).expect("session");
        let found =
            s.find_keys(&hsmkit_backend::KeyFilter { label: Some("pair".into()), ..Default::default() }).expect("find");
        found.len().is_multiple_of(2) && e.list_keys().expect("list").iter().all(|k| e.load_blob(&k.path).is_ok())
    };
    every_stage("C_GenerateKeyPair (token)", world_dir, pair, halves);
}

#[test]
fn user_pin_and_card_counters_at_every_write() {
    every_stage(
        "init-pin (token record)",
        world_dir,
        |e| {
            let auth = e.authorize(&[card_of(e, 0, "pin-1"), card_of(e, 1, "pin-2")])?;
            e.init_user_pin(&auth, &Pin::from("user-pin".to_string()))
        },
        |e| e.token_record().is_ok(),
    );
    // A wrong PIN's count: the card is read whole afterwards, and the right PIN still opens it.
    every_stage(
        "a wrong card PIN (card counter)",
        world_dir,
        |e| match e.authorize(&[card_of(e, 0, "wrong"), card_of(e, 1, "pin-2")]) {
            Err(err) if err.kind() == &ErrorKind::PinIncorrect => Ok(()),
            Err(err) => Err(err),
            Ok(_) => panic!("a wrong PIN opened a card"),
        },
        |e| e.authorize(&[card_of(e, 0, "pin-1"), card_of(e, 1, "pin-2")]).is_ok(),
    );
}

#[test]
fn module_mode_at_every_write() {
    every_stage(
        "nopclearfail (NVRAM)",
        world_dir,
        |e| e.set_mode(hsmkit_emulator::module::Mode::Maintenance),
        |e| e.mode().is_ok(),
    );
}

/// Card `i` of the module's world, with `pin`.
fn card_of(e: &Emulator, i: u8, pin: &str) -> (std::path::PathBuf, Pin) {
    let w = e.world().expect("w").expect("a world");
    (hsmkit_emulator::card::card_path(&e.config().cards, w.hknso(), i + 1), Pin::from(pin.to_string()))
}
