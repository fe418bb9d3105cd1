//! The security world: creation, cards, quorum, and every bad input of the card path.

mod common;

use common::*;
use hsmkit_backend::ErrorKind;
use hsmkit_emulator::suite::CipherSuite;
use hsmkit_emulator::world::World;

#[test]
fn a_quorum_of_k_distinct_cards_recreates_knso() {
    let f = legacy_2_of_3();
    for pair in [[0, 1], [0, 2], [1, 2]] {
        let cards = [f.good_card(pair[0]), f.good_card(pair[1])];
        let auth = f.emu.authorize(&cards).expect("quorum");
        let world = f.emu.world().expect("world").expect("loaded");
        assert_eq!(auth.hknso(), world.hknso());
        let cert = auth.certify(b"statement").expect("certify");
        assert!(world.verify_certificate(b"statement", &cert));
        assert!(!world.verify_certificate(b"other statement", &cert));
    }
}

#[test]
fn k_minus_one_cards_do_not_meet_the_quorum() {
    let f = legacy_2_of_3();
    let before = f.snapshot();
    let err = f.emu.authorize(&[f.good_card(1)]).expect_err("one card of 2/3");
    assert_eq!(err.kind(), &ErrorKind::QuorumNotMet { have: 1, need: 2 });
    assert!(err.hint_text().unwrap_or("").contains("1 more"), "{err:?}");
    assert_eq!(f.snapshot(), before, "nothing on disk changes");
}

#[test]
fn the_same_card_twice_is_refused() {
    let f = legacy_2_of_3();
    let before = f.snapshot();
    let err = f.emu.authorize(&[f.good_card(0), f.good_card(0)]).expect_err("same card twice");
    assert_eq!(err.kind(), &ErrorKind::ArgumentsBad);
    assert!(err.to_string().contains("presented twice"), "{err}");
    assert_eq!(f.snapshot(), before);
}

#[test]
fn wrong_pins_are_counted_and_lock_the_card() {
    let f = legacy_2_of_3();
    for left in (1..5).rev() {
        let err = f.emu.authorize(&[f.card(0, "wrong"), f.good_card(1)]).expect_err("wrong pin");
        assert_eq!(err.kind(), &ErrorKind::PinIncorrect);
        assert!(err.to_string().contains(&format!("{left} tries left")), "{err}");
    }
    let err = f.emu.authorize(&[f.card(0, "wrong"), f.good_card(1)]).expect_err("fifth wrong pin");
    assert_eq!(err.kind(), &ErrorKind::PinLocked);
    // Locked now, even with the right PIN.
    let err = f.emu.authorize(&[f.good_card(0), f.good_card(1)]).expect_err("locked");
    assert_eq!(err.kind(), &ErrorKind::PinLocked);
    // The other two cards still make the quorum.
    f.emu.authorize(&[f.good_card(1), f.good_card(2)]).expect("cards 2 and 3");
}

#[test]
fn a_right_pin_resets_the_failure_count() {
    let f = legacy_2_of_3();
    for _ in 0..4 {
        f.emu.authorize(&[f.card(0, "wrong"), f.good_card(1)]).expect_err("wrong");
    }
    f.emu.authorize(&[f.good_card(0), f.good_card(1)]).expect("right pin");
    let err = f.emu.authorize(&[f.card(0, "wrong"), f.good_card(1)]).expect_err("wrong again");
    assert!(err.to_string().contains("4 tries left"), "{err}");
}

#[test]
fn a_card_of_another_world_is_refused_by_name() {
    let a = legacy_2_of_3();
    let b = world(CipherSuite::DLf1024s160mRijndael, 2, 3, 43);
    let before = a.snapshot();
    let err = a.emu.authorize(&[a.good_card(0), b.good_card(1)]).expect_err("foreign card");
    assert_eq!(err.kind(), &ErrorKind::TokenNotRecognized);
    let other = b.emu.world().expect("w").expect("w").name();
    let this = a.emu.world().expect("w").expect("w").name();
    let msg = err.to_string();
    assert!(msg.contains(&other) && msg.contains(&this), "{msg}");
    assert_eq!(a.snapshot(), before);
}

#[test]
fn damaged_card_files_are_refused_and_left_alone() {
    let f = legacy_2_of_3();
    let path = f.cards[0].clone();
    let good = std::fs::read(&path).expect("card");
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("not json", b"\x00\x01garbage".to_vec()),
        ("share bit flip", flip_in_field(&good, "\"ct\"")),
        ("edited card number", String::from_utf8_lossy(&good).replacen("\"card\": 1", "\"card\": 3", 1).into_bytes()),
        ("edited quorum", String::from_utf8_lossy(&good).replacen("\"quorum\": 2", "\"quorum\": 1", 1).into_bytes()),
        (
            "hostile kdf",
            String::from_utf8_lossy(&good).replacen("\"m_kib\": 19456", "\"m_kib\": 4000000000", 1).into_bytes(),
        ),
    ];
    for (what, bytes) in damaged {
        assert_ne!(bytes, good, "{what}: the damage must change the file");
        std::fs::write(&path, &bytes).expect("write");
        let err = f.emu.authorize(&[(path.clone(), pin(1)), f.good_card(1)]).expect_err(what);
        assert!(matches!(err.kind(), ErrorKind::Corrupt | ErrorKind::PinIncorrect), "{what}: {err:?}");
        if err.kind() == &ErrorKind::Corrupt {
            assert_eq!(std::fs::read(&path).expect("read"), bytes, "{what}: a corrupt card is not rewritten");
        }
    }
}

fn pin(i: usize) -> hsmkit_backend::Pin {
    hsmkit_backend::Pin::from(format!("pin-{i}"))
}

/// Flips one bit in the hex value that follows `field`.
pub fn flip_in_field(bytes: &[u8], field: &str) -> Vec<u8> {
    let s = String::from_utf8_lossy(bytes).into_owned();
    let at = s.find(field).expect("field") + field.len() + 4;
    let mut out = s.into_bytes();
    out[at] = if out[at] == b'0' { b'1' } else { b'0' };
    out
}

#[test]
fn damaged_world_files_are_refused() {
    let f = legacy_2_of_3();
    let path = f.kmdata().join("local").join("world");
    let good = std::fs::read(&path).expect("world");
    let text = String::from_utf8_lossy(&good).into_owned();
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 10].to_vec()),
        ("bit flip in hkm", flip_in_field(&good, "\"hkm\"")),
        ("bit flip in the signature", flip_in_field(&good, "\"signature\"")),
        ("edited quorum", text.replacen("\"k\": 2", "\"k\": 1", 1).into_bytes()),
        ("edited suite", text.replacen("DLf1024s160mRijndael", "DLf3072s256mAEScSP800131Ar1", 1).into_bytes()),
        ("unknown suite", text.replacen("DLf1024s160mRijndael", "DLf2048s224mDES3", 1).into_bytes()),
    ];
    for (what, bytes) in damaged {
        assert_ne!(bytes, good, "{what}");
        std::fs::write(&path, &bytes).expect("write");
        let err = World::load(&path).expect_err(what);
        assert_eq!(err.kind(), &ErrorKind::Corrupt, "{what}: {err:?}");
        assert!(err.to_string().contains("world file"), "{what}: {err}");
    }
}

#[test]
fn seeded_worlds_are_byte_identical() {
    let a = world(CipherSuite::DLf1024s160mRijndael, 1, 2, 7);
    let b = world(CipherSuite::DLf1024s160mRijndael, 1, 2, 7);
    let c = world(CipherSuite::DLf1024s160mRijndael, 1, 2, 8);
    let read = |f: &Fixture| std::fs::read_to_string(f.kmdata().join("local/world")).expect("world");
    assert_eq!(read(&a), read(&b));
    assert_ne!(read(&a), read(&c));
    assert_eq!(std::fs::read(&a.cards[1]).expect("card"), std::fs::read(&b.cards[1]).expect("card"));
}

#[test]
fn the_default_suite_works_end_to_end() {
    let f = world(CipherSuite::DLf3072s256mAEScSP800131Ar1, 2, 2, 1);
    let w = f.emu.world().expect("w").expect("w");
    assert_eq!(w.hknso().len(), 32, "SHA-256 hashes");
    f.emu.authorize(&[f.good_card(0), f.good_card(1)]).expect("quorum");
}

#[test]
fn an_existing_world_is_not_replaced() {
    let f = legacy_2_of_3();
    let before = f.snapshot();
    let err = f
        .emu
        .create_world(CipherSuite::DLf1024s160mRijndael, hsmkit_emulator::world::Quorum { k: 1, n: 1 }, &pins(1))
        .expect_err("second world");
    assert_eq!(err.kind(), &ErrorKind::AlreadyExists);
    assert_eq!(f.snapshot(), before);
}

#[test]
fn a_crash_while_creating_a_world_leaves_no_world_or_one_the_quorum_can_program() {
    use hsmkit_emulator::fsio::{FaultHook, WriteStage};
    use hsmkit_emulator::world::Quorum;
    for stage in [WriteStage::PartialWrite, WriteStage::BeforeRename, WriteStage::AfterRename] {
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = config(dir.path(), Some(11));
        c.faults = FaultHook::new(move |p, s| s == stage && p.ends_with("world"));
        let emu = hsmkit_emulator::Emulator::open(c.clone()).expect("open");
        let err =
            emu.create_world(CipherSuite::DLf1024s160mRijndael, Quorum { k: 2, n: 3 }, &pins(3)).expect_err("crash");
        assert!(err.to_string().contains("simulated crash"), "{err}");
        c.faults = FaultHook::default();
        let emu = hsmkit_emulator::Emulator::open(c.clone()).expect("reopen");
        match stage {
            WriteStage::AfterRename => {
                // The world file is whole but the module never got KM: the quorum programs it.
                let err = emu.generate_rsa("simple", "k", "k", 1024, 65537).expect_err("not programmed");
                assert_eq!(err.kind(), &ErrorKind::TokenNotRecognized);
                assert!(err.hint_text().unwrap_or("").contains("--program"), "{err:?}");
                assert!(!emu.is_programmed().expect("state"));
                let cards = dir.path().join("cards");
                let w = emu.world().expect("w").expect("world");
                let card = |n: u8, pin: &str| {
                    (hsmkit_emulator::card::card_path(&cards, w.hknso(), n), hsmkit_backend::Pin::from(pin.to_string()))
                };
                let auth = emu.authorize(&[card(1, "pin-1"), card(3, "pin-3")]).expect("quorum");
                emu.program_module(&auth).expect("program");
                emu.generate_rsa("simple", "k", "k", 1024, 65537).expect("usable now");
            }
            _ => {
                assert!(emu.world().expect("w").is_none(), "{stage:?}: no world");
                assert!(!dir.path().join("kmdata/local/world").exists());
            }
        }
    }
}

#[test]
fn a_damaged_nvram_file_is_refused() {
    let f = legacy_2_of_3();
    let path = f.dir.path().join("nvram/module");
    let good = std::fs::read_to_string(&path).expect("nvram");
    for (what, text) in [
        ("truncated", good[..good.len() / 2].to_string()),
        ("not json", "\u{0}\u{1}".to_string()),
        ("bad hex", good.replacen("\"km\": \"", "\"km\": \"zz", 1)),
        ("unknown mode", good.replacen("Operational", "Sideways", 1)),
    ] {
        assert_ne!(text, good, "{what}");
        std::fs::write(&path, &text).expect("write");
        let err = hsmkit_emulator::Emulator::open(config(f.dir.path(), Some(1))).expect_err(what);
        assert_eq!(err.kind(), &ErrorKind::Corrupt, "{what}");
        assert!(err.to_string().contains("NVRAM"), "{what}: {err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text, "{what}: left alone");
    }
    // A bit flip inside KM is not a parse error: the module then refuses the world.
    std::fs::write(&path, flip_in_field(good.as_bytes(), "\"km\"")).expect("write");
    let emu = hsmkit_emulator::Emulator::open(config(f.dir.path(), Some(1))).expect("opens");
    let err = emu.generate_rsa("simple", "k", "k", 1024, 65537).expect_err("wrong KM");
    assert!(matches!(err.kind(), ErrorKind::TokenNotRecognized | ErrorKind::Corrupt), "{err:?}");
}

#[test]
fn parallel_wrong_pins_are_counted_one_by_one() {
    let f = legacy_2_of_3();
    let tried = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..12 {
            s.spawn(|| {
                let err = f.emu.authorize(&[f.card(0, "wrong"), f.good_card(1)]).expect_err("wrong pin");
                // "wrong PIN for …" means the PIN was tried; "is locked after" that it was refused first.
                if err.to_string().contains("wrong PIN for") {
                    tried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                } else {
                    assert_eq!(err.kind(), &ErrorKind::PinLocked, "{err}");
                }
            });
        }
    });
    assert_eq!(tried.into_inner(), 5, "exactly the limit of guesses is tried, however many run at once");
    let err = f.emu.authorize(&[f.good_card(0), f.good_card(1)]).expect_err("locked");
    assert_eq!(err.kind(), &ErrorKind::PinLocked);
}

#[test]
fn a_card_file_cannot_raise_its_own_limit_and_damage_costs_no_try() {
    let f = legacy_2_of_3();
    let path = f.card(0, "x").0;
    let text = std::fs::read_to_string(&path).expect("card");
    let mut card: serde_json::Value = serde_json::from_str(&text).expect("json");
    card["max_failures"] = serde_json::json!(u32::MAX);
    std::fs::write(&path, serde_json::to_vec(&card).expect("json")).expect("write");
    for _ in 0..5 {
        f.emu.authorize(&[f.card(0, "wrong"), f.good_card(1)]).expect_err("wrong");
    }
    let err = f.emu.authorize(&[f.card(0, "wrong"), f.good_card(1)]).expect_err("sixth");
    assert_eq!(err.kind(), &ErrorKind::PinLocked, "the module's limit holds: {err}");

    // A damaged header is reported as damage, before any try.
    let g = legacy_2_of_3();
    let path = g.card(0, "x").0;
    let mut card: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("card")).expect("json");
    card["header"]["of"] = serde_json::json!(4);
    std::fs::write(&path, serde_json::to_vec(&card).expect("json")).expect("write");
    let err = g.emu.authorize(&[g.good_card(0), g.good_card(1)]).expect_err("damaged");
    assert_eq!(err.kind(), &ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("header is damaged"), "{err}");
    let after: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("card")).expect("json");
    assert_eq!(after["failures"], 0, "no try was spent");

    // Key-derivation settings that would make a try expensive are refused before any work.
    let h = legacy_2_of_3();
    let path = h.card(0, "x").0;
    let mut card: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("card")).expect("json");
    card["header"]["kdf"]["m_kib"] = serde_json::json!(1024 * 1024);
    std::fs::write(&path, serde_json::to_vec(&card).expect("json")).expect("write");
    let t = std::time::Instant::now();
    let err = h.emu.authorize(&[h.good_card(0), h.good_card(1)]).expect_err("hostile KDF");
    assert_eq!(err.kind(), &ErrorKind::Corrupt, "{err}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "refused before deriving");
}

#[test]
fn a_forged_world_with_the_real_module_key_hash_is_refused() {
    use hsmkit_backend::{Backend as _, KeyMaterial, KeyPolicy, Usage};
    let real = legacy_2_of_3();
    real.emu.authorize(&[real.good_card(0), real.good_card(1)]).expect("the real quorum");
    // The attacker's own world and cards, then a world file naming the real module key's hash,
    // signed by the attacker's KNSO.
    let attacker = world(CipherSuite::DLf1024s160mRijndael, 1, 1, 99);
    let auth = attacker.emu.authorize(&[attacker.good_card(0)]).expect("the attacker's quorum");
    let theirs = attacker.emu.world().expect("w").expect("w");
    let mine = real.emu.world().expect("w").expect("w");
    let mut body = theirs.body().clone();
    body.hkm = mine.hkm().to_vec();
    let signature = auth.certify(&serde_json::to_vec(&body).expect("body")).expect("sign");
    let forged = serde_json::json!({ "body": body, "signature": hex::encode(signature) });
    let world_path = real.kmdata().join("local/world");
    std::fs::write(&world_path, serde_json::to_vec_pretty(&forged).expect("json")).expect("forge");
    // The same module (its NVRAM) with the forged world in kmdata.
    let emu = hsmkit_emulator::Emulator::open(config(real.dir.path(), Some(42))).expect("the file itself verifies");
    let err = emu.authorize(&[attacker.good_card(0)]).expect_err("the attacker's cards");
    assert_eq!(err.kind(), &ErrorKind::TokenNotRecognized, "{err}");
    assert!(err.to_string().contains("not the world module"), "{err}");
    let s = emu.open_session(hsmkit_emulator::SLOT, hsmkit_backend::SessionMode::ReadWrite).expect("session");
    let mut p = KeyPolicy::new(Usage::WRAP);
    p.token = false;
    let err = s
        .import_key(&KeyMaterial::Aes(zeroize::Zeroizing::new(vec![1; 32])), &p)
        .expect_err("no key is made under the real KM with a forged world");
    assert_eq!(err.kind(), &ErrorKind::TokenNotRecognized, "{err}");
}

#[test]
fn seeded_and_unseeded_runs_never_share_a_module_and_seeded_runs_do_not_repeat() {
    let f = legacy_2_of_3();
    assert!(f.emu.world().expect("w").expect("w").body().seeded, "a seeded world says so");
    let err = hsmkit_emulator::Emulator::open(config(f.dir.path(), None)).expect_err("unseeded on a seeded world");
    assert!(err.to_string().contains("--seed"), "{err}");
    // Two seeded runs (two opens, as two processes make) on the same module draw different keys.
    let a = hsmkit_emulator::Emulator::open(config(f.dir.path(), Some(42))).expect("run 1");
    let ha = a.generate_rsa("simple", "one", "one", 1024, 65537).expect("key one");
    let b = hsmkit_emulator::Emulator::open(config(f.dir.path(), Some(42))).expect("run 2");
    let hb = b.generate_rsa("simple", "two", "two", 1024, 65537).expect("key two");
    assert_ne!(ha.public, hb.public, "two seeded runs made the same key");
    // A world made with real randomness refuses a seeded run.
    let dir = tempfile::tempdir().expect("tmp");
    let real = hsmkit_emulator::Emulator::open(config(dir.path(), None)).expect("open");
    real.create_world(
        CipherSuite::DLf3072s256mAEScSP800131Ar1,
        hsmkit_emulator::world::Quorum { k: 1, n: 1 },
        &pins(1),
    )
    .expect("world");
    let err = hsmkit_emulator::Emulator::open(config(dir.path(), Some(1))).expect_err("seeded on a real world");
    assert!(err.to_string().contains("real randomness"), "{err}");
}

#[test]
fn two_new_worlds_at_once_make_one_world() {
    use hsmkit_emulator::world::Quorum;
    let dir = tempfile::tempdir().expect("tmp");
    let c = config(dir.path(), None);
    let barrier = std::sync::Barrier::new(2);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (c, barrier) = (c.clone(), &barrier);
                s.spawn(move || {
                    let emu = hsmkit_emulator::Emulator::open(c).expect("open");
                    barrier.wait();
                    emu.create_world(CipherSuite::DLf1024s160mRijndael, Quorum { k: 1, n: 2 }, &pins(2))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let made: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(made.len(), 1, "exactly one world is made: {results:?}");
    let lost = results.iter().find_map(|r| r.as_ref().err()).expect("one refused");
    assert_eq!(lost.kind(), &ErrorKind::AlreadyExists, "{lost}");
    // The world on disk is the winner's, its cards are the only cards, and they open it.
    let emu = hsmkit_emulator::Emulator::open(c).expect("reopen");
    let w = emu.world().expect("w").expect("world");
    assert_eq!(w.hknso(), made[0].world.hknso());
    let cards: Vec<_> = std::fs::read_dir(dir.path().join("cards")).expect("cards").flatten().collect();
    assert_eq!(cards.len(), 2, "no card or folder of the losing world: {cards:?}");
    emu.authorize(&[(made[0].cards[0].clone(), hsmkit_backend::Pin::from("pin-1".to_string()))]).expect("quorum");
}

#[test]
fn a_symlinked_card_is_updated_through_its_link() {
    // A card kept elsewhere (a mounted stick) and linked from the cards folder.
    let f = legacy_2_of_3();
    let (link, _) = f.card(0, "x");
    let stick = f.dir.path().join("stick");
    std::fs::create_dir(&stick).expect("stick");
    let target = stick.join("card1");
    std::fs::rename(&link, &target).expect("move the card");
    std::os::unix::fs::symlink(&target, &link).expect("link");
    f.emu.authorize(&[f.card(0, "wrong"), f.good_card(1)]).expect_err("a wrong PIN is counted");
    assert!(std::fs::symlink_metadata(&link).expect("link").file_type().is_symlink(), "the link stays a link");
    let card: serde_json::Value = serde_json::from_slice(&std::fs::read(&target).expect("card")).expect("json");
    assert_eq!(card["failures"], 1, "the count reached the card on the stick");
    f.emu.authorize(&[f.good_card(0), f.good_card(1)]).expect("the right PIN still works through the link");
    let card: serde_json::Value = serde_json::from_slice(&std::fs::read(&target).expect("card")).expect("json");
    assert_eq!(card["failures"], 0);
}

#[test]
fn the_module_remembers_the_world_it_verified_and_checks_any_other_bytes() {
    use sha2::Digest as _;
    let f = legacy_2_of_3();
    let world_path = f.kmdata().join("local/world");
    let bytes = std::fs::read(&world_path).expect("world");
    let nvram: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.dir.path().join("nvram/module")).expect("nvram")).expect("json");
    assert_eq!(nvram["world_sha256"], hex::encode(sha2::Sha256::digest(&bytes)), "the verified bytes are recorded");
    // Reopened on the same bytes (no signature check): the world's keys still work when needed.
    let emu = hsmkit_emulator::Emulator::open(config(f.dir.path(), Some(42))).expect("reopen");
    let auth = emu.authorize(&[f.good_card(0), f.good_card(1)]).expect("quorum");
    emu.program_module(&auth).expect("the quorum's KNSO matches the world");
    // Other bytes (the same world re-serialised compactly: same content, new hash) are verified
    // in full, and a changed signature is refused.
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    std::fs::write(&world_path, serde_json::to_vec(&v).expect("compact")).expect("write");
    hsmkit_emulator::Emulator::open(config(f.dir.path(), Some(42))).expect("verified in full");
    let sig = v["signature"].as_str().expect("sig").to_string();
    let flipped = format!("{}{}", if sig.starts_with('0') { "1" } else { "0" }, &sig[1..]);
    v["signature"] = serde_json::json!(flipped);
    std::fs::write(&world_path, serde_json::to_vec(&v).expect("compact")).expect("write");
    let err = hsmkit_emulator::Emulator::open(config(f.dir.path(), Some(42))).expect_err("a bad signature");
    assert!(err.to_string().contains("signature"), "{err}");
}
