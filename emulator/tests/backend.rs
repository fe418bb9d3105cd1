//! The emulator through the seam: sessions, handles, attributes, find, destroy, random, and the
//! `signature` traits on a module-held key.

mod common;

use common::*;
use hsmkit_backend::{
    Attr, AttrKind, AttrValue, Backend, ErrorKind, KeyFilter, KeyPairSpec, KeyPolicy, KeySpec, Mechanism, ObjectClass,
    RsaSigner, SessionMode, SlotId, Usage, UserKind,
};
use hsmkit_emulator::SLOT;
use rsa::signature::{Keypair, Signer, Verifier};

const RSA_1024: KeyPairSpec = KeyPairSpec::Rsa { bits: 1024, public_exponent: 65537 };

#[test]
fn a_module_key_is_a_signature_signer_whose_signatures_verify_in_software() {
    let f = legacy_2_of_3();
    let s = f.emu.open_session(SLOT, SessionMode::ReadWrite).expect("session");
    let (_, private) = s.generate_key_pair(&RSA_1024, &KeyPolicy::new(Usage::SIGN | Usage::VERIFY)).expect("pair");
    let signer = RsaSigner::<sha2::Sha256>::new(s.as_ref(), private).expect("signer");
    let sig = signer.try_sign(b"treat me like a software key").expect("sign");
    signer.verifying_key().verify(b"treat me like a software key", &sig).expect("verifies in RustCrypto");
    assert!(signer.verifying_key().verify(b"another message", &sig).is_err());
}

#[test]
fn session_keys_die_with_their_session_and_token_keys_persist() {
    let f = legacy_2_of_3();
    let mut session_policy = KeyPolicy::new(Usage::SIGN).with_label("ephemeral");
    session_policy.token = false;
    let token_policy = KeyPolicy::new(Usage::SIGN).with_label("kept");
    let (ephemeral, kept) = {
        let s = f.emu.open_session(SLOT, SessionMode::ReadWrite).expect("session");
        let (_, e) = s.generate_key_pair(&RSA_1024, &session_policy).expect("session key");
        let (_, k) = s.generate_key_pair(&RSA_1024, &token_policy).expect("token key");
        // Another session cannot use this session's key.
        let other = f.emu.open_session(SLOT, SessionMode::ReadOnly).expect("second session");
        let err = other.sign(&sha256(), e, b"m").expect_err("foreign session key");
        assert_eq!(err.kind(), &ErrorKind::KeyHandleInvalid);
        other.sign(&sha256(), k, b"m").expect("token keys are shared");
        (e, k)
    };
    let s = f.emu.open_session(SLOT, SessionMode::ReadOnly).expect("new session");
    assert_eq!(s.sign(&sha256(), ephemeral, b"m").expect_err("closed").kind(), &ErrorKind::KeyHandleInvalid);
    s.sign(&sha256(), kept, b"m").expect("token key still there");
    let found = s.find_keys(&KeyFilter { label: Some("kept".into()), ..KeyFilter::default() }).expect("find");
    assert_eq!(found.len(), 2, "private and public halves");
    assert!(
        s.find_keys(&KeyFilter { label: Some("ephemeral".into()), ..KeyFilter::default() }).expect("find").is_empty()
    );
}

fn sha256() -> Mechanism {
    Mechanism::RsaPkcs1v15 { hash: hsmkit_backend::HashAlg::Sha256 }
}

#[test]
fn a_fresh_emulator_finds_token_keys_on_disk() {
    let f = legacy_2_of_3();
    {
        let s = f.emu.open_session(SLOT, SessionMode::ReadWrite).expect("session");
        s.generate_key(&KeySpec::Aes { bits: 256 }, &KeyPolicy::new(Usage::WRAP).with_label("kek")).expect("aes");
    }
    let again = hsmkit_emulator::Emulator::open(config(f.dir.path(), Some(9))).expect("reopen");
    let s = again.open_session(SLOT, SessionMode::ReadOnly).expect("session");
    let found = s
        .find_keys(&KeyFilter {
            label: Some("kek".into()),
            class: Some(ObjectClass::SecretKey),
            ..KeyFilter::default()
        })
        .expect("find");
    assert_eq!(found.len(), 1);
    let attrs = s.attributes(found[0], &[AttrKind::Bits, AttrKind::Value, AttrKind::Modulus]).expect("attrs");
    assert_eq!(attrs[0], Attr::Value(AttrKind::Bits, AttrValue::Number(256)));
    assert_eq!(attrs[1], Attr::Sensitive(AttrKind::Value), "a sensitive key's value is reported, not returned");
    assert_eq!(attrs[2], Attr::Invalid(AttrKind::Modulus));
}

#[test]
fn policies_read_back_as_set_and_read_only_sessions_cannot_write() {
    let f = legacy_2_of_3();
    let ro = f.emu.open_session(SLOT, SessionMode::ReadOnly).expect("ro");
    let err = ro.generate_key(&KeySpec::Aes { bits: 128 }, &KeyPolicy::new(Usage::WRAP)).expect_err("ro token key");
    assert_eq!(err.kind(), &ErrorKind::ActionProhibited);
    let rw = f.emu.open_session(SLOT, SessionMode::ReadWrite).expect("rw");
    let policy = KeyPolicy { wrap_with_trusted: true, ..KeyPolicy::new(Usage::WRAP | Usage::UNWRAP).extractable(true) };
    let key = rw.generate_key(&KeySpec::Aes { bits: 192 }, &policy).expect("aes");
    let read = match rw.attributes(key, &[AttrKind::Policy]).expect("attrs").pop() {
        Some(Attr::Value(_, AttrValue::Policy(p))) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(read.usage, Usage::WRAP | Usage::UNWRAP);
    assert!(read.extractable && read.sensitive && read.wrap_with_trusted && read.token);
    rw.destroy(key).expect("destroy");
    assert_eq!(rw.attributes(key, &[AttrKind::Bits]).expect_err("destroyed").kind(), &ErrorKind::KeyHandleInvalid);
    assert!(f.emu.list_keys().expect("list").is_empty(), "the blob is gone");
}

#[test]
fn bad_sizes_slots_and_logins_are_refused() {
    let f = legacy_2_of_3();
    assert_eq!(
        f.emu.open_session(SlotId(7), SessionMode::ReadOnly).expect_err("slot").kind(),
        &ErrorKind::SlotIdInvalid
    );
    let s = f.emu.open_session(SLOT, SessionMode::ReadWrite).expect("session");
    for bits in [64, 100, 512] {
        let err = s.generate_key(&KeySpec::Aes { bits }, &KeyPolicy::new(Usage::WRAP)).expect_err("aes size");
        assert_eq!(err.kind(), &ErrorKind::KeySizeRange);
    }
    let err =
        s.generate_key_pair(&KeyPairSpec::Rsa { bits: 768, public_exponent: 65537 }, &KeyPolicy::new(Usage::SIGN));
    assert_eq!(err.expect_err("rsa size").kind(), &ErrorKind::KeySizeRange);
    // The security officer is the 2-of-3 quorum: one PIN is not enough, a wrong card PIN is
    // refused, cards 1 and 2 with their PINs are the officer.
    let pin = |p: &str| hsmkit_backend::Pin::from(p.to_string());
    let so = s.login(UserKind::SecurityOfficer, &pin("pin-1")).expect_err("one card");
    assert_eq!(so.kind(), &ErrorKind::PinIncorrect);
    assert!(so.to_string().contains("2 Administrator cards"), "{so}");
    let so = s.login(UserKind::SecurityOfficer, &pin("pin-1,wrong")).expect_err("wrong card PIN");
    assert_eq!(so.kind(), &ErrorKind::PinIncorrect, "{so}");
    let trusted = || {
        let mut p = KeyPolicy::new(Usage::WRAP).with_label("trusted");
        p.trusted = true;
        p.token = false;
        s.generate_key(&KeySpec::Aes { bits: 256 }, &p)
    };
    assert_eq!(trusted().expect_err("not the officer").kind(), &ErrorKind::ActionProhibited);
    s.login(UserKind::SecurityOfficer, &pin("pin-1,pin-2")).expect("the quorum");
    trusted().expect("the officer makes a trusted key");
    s.logout().expect("logout");
    assert_eq!(trusted().expect_err("cards withdrawn").kind(), &ErrorKind::ActionProhibited);
}

#[test]
fn random_bytes_come_from_the_module_and_repeat_only_when_seeded() {
    let a = legacy_2_of_3();
    let b = legacy_2_of_3();
    let read = |f: &Fixture| {
        let s = f.emu.open_session(SLOT, SessionMode::ReadOnly).expect("session");
        let mut out = [0u8; 32];
        s.random(&mut out).expect("random");
        out
    };
    let (x, y) = (read(&a), read(&b));
    assert_eq!(x, y, "same seed, same bytes");
    assert_ne!(x, [0u8; 32]);
    assert_ne!(read(&a), x, "the stream moves on");
}

#[test]
fn the_mechanism_list_covers_the_seams_mechanisms() {
    let f = legacy_2_of_3();
    let caps = f.emu.capabilities().expect("caps");
    for kind in [
        hsmkit_backend::MechanismKind::Sha256RsaPkcs,
        hsmkit_backend::MechanismKind::Sha512RsaPkcsPss,
        hsmkit_backend::MechanismKind::RsaPkcsOaep,
        hsmkit_backend::MechanismKind::AesKeyWrap,
        hsmkit_backend::MechanismKind::AesKeyWrapKwp,
        hsmkit_backend::MechanismKind::RsaAesKeyWrap,
    ] {
        assert!(caps.mechanism(kind).is_some(), "{kind:?}");
    }
    let info = f.emu.info().expect("info");
    assert_eq!(info.serial.len(), 14, "ESN XXXX-XXXX-XXXX: {}", info.serial);
    let s = f.emu.open_session(SLOT, SessionMode::ReadOnly).expect("session");
    let summary = s.world_authority().expect("an nShield world").world().expect("summary");
    assert_eq!(summary.quorum, (2, 3));
    assert_eq!(summary.hknso, f.emu.require_world(hsmkit_backend::Op::Info).expect("world").hknso());
}

#[test]
fn a_user_pin_makes_private_keys_need_the_login_and_logout_ends_their_use() {
    let f = legacy_2_of_3();
    let pin = |p: &str| hsmkit_backend::Pin::from(p.to_string());
    let sign = Mechanism::RsaPkcs1v15 { hash: hsmkit_backend::HashAlg::Sha256 };
    let s = f.emu.open_session(SLOT, SessionMode::ReadWrite).expect("session");
    // No user PIN yet: the world is module protection alone, and a user login is refused as such.
    let e = s.login(UserKind::User, &pin("1234")).expect_err("no user PIN");
    assert_eq!(e.kind(), &ErrorKind::UserPinNotInitialized, "{e}");
    let mut p = KeyPolicy::new(Usage::SIGN | Usage::VERIFY).with_label("needs-the-user");
    p.token = true;
    let (_, private) = s.generate_key_pair(&RSA_1024, &p).expect("pair without a login");
    s.sign(&sign, private, b"m").expect("module protection needs no login");
    // Only the security officer (the quorum) sets the user PIN.
    assert_eq!(s.init_pin(&pin("user-pin")).expect_err("not the officer").kind(), &ErrorKind::NotLoggedIn);
    s.login(UserKind::SecurityOfficer, &pin("pin-1,pin-2")).expect("the quorum");
    assert_eq!(
        s.login(UserKind::User, &pin("x")).expect_err("officer in").kind(),
        &ErrorKind::UserAnotherAlreadyLoggedIn
    );
    assert_eq!(s.init_pin(&pin("12")).expect_err("too short").kind(), &ErrorKind::PinLenRange);
    s.init_pin(&pin("user-pin")).expect("init PIN");
    s.logout().expect("logout");
    // A key made as a public object (CKA_PRIVATE false) needs no login even now.
    s.login(UserKind::User, &pin("user-pin")).expect("user");
    let mut public_object = KeyPolicy::new(Usage::SIGN | Usage::VERIFY).with_label("public-object");
    public_object.public_object = true;
    public_object.token = false;
    let (_, open_key) = s.generate_key_pair(&RSA_1024, &public_object).expect("public-object pair");
    s.logout().expect("logout");
    s.sign(&sign, open_key, b"m").expect("a public object signs without a login");
    // Now private keys are invisible and unusable until the user logs in.
    let e = s.sign(&sign, private, b"m").expect_err("no login");
    assert_eq!(e.kind(), &ErrorKind::NotLoggedIn, "{e}");
    let privates = KeyFilter { class: Some(ObjectClass::PrivateKey), ..KeyFilter::default() };
    assert_eq!(s.find_keys(&privates).expect("find"), vec![open_key], "only the public object is visible");
    assert!(
        !s.find_keys(&KeyFilter { class: Some(ObjectClass::PublicKey), ..KeyFilter::default() })
            .expect("find")
            .is_empty()
    );
    let e = s.login(UserKind::User, &pin("wrong-pin")).expect_err("wrong PIN");
    assert_eq!(e.kind(), &ErrorKind::PinIncorrect, "{e}");
    assert!(e.to_string().contains("9 tries left"), "{e}");
    s.login(UserKind::User, &pin("user-pin")).expect("user");
    // The login belongs to the application: a second session shares it.
    let other = f.emu.open_session(SLOT, SessionMode::ReadOnly).expect("second session");
    assert_eq!(
        other.find_keys(&privates).expect("find").len(),
        1,
        "the token key (the public object is a session key of the first session)"
    );
    s.sign(&sign, private, b"m").expect("logged in");
    other.logout().expect("logout from the other session");
    assert_eq!(s.sign(&sign, private, b"m").expect_err("logged out").kind(), &ErrorKind::NotLoggedIn);
    assert_eq!(s.logout().expect_err("nobody is logged in").kind(), &ErrorKind::NotLoggedIn);
    // The login ends when the application's last session closes.
    s.login(UserKind::User, &pin("user-pin")).expect("user again");
    drop(other);
    drop(s);
    let s = f.emu.open_session(SLOT, SessionMode::ReadWrite).expect("new session");
    assert!(s.find_keys(&privates).expect("find").iter().all(|k| *k != private), "the login outlived its sessions");
    // The user changes the PIN; the old one stops working. The counter was reset by the right PIN.
    s.set_pin(&pin("user-pin"), &pin("new-user-pin")).expect("set PIN");
    assert_eq!(s.login(UserKind::User, &pin("user-pin")).expect_err("old").kind(), &ErrorKind::PinIncorrect);
    s.login(UserKind::User, &pin("new-user-pin")).expect("new PIN");
    // Ten wrong PINs in a row lock it, across emulator instances (processes) on the same kmdata.
    s.logout().expect("logout");
    let again = hsmkit_emulator::Emulator::open(f.emu.config().clone()).expect("second instance");
    let s2 = again.open_session(SLOT, SessionMode::ReadOnly).expect("session");
    for _ in 0..hsmkit_emulator::token::MAX_USER_FAILURES {
        let _ = s2.login(UserKind::User, &pin("guess"));
    }
    assert_eq!(s.login(UserKind::User, &pin("new-user-pin")).expect_err("locked").kind(), &ErrorKind::PinLocked);
}
