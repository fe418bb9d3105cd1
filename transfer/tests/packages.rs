//! The KEK and Security World packages: made with a module key in the emulator, verified, and
//! refused after every single-byte change, with another root, an exportable KEK or mixed regions.

use hsmkit_backend::{Backend, KeyPairSpec, KeyPolicy, Pin, SessionMode, Usage};
use hsmkit_emulator::suite::CipherSuite;
use hsmkit_emulator::world::Quorum;
use hsmkit_emulator::{Config, Emulator, SLOT};
use hsmkit_transfer::packages::{
    self, KEK_FORMAT, KekBody, KekInfo, KekPackage, ModuleCertBody, Region, VendorRoot, WORLD_FORMAT, WorldBody,
    WorldPackage,
};
use rand_core::SeedableRng;

struct Provider {
    _dir: tempfile::TempDir,
    kek: Vec<u8>,
    world: Vec<u8>,
    root_hash: [u8; 20],
}

fn spki_of(s: &dyn hsmkit_backend::Session, h: hsmkit_backend::KeyHandle) -> Vec<u8> {
    match s.attributes(h, &[hsmkit_backend::AttrKind::PublicKeyInfo]).expect("attrs").pop() {
        Some(hsmkit_backend::Attr::Value(_, hsmkit_backend::AttrValue::Bytes(b))) => b,
        other => panic!("{other:?}"),
    }
}

/// A provider: a module key in the emulator signs the packages, a root certifies it.
fn provider(seed: u64, kek_region: Region, world_region: Region, exportable: bool) -> Provider {
    let dir = tempfile::tempdir().expect("tmp");
    let kmdata = dir.path().join("kmdata");
    std::fs::create_dir(&kmdata).expect("kmdata");
    let mut c = Config::beside(&kmdata);
    c.seed = Some(seed);
    let emu = Emulator::open(c).expect("emulator");
    let w = emu
        .create_world(CipherSuite::DLf1024s160mRijndael, Quorum { k: 1, n: 1 }, &[Pin::from("p".to_string())])
        .expect("world")
        .world;
    let s = emu.open_session(SLOT, SessionMode::ReadWrite).expect("session");
    let spec = KeyPairSpec::Rsa { bits: 1024, public_exponent: 65537 };
    let (sign_pub, sign_priv) =
        s.generate_key_pair(&spec, &KeyPolicy::new(Usage::SIGN | Usage::VERIFY)).expect("signing key");
    let (kek_pub, _) = s.generate_key_pair(&spec, &KeyPolicy::new(Usage::UNWRAP | Usage::ENCRYPT)).expect("kek");
    let root = VendorRoot::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed)).expect("root");
    let cert = root
        .certify(ModuleCertBody { esn: emu.esn().expect("esn"), spki: spki_of(s.as_ref(), sign_pub) })
        .expect("cert");
    let kek_body = KekBody {
        region: kek_region,
        generation: 1,
        kek: KekInfo {
            spki: spki_of(s.as_ref(), kek_pub),
            bits: 1024,
            exportable,
            generated_in: emu.esn().expect("esn"),
        },
        world_hknso: w.hknso().to_vec(),
    };
    let world_body = WorldBody {
        region: world_region,
        generation: 1,
        cipher_suite: w.suite().name().into(),
        hknso: w.hknso().to_vec(),
        hkm: w.hkm().to_vec(),
    };
    let kek =
        KekPackage::sign(KEK_FORMAT, kek_body, cert.clone(), root.spki(), s.as_ref(), sign_priv).expect("kek pkg");
    let world =
        WorldPackage::sign(WORLD_FORMAT, world_body, cert, root.spki(), s.as_ref(), sign_priv).expect("world pkg");
    Provider {
        kek: kek.to_bytes().expect("bytes"),
        world: world.to_bytes().expect("bytes"),
        root_hash: packages::root_hash(&root.spki()),
        _dir: dir,
    }
}

fn verify(kek: &[u8], world: &[u8], root: &[u8; 20]) -> hsmkit_backend::Result<packages::Verified> {
    packages::verify("kek", kek, "world", world, root)
}

#[test]
fn a_genuine_toolset_verifies() {
    let p = provider(1, Region::NA, Region::NA, false);
    let v = verify(&p.kek, &p.world, &p.root_hash).expect("verifies");
    assert_eq!(v.checks.len(), 5);
    assert_eq!(v.kek.body.region, Region::NA);
}

#[test]
fn every_single_byte_change_of_either_package_is_refused() {
    let p = provider(2, Region::NA, Region::NA, false);
    for (which, original) in [("kek", &p.kek), ("world", &p.world)] {
        for i in 0..original.len() {
            for flip in [0x01u8, 0x20] {
                let mut bytes = original.clone();
                bytes[i] ^= flip;
                let r = if which == "kek" {
                    verify(&bytes, &p.world, &p.root_hash)
                } else {
                    verify(&p.kek, &bytes, &p.root_hash)
                };
                assert!(r.is_err(), "{which}: byte {i} ^ {flip:#x} was accepted");
            }
        }
        for cut in [0, 1, original.len() / 2, original.len() - 1] {
            let r = if which == "kek" {
                verify(&original[..cut], &p.world, &p.root_hash)
            } else {
                verify(&p.kek, &original[..cut], &p.root_hash)
            };
            assert!(r.is_err(), "{which} truncated to {cut} bytes was accepted");
        }
    }
}

#[test]
fn another_root_is_refused_by_hash() {
    let p = provider(3, Region::NA, Region::NA, false);
    let q = provider(4, Region::NA, Region::NA, false);
    let err = verify(&p.kek, &p.world, &q.root_hash).expect_err("other root");
    let msg = err.to_string();
    assert!(msg.contains("the signer chain ends at the pinned root"), "{msg}");
    assert!(msg.contains(&packages::format_root_hash(&q.root_hash)), "{msg}");
    // Mixing two providers' packages fails even under one of their roots.
    assert!(verify(&p.kek, &q.world, &p.root_hash).is_err());
}

#[test]
fn an_exportable_kek_is_refused() {
    let p = provider(5, Region::NA, Region::NA, true);
    let err = verify(&p.kek, &p.world, &p.root_hash).expect_err("exportable");
    assert!(err.to_string().contains("the KEK is not exportable"), "{err}");
}

#[test]
fn a_world_package_of_another_region_is_refused() {
    let p = provider(6, Region::NA, Region::EU, false);
    let err = verify(&p.kek, &p.world, &p.root_hash).expect_err("regions");
    assert!(err.to_string().contains("region NA, the world package for EU"), "{err}");
}

#[test]
fn root_hashes_print_and_parse_as_the_article_writes_them() {
    let h = packages::parse_root_hash("59178a47 de508c3f 291277ee 184f46c4 f1d9c639").expect("parse");
    assert_eq!(packages::format_root_hash(&h), "59178a47 de508c3f 291277ee 184f46c4 f1d9c639");
    for bad in ["59178a47", "zz178a47 de508c3f 291277ee 184f46c4 f1d9c639", ""] {
        assert!(packages::parse_root_hash(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_renamed_package_is_refused() {
    let p = provider(8, Region::NA, Region::NA, false);
    packages::verify("BYOK-KEK-pkg-NA-1", &p.kek, "BYOK-SecurityWorld-pkg-NA-1", &p.world, &p.root_hash)
        .expect("named right");
    let err = packages::verify("dir/BYOK-KEK-pkg-EU-1", &p.kek, "BYOK-SecurityWorld-pkg-NA-1", &p.world, &p.root_hash)
        .expect_err("renamed");
    assert!(err.to_string().contains("the file was renamed"), "{err}");
}

/// Runs 10,000 seeded mutants of `original` through `read`: each is refused or means what the
/// original means; prints the counts for `docs/reliability.md`.
fn mutants_refused<T: PartialEq>(format: &str, original: &[u8], seed: u64, read: impl Fn(&[u8]) -> Option<T>) {
    let good = read(original).expect("the original reads");
    let all = hsmkit_emulator::mutate::mutants(original, seed, 10_000);
    assert_eq!(all.len(), 10_000);
    let (mut refused, mut same) = (0, 0);
    for (kind, m) in &all {
        match read(m) {
            None => refused += 1,
            Some(x) if x == good => same += 1,
            Some(_) => panic!("{format}: a {kind} mutant was read as something else"),
        }
    }
    println!("MUTANTS {format}: {} mutants, {refused} refused, {same} read as the original", all.len());
    assert!(refused > all.len() / 2);
}

#[test]
fn ten_thousand_mutants_of_each_package_are_refused() {
    let p = provider(31, Region::NA, Region::NA, false);
    let (kek, world) = (p.kek.clone(), p.world.clone());
    mutants_refused("KEK package", &p.kek, 5, |m| verify(m, &world, &p.root_hash).ok().map(|v| v.kek));
    mutants_refused("world package", &p.world, 6, |m| verify(&kek, m, &p.root_hash).ok().map(|v| v.world));
    // The transfer package of the golden ceremony (an insta snapshot: the file after its header).
    let snap = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../vectors/ceremony-seed-7/TransferPackage-ContosoFirstkey.byok.snap"),
    )
    .expect("snapshot");
    let body = snap.splitn(3, "---\n").nth(2).expect("the snapshot's content");
    mutants_refused("transfer package", body.as_bytes(), 7, |m| {
        hsmkit_transfer::byok::TransferPackage::from_bytes("p", m).ok()
    });
}

/// The fuzz targets' smoke run (see `emulator/tests/fuzz_smoke.rs`): each entry point of
/// `hsmkit_transfer::fuzz` reads its seed, survives 1,000 mutants and 200 random buffers, and
/// reads no random buffer. The seeds go to `target/fuzz-seeds/<target>/` for `scripts/fuzz.sh`.
#[test]
fn every_fuzz_target_reads_its_seed_and_survives_its_mutants() {
    use hsmkit_transfer::fuzz;
    let p = provider(32, Region::NA, Region::NA, false);
    let snap = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../vectors/ceremony-seed-7/TransferPackage-ContosoFirstkey.byok.snap"),
    )
    .expect("snapshot");
    let byok = snap.splitn(3, "---\n").nth(2).expect("the snapshot's content").as_bytes().to_vec();
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("transfer_package", byok),
        ("kek_package", p.kek.clone()),
        ("world_package", p.world.clone()),
        ("toolset", fuzz::toolset_input(&p.root_hash, &p.kek, &p.world)),
        ("arguments", b"aws RSA_AES_KEY_WRAP_SHA_256".to_vec()),
    ];
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-seeds");
    for (i, (name, target)) in fuzz::TARGETS.iter().enumerate() {
        let seed = &seeds.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no seed for {name}")).1;
        std::fs::create_dir_all(out.join(name)).expect("seed folder");
        std::fs::write(out.join(name).join("seed"), seed).expect("seed");
        assert!(target(seed), "{name}: the seed is not read");
        let r = hsmkit_emulator::mutate::smoke(target, seed, 200 + i as u64, 1000, 200, 512);
        println!(
            "FUZZSMOKE {name}: {} mutants ({} read), {} random buffers ({} read)",
            r.mutants, r.mutants_read, r.random, r.random_read
        );
        assert_eq!(r.random_read, 0, "{name}: random bytes were read");
        // The verifier checks the signatures: it reads no mutant. The package readers alone parse
        // (the signature is the verifier's); they still refuse most.
        if *name == "toolset" {
            assert_eq!(r.mutants_read, 0, "{name}: a mutant of a signed package was verified");
        } else if *name != "arguments" {
            assert!(r.mutants_read < r.mutants / 2, "{name}: {} mutants read", r.mutants_read);
        }
    }
}
