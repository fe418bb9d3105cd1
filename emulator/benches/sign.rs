#![allow(missing_docs)]
//! RSA-2048 PKCS#1 v1.5 SHA-256 signing: a module-protected key in the emulator against the same
//! signature computed directly with AWS-LC (the fastest RSA library of the workspace), in one run.
//!
//! The ratio of the two rows is the emulator's cost: object lookup, the ACL check and the RNG
//! lock on every sign. Opening a blob (decrypt under KM, parse) happens once per load and has a
//! row of its own.
//!
//! Run: `cargo bench -p hsmkit-emulator --bench sign`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hsmkit_backend::{Backend, HashAlg, KeyMaterial, KeyPolicy, Mechanism, SessionMode, Usage};
use hsmkit_emulator::acl::{Need, OpPerms};
use hsmkit_emulator::suite::CipherSuite;
use hsmkit_emulator::world::Quorum;
use hsmkit_emulator::{Config, Emulator, SLOT};
use rsa::pkcs8::EncodePrivateKey;

fn bench_sign(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    let kmdata = dir.path().join("kmdata");
    std::fs::create_dir(&kmdata).expect("kmdata");
    let mut config = Config::beside(&kmdata);
    config.seed = Some(1);
    let emu = Emulator::open(config).expect("emulator");
    emu.create_world(
        CipherSuite::DLf3072s256mAEScSP800131Ar1,
        Quorum { k: 1, n: 1 },
        &[hsmkit_backend::Pin::from("p".to_string())],
    )
    .expect("world");

    // One RSA-2048 key, known to the bench, imported as a module-protected token key.
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(7);
    let key = rsa::PrivateKey::new(&mut rng, 2048).expect("key");
    let pkcs8 = key.to_pkcs8_der().expect("pkcs8").as_bytes().to_vec();
    let session = emu.open_session(SLOT, SessionMode::ReadWrite).expect("session");
    let handle = session
        .import_key(
            &KeyMaterial::RsaPrivatePkcs8(zeroize::Zeroizing::new(pkcs8.clone())),
            &KeyPolicy::new(Usage::SIGN).with_label("bench"),
        )
        .expect("import");
    let reference = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&pkcs8).expect("aws-lc key");
    let random = aws_lc_rs::rand::SystemRandom::new();
    let mech = Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 };
    let msg = b"the tenant key signs this";

    // Both produce the same (deterministic) signature.
    let mut expected = vec![0u8; reference.public_modulus_len()];
    reference.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &random, msg, &mut expected).expect("sign");
    assert_eq!(session.sign(&mech, handle, msg).expect("emulator sign"), expected);

    // The ratio, measured interleaved (one reference sign, one emulator sign, in turn) so that a
    // machine whose speed drifts during the run affects both rows alike. Medians of each.
    let rounds = if std::env::args().any(|a| a == "--bench") { 1500 } else { 5 };
    let (mut t_ref, mut t_emu) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let mut sig = vec![0u8; reference.public_modulus_len()];
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        reference.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &random, black_box(msg), &mut sig).expect("sign");
        t_ref.push(t.elapsed());
        let t = std::time::Instant::now();
        black_box(session.sign(&mech, handle, black_box(msg)).expect("sign"));
        t_emu.push(t.elapsed());
    }
    t_ref.sort();
    t_emu.sort();
    let (m_ref, m_emu) = (t_ref[rounds / 2], t_emu[rounds / 2]);
    println!(
        "interleaved, {rounds} rounds: reference median {m_ref:?}, emulator median {m_emu:?}: \
         emulator speed = {:.3}x the reference (target >= 0.9x)",
        m_ref.as_secs_f64() / m_emu.as_secs_f64()
    );

    let mut g = c.benchmark_group("rsa2048_pkcs1v15_sha256_sign");
    g.bench_function("reference: aws-lc-rs directly", |b| {
        let mut sig = vec![0u8; reference.public_modulus_len()];
        b.iter(|| {
            reference.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &random, black_box(msg), &mut sig).expect("sign");
            black_box(&sig);
        })
    });
    g.bench_function("emulator: module-protected key through the seam", |b| {
        b.iter(|| black_box(session.sign(&mech, handle, black_box(msg)).expect("sign")))
    });
    g.finish();

    // What the emulator adds, measured alone: the ACL check of a loaded key, and opening a blob.
    let path = emu.list_keys().expect("keys").into_iter().map(|k| k.path).next().expect("the bench key");
    let loaded = emu.load_blob(&path).expect("load");
    let mut g = c.benchmark_group("emulator_overheads");
    g.bench_function("ACL check (Sign)", |b| {
        b.iter(|| {
            emu.enforce(&loaded, black_box(&Need::Op(OpPerms::Sign)), None, hsmkit_backend::Op::Sign).expect("allowed")
        })
    });
    g.bench_function("open a key blob (once per load)", |b| b.iter(|| black_box(emu.load_blob(&path).expect("load"))));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(5));
    targets = bench_sign
}
criterion_main!(benches);
