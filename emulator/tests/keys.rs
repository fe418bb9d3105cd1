//! Module-protected keys: generation, blobs, the ACL on every operation, and bad input.

mod common;

use common::*;
use hsmkit_backend::{
    Attr, AttrKind, AttrValue, Backend, ErrorKind, HashAlg, KeyPolicy, KeyType, Mechanism, SessionMode, Usage,
};
use hsmkit_emulator::acl::{Acl, Action, ExportUnder, OpPerms};
use hsmkit_emulator::fsio::{FaultHook, WriteStage};
use hsmkit_emulator::{Emulator, SLOT};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;

fn public_key(spki: &[u8]) -> rsa::PublicKey {
    rsa::PublicKey::from_public_key_der(spki).expect("spki")
}

#[test]
fn generatekey_writes_a_blob_whose_signatures_verify_independently() {
    let f = legacy_2_of_3();
    let header = f.emu.generate_rsa("simple", "contosokey", "contosokey", 2048, 65537).expect("generate");
    assert!(f.kmdata().join("local/key_simple_contosokey").exists());
    assert_eq!((header.bits, header.pubexp), (2048, 65537));
    let handles = f.emu.load_key("simple", "contosokey").expect("load");
    let s = f.emu.open_session(SLOT, SessionMode::ReadOnly).expect("session");
    for hash in [HashAlg::Sha1, HashAlg::Sha224, HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512] {
        let sig = s.sign(&Mechanism::RsaPkcs1v15 { hash }, handles[0], b"tenant key").expect("sign");
        let public = public_key(&header.public);
        let ok = match hash {
            HashAlg::Sha1 => rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(public)
                .verify(b"tenant key", &rsa::pkcs1v15::Signature::try_from(&sig[..]).expect("sig")),
            HashAlg::Sha224 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha224>::new(public)
                .verify(b"tenant key", &rsa::pkcs1v15::Signature::try_from(&sig[..]).expect("sig")),
            HashAlg::Sha256 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public)
                .verify(b"tenant key", &rsa::pkcs1v15::Signature::try_from(&sig[..]).expect("sig")),
            HashAlg::Sha384 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(public)
                .verify(b"tenant key", &rsa::pkcs1v15::Signature::try_from(&sig[..]).expect("sig")),
            HashAlg::Sha512 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(public)
                .verify(b"tenant key", &rsa::pkcs1v15::Signature::try_from(&sig[..]).expect("sig")),
        };
        assert!(ok.is_ok(), "{hash:?}");
        // PSS too, verified by RustCrypto.
        let sig = s.sign(&Mechanism::RsaPss { hash: HashAlg::Sha256 }, handles[0], b"pss").expect("pss");
        rsa::pss::VerifyingKey::<sha2::Sha256>::new(public_key(&header.public))
            .verify(b"pss", &rsa::pss::Signature::try_from(&sig[..]).expect("sig"))
            .expect("pss verifies");
        // And the module's own verify agrees, and refuses a flipped bit.
        s.verify(&Mechanism::RsaPss { hash: HashAlg::Sha256 }, handles[1], b"pss", &sig).expect("verify");
        let mut bad = sig.clone();
        bad[10] ^= 1;
        let e = s.verify(&Mechanism::RsaPss { hash: HashAlg::Sha256 }, handles[1], b"pss", &bad).expect_err("flipped");
        assert_eq!(e.kind(), &ErrorKind::SignatureInvalid);
    }
}

#[test]
fn rsa_1024_and_a_chosen_exponent_work() {
    let f = legacy_2_of_3();
    let h = f.emu.generate_rsa("simple", "legacy", "legacy", 1024, 3).expect("1024/e=3");
    assert_eq!((h.bits, h.pubexp), (1024, 3));
    let handles = f.emu.load_key("simple", "legacy").expect("load");
    let s = f.emu.open_session(SLOT, SessionMode::ReadOnly).expect("session");
    let sig = s.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, handles[0], b"m").expect("sign");
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public_key(&h.public))
        .verify(b"m", &rsa::pkcs1v15::Signature::try_from(&sig[..]).expect("sig"))
        .expect("verifies");
}

#[test]
fn bad_generatekey_input_changes_nothing() {
    let f = legacy_2_of_3();
    let before = f.snapshot();
    for (bits, e, kind) in [
        (512, 65537, ErrorKind::KeySizeRange),
        (8192, 65537, ErrorKind::KeySizeRange),
        (2047, 65537, ErrorKind::KeySizeRange),
        (2048, 65536, ErrorKind::ArgumentsBad),
        (2048, 1, ErrorKind::ArgumentsBad),
    ] {
        let err = f.emu.generate_rsa("simple", "k", "k", bits, e).expect_err("bad size");
        assert_eq!(err.kind(), &kind, "{bits}/{e}");
    }
    for ident in ["ContosoKey", "contoso key", "contoso_key", "../x", ""] {
        let err = f.emu.generate_rsa("simple", ident, "x", 2048, 65537).expect_err(ident);
        assert_eq!(err.kind(), &ErrorKind::ArgumentsBad);
        assert!(err.hint_text().unwrap_or("").contains("lowercase"), "{err:?}");
    }
    assert_eq!(f.snapshot(), before);
    f.emu.generate_rsa("simple", "once", "once", 1024, 65537).expect("first");
    let after_first = f.snapshot();
    let err = f.emu.generate_rsa("simple", "once", "once", 1024, 65537).expect_err("second");
    assert_eq!(err.kind(), &ErrorKind::AlreadyExists);
    assert_eq!(f.snapshot(), after_first, "the existing key is not overwritten");
}

fn flip_hex_in(text: &str, field: &str) -> String {
    let at = text.find(field).expect(field) + field.len() + 4;
    let mut b = text.as_bytes().to_vec();
    b[at] = if b[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).expect("utf8")
}

#[test]
fn damaged_or_edited_key_blobs_are_refused() {
    let f = legacy_2_of_3();
    f.emu.generate_rsa("simple", "contosokey", "contosokey", 1024, 65537).expect("generate");
    let path = f.kmdata().join("local/key_simple_contosokey");
    let good = std::fs::read_to_string(&path).expect("blob");
    let cases = vec![
        ("truncated", good[..good.len() / 3].to_string()),
        ("bit flip in the sealed key", flip_hex_in(&good, "\"ct\"")),
        ("bit flip in the public key", flip_hex_in(&good, "\"public\"")),
        ("ACL widened by hand", good.replacen("GetAppData", "GetAppData | ExportAsPlain", 1)),
        ("use limit removed", good.replacen("\"limits\": [],", "\"limits\": [{\"Global\": {\"max\": 1}}],", 1)),
        ("renamed", good.replacen("\"name\": \"contosokey\"", "\"name\": \"other\"", 1)),
        ("other version", good.replacen("\"version\": 2", "\"version\": 9", 1)),
        ("older version", good.replacen("\"version\": 2", "\"version\": 1", 1)),
        ("bit flip in the recovery blob", flip_hex_in(&good, "\"eph\"")),
        ("recovery blob removed", {
            let mut v: serde_json::Value = serde_json::from_str(&good).expect("json");
            v.as_object_mut().expect("object").remove("archive");
            serde_json::to_string_pretty(&v).expect("json")
        }),
        ("an unknown field", good.replacen("{", "{\"extra\": 1,", 1)),
    ];
    for (what, text) in cases {
        assert_ne!(text, good, "{what}: the edit must change the file");
        std::fs::write(&path, &text).expect("write");
        let err = f.emu.load_key("simple", "contosokey").expect_err(what);
        assert_eq!(err.kind(), &ErrorKind::Corrupt, "{what}: {err:?}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text, "{what}: left as it was");
    }
    // A blob copied under another key's name is not that key.
    std::fs::write(&path, &good).expect("restore");
    f.emu.generate_rsa("simple", "otherkey", "otherkey", 1024, 65537).expect("generate");
    std::fs::copy(&path, f.kmdata().join("local/key_simple_otherkey")).expect("copy over");
    let err = f.emu.load_key("simple", "otherkey").expect_err("renamed copy");
    assert_eq!(err.kind(), &ErrorKind::Corrupt, "{err:?}");
    assert!(err.to_string().contains("holds key key_simple_contosokey"), "{err}");
    f.emu.load_key("simple", "contosokey").expect("the original still loads");
    std::fs::write(&path, &good).expect("restore");
    f.emu.load_key("simple", "contosokey").expect("the original loads again");
}

#[test]
fn a_key_of_another_world_is_refused() {
    let a = legacy_2_of_3();
    let b = world(hsmkit_emulator::suite::CipherSuite::DLf1024s160mRijndael, 1, 1, 99);
    b.emu.generate_rsa("simple", "foreign", "foreign", 1024, 65537).expect("generate in b");
    std::fs::copy(b.kmdata().join("local/key_simple_foreign"), a.kmdata().join("local/key_simple_foreign"))
        .expect("copy");
    let err = a.emu.load_key("simple", "foreign").expect_err("foreign key");
    assert_eq!(err.kind(), &ErrorKind::TokenNotRecognized);
}

#[test]
fn the_acl_is_enforced_on_every_operation_and_names_the_permission() {
    let f = legacy_2_of_3();
    let s = f.emu.open_session(SLOT, SessionMode::ReadWrite).expect("session");
    let policy = KeyPolicy::new(Usage::SIGN | Usage::VERIFY | Usage::DECRYPT | Usage::ENCRYPT);
    let (public, private) = s
        .generate_key_pair(&hsmkit_backend::KeyPairSpec::Rsa { bits: 1024, public_exponent: 65537 }, &policy)
        .expect("pair");
    let narrow = KeyPolicy::new(Usage::SIGN);
    let signer = s.copy_narrowed(private, &narrow).expect("narrowed copy");
    s.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, signer, b"x").expect("the copy signs");
    let ct = s.encrypt(&Mechanism::RsaOaep { hash: HashAlg::Sha1 }, public, b"secret").expect("encrypt");
    assert_eq!(
        s.decrypt(&Mechanism::RsaOaep { hash: HashAlg::Sha1 }, private, &ct).expect("original decrypts"),
        b"secret"
    );
    let err = s.decrypt(&Mechanism::RsaOaep { hash: HashAlg::Sha1 }, signer, &ct).expect_err("copy cannot decrypt");
    assert_eq!(err.kind(), &ErrorKind::KeyFunctionNotPermitted { missing: "Decrypt" });
    // Widening is refused by name.
    let err = s.copy_narrowed(signer, &KeyPolicy::new(Usage::SIGN | Usage::DECRYPT)).expect_err("widen");
    assert_eq!(err.kind(), &ErrorKind::ActionProhibited);
    assert!(err.to_string().contains("CKA_DECRYPT"), "{err}");
    // A non-extractable key cannot be wrapped.
    let kek = s
        .generate_key(&hsmkit_backend::KeySpec::Aes { bits: 256 }, &KeyPolicy::new(Usage::WRAP | Usage::UNWRAP))
        .expect("kek");
    let err = s.wrap_key(&Mechanism::AesKeyWrapPad, kek, private).expect_err("unextractable");
    assert_eq!(err.kind(), &ErrorKind::KeyUnextractable);
    // A key without WrapKey cannot wrap.
    let plain_aes = s
        .generate_key(&hsmkit_backend::KeySpec::Aes { bits: 128 }, &KeyPolicy::new(Usage::empty()).extractable(true))
        .expect("aes");
    let err = s.wrap_key(&Mechanism::AesKeyWrap, plain_aes, kek).expect_err("no wrap right");
    assert_eq!(err.kind(), &ErrorKind::KeyFunctionNotPermitted { missing: "DeriveKey(WrapKey)" });
}

#[test]
fn wrapped_keys_unwrap_with_independent_implementations() {
    use rsa::pkcs8::DecodePrivateKey;
    let f = legacy_2_of_3();
    let s = f.emu.open_session(SLOT, SessionMode::ReadWrite).expect("session");
    let mut target_policy = KeyPolicy::new(Usage::SIGN | Usage::VERIFY).extractable(true);
    target_policy.token = false;
    let (target_pub, target) = s
        .generate_key_pair(&hsmkit_backend::KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 }, &target_policy)
        .expect("target");
    // An AES KEK imported from known bytes, so the test can unwrap on its own.
    let kek_bytes = [0x42u8; 32];
    let kek = s
        .import_key(
            &hsmkit_backend::KeyMaterial::Aes(zeroize::Zeroizing::new(kek_bytes.to_vec())),
            &KeyPolicy::new(Usage::WRAP | Usage::UNWRAP),
        )
        .expect("kek");
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, kek, target).expect("KWP wrap");
    let mut buf = vec![0u8; wrapped.len()];
    let pkcs8 = <aes_kw::KwpAes256 as aes_kw::KeyInit>::new_from_slice(&kek_bytes)
        .expect("kek")
        .unwrap_key(&wrapped, &mut buf)
        .expect("aes-kw unwraps");
    let recovered = rsa::PrivateKey::from_pkcs8_der(pkcs8).expect("PKCS#8");
    let spki = match s.attributes(target_pub, &[AttrKind::PublicKeyInfo]).expect("attrs").pop() {
        Some(Attr::Value(_, AttrValue::Bytes(b))) => b,
        other => panic!("{other:?}"),
    };
    assert_eq!(recovered.to_public_key(), public_key(&spki));

    // RSA-AES key wrap to a KEK whose private half the test holds.
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let provider_kek = rsa::PrivateKey::new(&mut rng, 2048).expect("kek");
    use rsa::pkcs8::EncodePublicKey;
    let kek_spki = provider_kek.to_public_key().to_public_key_der().expect("der").as_bytes().to_vec();
    let kek_pub = s
        .import_key(
            &hsmkit_backend::KeyMaterial::RsaPublicSpki(kek_spki),
            &KeyPolicy::new(Usage::WRAP | Usage::ENCRYPT),
        )
        .expect("import kek");
    let blob = s
        .wrap_key(&Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha1 }, kek_pub, target)
        .expect("RSA-AES wrap");
    let (head, tail) = blob.split_at(256);
    let eph = provider_kek.decrypt(rsa::Oaep::<sha1::Sha1>::new(), head).expect("OAEP");
    assert_eq!(eph.len(), 32);
    let mut buf = vec![0u8; tail.len()];
    let eph: [u8; 32] = eph.try_into().expect("32 bytes");
    let pkcs8 = <aes_kw::KwpAes256 as aes_kw::KeyInit>::new_from_slice(&eph)
        .expect("eph")
        .unwrap_key(tail, &mut buf)
        .expect("KWP");
    assert_eq!(rsa::PrivateKey::from_pkcs8_der(pkcs8).expect("pkcs8").to_public_key(), public_key(&spki));

    // The module unwraps its own KWP output into a working key.
    let back = s
        .unwrap_key(&Mechanism::AesKeyWrapPad, kek, &wrapped, KeyType::Rsa, &KeyPolicy::new(Usage::SIGN))
        .expect("unwrap");
    s.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, back, b"m").expect("sign");
    let mut flipped = wrapped.clone();
    flipped[3] ^= 0x80;
    let err = s
        .unwrap_key(&Mechanism::AesKeyWrapPad, kek, &flipped, KeyType::Rsa, &KeyPolicy::new(Usage::SIGN))
        .expect_err("flipped");
    assert_eq!(err.kind(), &ErrorKind::WrappedKeyInvalid);
}

use rand_core::SeedableRng;

#[test]
fn changing_an_acl_needs_the_quorum_unless_it_only_removes_rights() {
    let f = legacy_2_of_3();
    let header = f.emu.generate_rsa("simple", "contosokey", "contosokey", 1024, 65537).expect("generate");
    let mut reduced = header.acl.clone();
    reduced.groups.truncate(1);
    reduced.groups[0].actions.retain(|a| !matches!(a, Action::MakeArchiveBlob { .. }));
    f.emu.copy_with_acl(("simple", "contosokey"), ("simple", "reduced"), reduced.clone(), None).expect("reduction");

    // Binding to another world (and exporting under a named KEK) adds rights: quorum needed.
    let mut bound = reduced.clone();
    bound.groups[0].actions.retain(|a| !matches!(a, Action::MakeBlob { .. }));
    bound.groups[0].actions.push(Action::MakeBlob { kmhash: Some(vec![7; 20]) });
    bound.groups[0].actions.push(Action::Export { under: ExportUnder::Key(vec![9; 20]) });
    let before = f.snapshot();
    let err = f
        .emu
        .copy_with_acl(("simple", "contosokey"), ("xferacld", "contosokey"), bound.clone(), None)
        .expect_err("no quorum");
    assert_eq!(err.kind(), &ErrorKind::KeyFunctionNotPermitted { missing: "ExpandACL" });
    assert_eq!(f.snapshot(), before, "nothing written");
    let quorum = f.emu.authorize(&[f.good_card(0), f.good_card(2)]).expect("quorum");
    let (path, h) = f
        .emu
        .copy_with_acl(("simple", "contosokey"), ("xferacld", "contosokey"), bound.clone(), Some(&quorum))
        .expect("with quorum");
    assert!(path.ends_with("key_xferacld_contosokey"));
    assert_eq!(h.acl, bound);
    // The quorum's certificate travels with the copy and names this world.
    let cert = h.acl_certificate.as_ref().expect("certificate");
    let w = f.emu.world().expect("w").expect("world");
    assert_eq!(cert.verify(&h.hash, &h.acl).as_deref(), Some(w.hknso()));
    assert_eq!(cert.verify(&h.hash, &reduced), None, "it certifies that ACL only");
    assert_eq!(cert.verify(b"another key", &h.acl), None, "and that key only");
    assert_eq!(h.public, header.public, "the same key");
    // The original is untouched.
    let orig = hsmkit_emulator::keyblob::KeyFile::read(&f.kmdata().join("local/key_simple_contosokey")).expect("orig");
    assert_eq!(orig.header, header);
    // A reduced key cannot give itself back what it lost, even with ReduceACL.
    let err = f
        .emu
        .copy_with_acl(
            ("simple", "reduced"),
            ("simple", "regrown"),
            Acl { groups: vec![header.acl.groups[0].clone()] },
            None,
        )
        .expect_err("regrow");
    assert!(matches!(err.kind(), ErrorKind::KeyFunctionNotPermitted { .. }), "{err:?}");
    let _ = OpPerms::Sign;
}

#[test]
fn a_crash_while_saving_a_key_leaves_no_torn_blob() {
    for stage in [WriteStage::PartialWrite, WriteStage::BeforeRename, WriteStage::AfterRename] {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = config(dir.path(), Some(3));
        let emu = Emulator::open(config.clone()).expect("open");
        let created = emu
            .create_world(
                hsmkit_emulator::suite::CipherSuite::DLf1024s160mRijndael,
                hsmkit_emulator::world::Quorum { k: 1, n: 1 },
                &pins(1),
            )
            .expect("world");
        drop((emu, created));
        config.faults = FaultHook::new(move |p, s| s == stage && p.to_string_lossy().contains("key_simple"));
        let emu = Emulator::open(config.clone()).expect("reopen");
        let err = emu.generate_rsa("simple", "k", "k", 1024, 65537).expect_err("crash");
        assert!(err.to_string().contains("simulated crash"), "{err}");
        config.faults = FaultHook::default();
        let emu = Emulator::open(config).expect("after the crash");
        match stage {
            WriteStage::AfterRename => {
                emu.load_key("simple", "k").expect("the new key is whole");
            }
            _ => {
                let err = emu.load_key("simple", "k").expect_err("no key");
                assert_eq!(err.kind(), &ErrorKind::NotFound, "{stage:?}");
                assert!(emu.list_keys().expect("list").is_empty(), "temporary files are not keys");
            }
        }
    }
}

#[test]
fn cngimport_makes_a_machine_key_and_a_user_key() {
    let f = legacy_2_of_3();
    f.emu.generate_rsa("simple", "contosokey", "contosokey", 1024, 65537).expect("generate");
    let (path, h) = f.emu.cng_import("simple", "contosokey", "contosokey", true, "alice").expect("cng -M");
    let name = path.file_name().expect("name").to_string_lossy().into_owned();
    let hash = name.strip_prefix("key_caping_machine--").expect(&name);
    assert_eq!(hash.len(), 40);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(h.cng.as_ref().map(|c| c.machine), Some(true));
    let handles = f.emu.load_key("caping", h.ident.as_str()).expect("load cng key");
    assert_eq!(handles.len(), 2);
    let (user_path, _) = f.emu.cng_import("simple", "contosokey", "contosokey", false, "alice").expect("cng user");
    assert!(user_path.to_string_lossy().contains("key_caping_user-alice--"), "{}", user_path.display());
    let err = f.emu.cng_import("simple", "missing", "x", true, "alice").expect_err("missing");
    assert_eq!(err.kind(), &ErrorKind::NotFound);
}

#[test]
fn kmdata_that_does_not_exist_or_cannot_be_written_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let err = Emulator::open(hsmkit_emulator::Config::beside(dir.path().join("missing"))).expect_err("missing kmdata");
    assert_eq!(err.kind(), &ErrorKind::NotFound);
    assert!(err.to_string().contains("does not exist"), "{err}");
    // /proc refuses new folders even to root: a kmdata that cannot be written.
    let mut c = hsmkit_emulator::Config::beside("/proc/self/fdinfo");
    c.nvram = dir.path().join("nvram");
    c.cards = dir.path().join("cards");
    let emu = Emulator::open(c).expect("open read-only kmdata");
    let err = emu
        .create_world(
            hsmkit_emulator::suite::CipherSuite::DLf1024s160mRijndael,
            hsmkit_emulator::world::Quorum { k: 1, n: 1 },
            &pins(1),
        )
        .expect_err("read-only");
    assert_eq!(err.kind(), &ErrorKind::Io);
    assert!(err.hint_text().unwrap_or("").contains("writable"), "{err:?}");
    assert!(!dir.path().join("cards").exists(), "no card was written");
}

#[test]
fn a_global_use_limit_holds_under_concurrent_signing() {
    let f = legacy_2_of_3();
    let w = f.emu.world().expect("w").expect("world");
    let mut acl = Acl::generatekey_default(true, w.hkm(), w.hkre(), w.hknso());
    acl.groups[0].limits.push(hsmkit_emulator::acl::UseLimit::Global { max: 3 });
    f.emu.generate_rsa_with_acl("simple", "limited", "limited", 1024, 65537, Some(acl)).expect("generate");
    let handles = f.emu.load_key("simple", "limited").expect("load");
    let ok = std::sync::atomic::AtomicUsize::new(0);
    let limited = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let s = f.emu.open_session(SLOT, SessionMode::ReadOnly).expect("session");
                for _ in 0..2 {
                    match s.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, handles[0], b"m") {
                        Ok(_) => ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        Err(e) => {
                            assert_eq!(e.kind(), &ErrorKind::UseLimitExceeded);
                            limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        }
                    };
                }
            });
        }
    });
    assert_eq!(ok.into_inner(), 3, "exactly the limit");
    assert_eq!(limited.into_inner(), 13);
}

#[test]
fn a_key_with_a_use_limit_is_never_changed_in_place() {
    // Changing a key in place loads it afresh: for a limited key that would restart its count, so
    // even a new label is refused; the key keeps its name and its limit.
    let f = legacy_2_of_3();
    let w = f.emu.world().expect("w").expect("world");
    let mut acl = Acl::generatekey_default(true, w.hkm(), w.hkre(), w.hknso());
    acl.groups[0].limits.push(hsmkit_emulator::acl::UseLimit::Global { max: 2 });
    f.emu.generate_rsa_with_acl("simple", "limited", "limited", 1024, 65537, Some(acl)).expect("generate");
    let emu = std::sync::Arc::new(hsmkit_emulator::Emulator::open(f.emu.config().clone()).expect("reopen"));
    let s = hsmkit_emulator::EmulatorSession::shared(emu, SessionMode::ReadWrite, 1).expect("session");
    use hsmkit_backend::Session as _;
    let found =
        s.find_keys(&hsmkit_backend::KeyFilter { label: Some("limited".into()), ..Default::default() }).expect("find");
    let private = found[0];
    let mech = Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 };
    s.sign(&mech, private, b"one").expect("first use");
    let policy = hsmkit_backend::KeyPolicy { label: Some("renamed".into()), ..Default::default() };
    let err = s.modify(private, &policy).expect_err("a limited key is not changed in place");
    assert_eq!(err.kind(), &ErrorKind::ActionProhibited);
    s.sign(&mech, private, b"two").expect("second use");
    assert_eq!(s.sign(&mech, private, b"three").expect_err("limit").kind(), &ErrorKind::UseLimitExceeded);
}

#[test]
fn loaded_keys_stop_working_outside_operational_mode() {
    let f = legacy_2_of_3();
    f.emu.generate_rsa("simple", "k", "k", 1024, 65537).expect("generate");
    let handles = f.emu.load_key("simple", "k").expect("load");
    let s = f.emu.open_session(SLOT, SessionMode::ReadOnly).expect("session");
    f.emu.set_mode(hsmkit_emulator::module::Mode::Maintenance).expect("maintenance");
    let err = s.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, handles[0], b"m").expect_err("maintenance");
    assert_eq!(err.kind(), &ErrorKind::ModuleMode);
    f.emu.set_mode(hsmkit_emulator::module::Mode::Operational).expect("operational");
    s.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, handles[0], b"m").expect("signs again");
}

#[test]
fn destroying_the_public_half_keeps_the_private_key() {
    let f = legacy_2_of_3();
    let s = f.emu.open_session(SLOT, SessionMode::ReadWrite).expect("session");
    let (public, private) = s
        .generate_key_pair(
            &hsmkit_backend::KeyPairSpec::Rsa { bits: 1024, public_exponent: 65537 },
            &KeyPolicy::new(Usage::SIGN | Usage::VERIFY),
        )
        .expect("pair");
    s.destroy(public).expect("destroy public");
    assert_eq!(s.attributes(public, &[AttrKind::Bits]).expect_err("gone").kind(), &ErrorKind::KeyHandleInvalid);
    s.sign(&Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 }, private, b"m").expect("the private key still signs");
    assert_eq!(f.emu.list_keys().expect("list").len(), 1, "the blob is kept");
}

#[test]
fn a_recoverable_key_is_recovered_with_the_quorum_and_only_with_this_worlds_kre() {
    use rsa::pkcs8::DecodePrivateKey;
    let f = legacy_2_of_3();
    let header = f.emu.generate_rsa("simple", "contosokey", "contosokey", 1024, 65537).expect("generate");
    let file = hsmkit_emulator::keyblob::KeyFile::read(&f.kmdata().join("local/key_simple_contosokey")).expect("blob");
    let archive = file.archive.as_ref().expect("the default ACL makes a recovery blob");
    let suite = f.emu.world().expect("w").expect("world").suite();
    let quorum = f.emu.authorize(&[f.good_card(1), f.good_card(2)]).expect("quorum");
    let pkcs8 = archive.open(suite, quorum.kre(), &header.hash).expect("recovered");
    let key = rsa::PrivateKey::from_pkcs8_der(&pkcs8).expect("pkcs8");
    assert_eq!(key.to_public_key(), public_key(&header.public));
    // Another world's recovery key opens nothing.
    let other = world(hsmkit_emulator::suite::CipherSuite::DLf1024s160mRijndael, 1, 1, 77);
    let q2 = other.emu.authorize(&[other.good_card(0)]).expect("other quorum");
    assert_eq!(archive.open(suite, q2.kre(), &header.hash).expect_err("other KRE").kind(), &ErrorKind::Corrupt);
}

#[test]
fn an_ocs_protected_key_exists_but_is_refused_for_use_and_transfer() {
    let f = legacy_2_of_3();
    f.emu.generate_rsa_card_set("simple", "ocskey", 2048, &[0xab; 20]).expect("an OCS-protected key in the model");
    let listed = f.emu.list_keys().expect("list");
    assert!(matches!(listed[0].header.protection, hsmkit_emulator::keyblob::Protection::CardSet { .. }));
    let err = f.emu.load_key("simple", "ocskey").expect_err("needs its card set");
    assert!(err.to_string().contains("Operator Card Set"), "{err}");
    assert!(err.hint_text().unwrap_or("").contains("BYOK toolset does not support OCS-protected keys"), "{err:?}");
    // Narrowing for transfer refuses it too, with the quorum present, and writes nothing.
    let before = f.snapshot();
    let quorum = f.emu.authorize(&[f.good_card(0), f.good_card(1)]).expect("quorum");
    let acl = listed[0].header.acl.clone();
    let err =
        f.emu.copy_with_acl(("simple", "ocskey"), ("xferacld", "ocskey"), acl, Some(&quorum)).expect_err("no transfer");
    assert!(err.to_string().contains("Operator Card Set"), "{err}");
    assert_eq!(f.snapshot(), before);
}

#[test]
fn a_stray_or_damaged_key_file_is_reported_and_the_others_stay_usable() {
    use hsmkit_backend::Backend as _;
    let f = legacy_2_of_3();
    f.emu.generate_rsa("simple", "contosokey", "contosokey", 1024, 65537).expect("generate");
    std::fs::write(f.kmdata().join("local/key_simple_junk"), b"not a key blob").expect("stray file");
    let (keys, damaged) = f.emu.list_keys_and_damage().expect("list");
    assert_eq!(keys.len(), 1, "the good key is listed");
    assert_eq!(damaged.len(), 1, "the stray file is reported");
    assert!(damaged[0].to_string().contains("key_simple_junk"), "{}", damaged[0]);
    let s = f.emu.open_session(hsmkit_emulator::SLOT, hsmkit_backend::SessionMode::ReadOnly).expect("session");
    let found = s
        .find_keys(&hsmkit_backend::KeyFilter { label: Some("contosokey".into()), ..Default::default() })
        .expect("a search still works");
    assert!(!found.is_empty());
}

#[test]
fn a_digest_is_signed_as_its_mechanism_signs_the_message() {
    use hsmkit_backend::{EcCurve, KeyPairSpec, MechanismKind, Session as _};
    use hsmkit_emulator::EmulatorSession;
    use sha2::Digest as _;
    let f = legacy_2_of_3();
    let emu = std::sync::Arc::new(f.emu);
    let s = EmulatorSession::shared(emu.clone(), SessionMode::ReadWrite, 1).expect("session");
    let mut policy = KeyPolicy::new(Usage::SIGN | Usage::VERIFY);
    policy.allowed_mechanisms = Some(vec![MechanismKind::Sha256RsaPkcs, MechanismKind::Sha256RsaPkcsPss]);
    let (public, private) =
        s.generate_key_pair(&KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 }, &policy).expect("pair");
    let message = b"a message signed in parts";
    let digest = sha2::Sha256::digest(message);
    let pkcs1 = Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 };
    let whole = s.sign(&pkcs1, private, message).expect("sign");
    assert_eq!(s.sign_digest(&pkcs1, private, &digest).expect("sign the digest"), whole, "deterministic: the same");
    s.verify_digest(&pkcs1, public, &digest, &whole).expect("verify over the digest");
    let pss = Mechanism::RsaPss { hash: HashAlg::Sha256 };
    let sig = s.sign_digest(&pss, private, &digest).expect("PSS over the digest");
    let spki = match s.attributes(public, &[AttrKind::PublicKeyInfo]).expect("spki").pop() {
        Some(Attr::Value(_, AttrValue::Bytes(b))) => b,
        other => panic!("{other:?}"),
    };
    rsa::pss::VerifyingKey::<sha2::Sha256>::new(public_key(&spki))
        .verify(message, &rsa::pss::Signature::try_from(&sig[..]).expect("sig"))
        .expect("RustCrypto verifies the PSS signature over the message");
    // The raw mechanism the digest is finished with is not one the key allows, asked for itself.
    let raw = s.sign(&Mechanism::RsaPkcs1v15Raw, private, &[0u8; 51]).expect_err("raw");
    assert_eq!(raw.kind(), &ErrorKind::MechanismInvalid, "{raw}");
    // A digest of the wrong length, and a mechanism that does not hash first, are refused.
    assert_eq!(s.sign_digest(&pkcs1, private, &digest[..31]).expect_err("short").kind(), &ErrorKind::DataLenRange);
    assert!(s.sign_digest(&Mechanism::RsaPkcs1v15Raw, private, &digest).is_err());
    // ECDSA: the digest's signature verifies over the message with RustCrypto.
    let (ec_pub, ec_priv) = s
        .generate_key_pair(&KeyPairSpec::Ec { curve: EcCurve::P256 }, &KeyPolicy::new(Usage::SIGN | Usage::VERIFY))
        .expect("EC pair");
    let ecdsa = Mechanism::Ecdsa { hash: Some(HashAlg::Sha256) };
    let sig = s.sign_digest(&ecdsa, ec_priv, &digest).expect("ECDSA over the digest");
    let spki = match s.attributes(ec_pub, &[AttrKind::PublicKeyInfo]).expect("spki").pop() {
        Some(Attr::Value(_, AttrValue::Bytes(b))) => b,
        other => panic!("{other:?}"),
    };
    use p256::pkcs8::DecodePublicKey as _;
    p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
        .expect("P-256 key")
        .verify(message, &p256::ecdsa::Signature::from_slice(&sig).expect("r||s"))
        .expect("RustCrypto verifies the ECDSA signature over the message");
}

#[test]
fn the_key_index_follows_every_change_of_kmdata() {
    let f = legacy_2_of_3();
    f.emu.generate_rsa("simple", "a", "a", 1024, 65537).expect("generate");
    let path = f.kmdata().join("local/key_simple_a");
    let good = std::fs::read(&path).expect("blob");
    let names = |emu: &Emulator| -> (Vec<String>, usize) {
        let (keys, damaged) = emu.list_keys_and_damage().expect("list");
        (keys.into_iter().map(|k| k.header.ident).collect(), damaged.len())
    };
    assert_eq!(names(&f.emu), (vec!["a".to_string()], 0));
    // Another process replaces the file (a new file renamed into place), then restores it, then
    // removes it: each listing of this module sees the change.
    let replace = |bytes: &[u8]| {
        let tmp = f.kmdata().join("local/.replace");
        std::fs::write(&tmp, bytes).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
    };
    replace(b"{ damaged");
    assert_eq!(names(&f.emu), (vec![], 1), "the damaged blob is reported, not served from the index");
    replace(&good);
    assert_eq!(names(&f.emu), (vec!["a".to_string()], 0));
    // A rewrite in place (the same inode and length, a new modification time) is seen too.
    std::thread::sleep(std::time::Duration::from_millis(5));
    std::fs::write(&path, vec![b'x'; good.len()]).expect("in place");
    assert_eq!(names(&f.emu), (vec![], 1), "the rewritten blob is read again");
    std::fs::write(&path, &good).expect("in place");
    assert_eq!(names(&f.emu), (vec!["a".to_string()], 0));
    std::fs::remove_file(&path).expect("rm");
    assert_eq!(names(&f.emu), (vec![], 0));
}
