//! The wrap step of packaging: `CKM_RSA_AES_KEY_WRAP` of an RSA-2048 key under an RSA-2048 KEK,
//! in the emulator (in process) against the same wrap on SoftHSM2 through PKCS#11 (composed in
//! the module from AES key generation, RFC 5649 and RSA-OAEP, as SoftHSM2 has no single
//! mechanism), in one run. Target: the emulator at least 2.5x SoftHSM2.
//!
//! Run: `cargo bench -p hsmkit-pkcs11-client --bench wrap`.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;

use criterion::Criterion;
use hsmkit_backend::{Backend, HashAlg, KeyMaterial, KeyPolicy, Mechanism, Pin, Session, SessionMode, Usage, UserKind};
use hsmkit_pkcs11_client::{Pkcs11Backend, TokenChoice};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};

const MECH: Mechanism = Mechanism::RsaAesKeyWrap { aes_bits: 256, hash: HashAlg::Sha1 };

/// Imports the KEK's public half and an extractable target; returns (kek, target).
fn keys(s: &dyn Session) -> (hsmkit_backend::KeyHandle, hsmkit_backend::KeyHandle) {
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(9);
    let kek = rsa::PrivateKey::new(&mut rng, 2048).expect("kek");
    let target = rsa::PrivateKey::new(&mut rng, 2048).expect("target");
    let mut p = KeyPolicy::new(Usage::WRAP | Usage::ENCRYPT);
    p.token = false;
    let spki = kek.to_public_key().to_public_key_der().expect("spki").as_bytes().to_vec();
    let kek = s.import_key(&KeyMaterial::RsaPublicSpki(spki), &p).expect("import kek");
    let mut p = KeyPolicy::new(Usage::SIGN).extractable(true);
    p.token = false;
    let der = zeroize::Zeroizing::new(target.to_pkcs8_der().expect("pkcs8").as_bytes().to_vec());
    let target = s.import_key(&KeyMaterial::RsaPrivatePkcs8(der), &p).expect("import target");
    (kek, target)
}

fn bench(c: &mut Criterion) {
    // The emulator, in a throwaway world.
    let dir = tempfile::tempdir().expect("tmp");
    let emu = common::emulator_world(dir.path());
    let es = emu.open_session(hsmkit_emulator::SLOT, SessionMode::ReadWrite).expect("session");
    let (ekek, etarget) = keys(es.as_ref());
    // SoftHSM2.
    let softhsm = Pkcs11Backend::open("/usr/lib/softhsm/libsofthsm2.so", TokenChoice::Label("hsmkit-wrap".into()))
        .expect("SoftHSM2");
    let ss = softhsm.open_session(softhsm.slot(), SessionMode::ReadWrite).expect("session");
    ss.login(UserKind::User, &Pin::from("1234".to_string())).expect("login");
    let (skek, starget) = keys(ss.as_ref());

    let rounds = if std::env::args().any(|a| a == "--bench") { 1000 } else { 3 };
    let (mut te, mut ts) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        black_box(es.wrap_key(&MECH, ekek, etarget).expect("emulator wrap"));
        te.push(t.elapsed());
        let t = std::time::Instant::now();
        black_box(ss.wrap_key(&MECH, skek, starget).expect("SoftHSM2 wrap"));
        ts.push(t.elapsed());
    }
    te.sort();
    ts.sort();
    let (me, ms) = (te[rounds / 2], ts[rounds / 2]);
    println!(
        "interleaved, {rounds} rounds: emulator median {me:?}, SoftHSM2 median {ms:?}: the emulator is {:.2}x SoftHSM2 (target >= 2.5x)",
        ms.as_secs_f64() / me.as_secs_f64()
    );

    let mut g = c.benchmark_group("rsa_aes_key_wrap_rsa2048_under_rsa2048");
    g.bench_function("emulator (in process)", |b| {
        b.iter(|| black_box(es.wrap_key(&MECH, ekek, etarget).expect("wrap")))
    });
    g.bench_function("SoftHSM2 through PKCS#11 (composed)", |b| {
        b.iter(|| black_box(ss.wrap_key(&MECH, skek, starget).expect("wrap")))
    });
    g.finish();
}

fn main() {
    common::run("hsmkit-wrap", bench);
}
