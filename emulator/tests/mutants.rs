//! Mutation tests: 10,000 seeded mutants of each file format the module reads (the world file, a
//! key blob, an Administrator card, the PKCS#11 token record). Each mutant must be refused, or
//! read as meaning exactly what the original means (JSON whitespace, hex case). The card's
//! failure counters are outside the authenticated part by design (the module never allows more
//! than its own limit): a mutant that changes only them is read. A mutant that changes the card's
//! sealed share is refused when the share is opened (AES-GCM); a sample of those is opened here.
//!
//! Each test prints `MUTANTS <format>: <n> mutants, <refused> refused, <same> read as the
//! original` for `docs/reliability.md` (`bash scripts/reliability.sh`).

mod common;

use std::path::Path;

use common::*;
use hsmkit_backend::Pin;
use hsmkit_emulator::card::CardFile;
use hsmkit_emulator::keyblob::KeyFile;
use hsmkit_emulator::mutate::mutants;
use hsmkit_emulator::world::World;

const COUNT: usize = 10_000;

/// How a mutant was taken.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Refused,
    Same,
}

/// Runs `check` on every mutant of `original` (on `threads` threads, each with its own folder)
/// and returns (refused, same); panics on a mutant read as something else.
fn run(
    format: &str,
    original: &[u8],
    seed: u64,
    threads: usize,
    check: impl Fn(usize, &[u8]) -> Result<Verdict, String> + Sync,
) -> (usize, usize) {
    let all = mutants(original, seed, COUNT);
    assert_eq!(all.len(), COUNT, "{format}: enough distinct mutants");
    let chunk = all.len().div_ceil(threads);
    let results: Vec<(usize, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = all
            .chunks(chunk)
            .enumerate()
            .map(|(t, part)| {
                let check = &check;
                s.spawn(move || {
                    let (mut refused, mut same) = (0, 0);
                    for (kind, m) in part {
                        match check(t, m) {
                            Ok(Verdict::Refused) => refused += 1,
                            Ok(Verdict::Same) => same += 1,
                            Err(why) => panic!("{format}: a {kind} mutant was read as something else: {why}"),
                        }
                    }
                    (refused, same)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let (refused, same) = results.iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    println!("MUTANTS {format}: {COUNT} mutants, {refused} refused, {same} read as the original");
    (refused, same)
}

fn scratch(dir: &Path, t: usize) -> std::path::PathBuf {
    let d = dir.join(format!("mutants-{t}"));
    std::fs::create_dir_all(&d).expect("scratch");
    d
}

#[test]
fn world_file_mutants_are_refused() {
    let f = legacy_2_of_3();
    let path = f.kmdata().join("local/world");
    let original = std::fs::read(&path).expect("world");
    let good = World::load(&path).expect("the original loads");
    let (refused, _) = run("world file", &original, 1, 2, |t, m| {
        let p = scratch(f.dir.path(), t).join("world");
        std::fs::write(&p, m).expect("write");
        match World::load(&p) {
            Err(_) => Ok(Verdict::Refused),
            Ok(w) if w.body() == good.body() => Ok(Verdict::Same),
            Ok(_) => Err("a different world".into()),
        }
    });
    assert!(refused > COUNT / 2);
}

#[test]
fn key_blob_mutants_are_refused() {
    let f = legacy_2_of_3();
    f.emu.generate_rsa("simple", "contosokey", "contosokey", 1024, 65537).expect("generate");
    let path = f.kmdata().join("local/key_simple_contosokey");
    let original = std::fs::read(&path).expect("blob");
    let good = KeyFile::read(&path).expect("the original reads");
    assert!(good.archive.is_some(), "a recoverable key: its recovery blob is mutated too");
    let (refused, _) = run("key blob", &original, 2, 2, |t, m| {
        let p = scratch(f.dir.path(), t).join("key_simple_contosokey");
        std::fs::write(&p, m).expect("write");
        match f.emu.load_blob(&p) {
            Err(_) => Ok(Verdict::Refused),
            Ok(_) => match KeyFile::read(&p) {
                Ok(k) if k == good => Ok(Verdict::Same),
                _ => Err("a different blob loaded".into()),
            },
        }
    });
    assert!(refused > COUNT / 2);
}

#[test]
fn card_mutants_are_refused() {
    let f = legacy_2_of_3();
    let (path, _) = f.good_card(0);
    let original = std::fs::read(&path).expect("card");
    let good = CardFile::read(&path).expect("the original reads");
    let share_changed = std::sync::atomic::AtomicUsize::new(0);
    let (refused, _) = run("card", &original, 3, 2, |t, m| {
        let p = scratch(f.dir.path(), t).join("card");
        std::fs::write(&p, m).expect("write");
        match CardFile::read(&p) {
            Err(_) => Ok(Verdict::Refused),
            Ok(c) if c.header == good.header && c.header_sha256 == good.header_sha256 && c.share == good.share => {
                // Only the counters (documented as the card's own, bounded by the module) differ.
                Ok(Verdict::Same)
            }
            Ok(c) if c.header == good.header && c.share != good.share => {
                // The sealed share changed: opening it is refused (a sample is opened below).
                share_changed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(Verdict::Refused)
            }
            Ok(_) => Err("a different card header read".into()),
        }
    });
    assert!(refused > COUNT / 2);
    // A sample of share mutants, opened with the right PIN: each is refused.
    let pin = Pin::from("pin-1".to_string());
    let mut opened = 0;
    for (_, m) in mutants(&original, 3, COUNT) {
        let p = f.dir.path().join("sample-card");
        std::fs::write(&p, &m).expect("write");
        if let Ok(mut c) = CardFile::read(&p)
            && c.header == good.header
            && c.share != good.share
        {
            let hook = hsmkit_emulator::fsio::FaultHook::default();
            assert!(c.unlock(&p, &pin, &hook).is_err(), "a changed share opened");
            opened += 1;
            if opened == 20 {
                break;
            }
        }
    }
    assert!(share_changed.into_inner() == 0 || opened > 0);
}

#[test]
fn token_record_mutants_are_refused() {
    let f = legacy_2_of_3();
    let auth = f.emu.authorize(&[f.good_card(0), f.good_card(1)]).expect("quorum");
    f.emu.init_user_pin(&auth, &Pin::from("user-pin".to_string())).expect("user PIN");
    let path = f.kmdata().join("local/pkcs11_token");
    let original = std::fs::read(&path).expect("record");
    let good = f.emu.token_record().expect("reads").expect("a record");
    let (refused, _) = run("token record", &original, 4, 1, |_, m| {
        std::fs::write(&path, m).expect("write");
        match f.emu.token_record() {
            Err(_) => Ok(Verdict::Refused),
            Ok(Some(r)) if r == good => Ok(Verdict::Same),
            Ok(_) => Err("a different record read".into()),
        }
    });
    assert!(refused > COUNT / 2);
}

#[test]
fn stored_object_mutants_are_refused() {
    // A data object stored through PKCS#11: its header and sealed attributes.
    let f = legacy_2_of_3();
    let attrs = [(3u64, b"label".to_vec()), (0x11, b"an object's value".to_vec())]
        .into_iter()
        .map(|(k, v)| (k, zeroize::Zeroizing::new(v)))
        .collect();
    let obj = f.emu.save_object(f.emu.new_object(0, true, attrs).expect("new")).expect("save");
    let path = obj.path.clone().expect("a token object");
    let original = std::fs::read(&path).expect("object");
    let (refused, _) = run("stored object", &original, 5, 1, |_, m| {
        std::fs::write(&path, m).expect("write");
        match f.emu.load_object(&path) {
            Err(_) => Ok(Verdict::Refused),
            Ok(o) if o == obj => Ok(Verdict::Same),
            Ok(_) => Err("a different object read".into()),
        }
    });
    assert!(refused > COUNT / 2);
}
