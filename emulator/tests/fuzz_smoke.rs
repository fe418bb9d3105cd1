//! The fuzz targets' smoke run: every entry point of `hsmkit_emulator::fuzz` (the functions the
//! cargo-fuzz targets in `fuzz/` call) is given its seed file, which it must read, then 1,000
//! seeded mutants of it and 200 random buffers, which it must survive (a panic fails the test)
//! and mostly refuse. The seeds are written to `target/fuzz-seeds/<target>/` for `scripts/fuzz.sh`
//! to start its corpora from.

mod common;

use std::collections::BTreeMap;

use common::*;
use hsmkit_backend::Pin;
use hsmkit_emulator::fuzz;
use hsmkit_emulator::keyblob::KeyFile;
use hsmkit_emulator::mutate::smoke;
use hsmkit_emulator::token::TokenRecord;
use zeroize::Zeroizing;

/// One good input for each target.
fn seeds() -> BTreeMap<&'static str, Vec<u8>> {
    let f = legacy_2_of_3();
    f.emu.generate_rsa("simple", "fuzz", "fuzz", 1024, 65537).expect("generate");
    let auth = f.emu.authorize(&[f.good_card(0), f.good_card(1)]).expect("quorum");
    f.emu.init_user_pin(&auth, &Pin::from("user-pin".to_string())).expect("user PIN");
    let attrs = [(3u64, b"label".to_vec()), (0x11, b"value".to_vec())]
        .into_iter()
        .map(|(k, v)| (k, Zeroizing::new(v)))
        .collect();
    let obj = f.emu.save_object(f.emu.new_object(0, true, attrs).expect("new")).expect("save");
    let read = |p: std::path::PathBuf| std::fs::read(p).expect("seed file");
    let blob = read(f.kmdata().join("local").join(fuzz::BLOB_NAME));
    let acl = serde_json::to_vec(
        &KeyFile::from_bytes(&blob, std::path::Path::new(fuzz::BLOB_NAME)).expect("blob").header.acl,
    )
    .expect("acl");
    let mut s = BTreeMap::new();
    s.insert("world", read(f.kmdata().join("local/world")));
    s.insert("card", read(f.cards[0].clone()));
    s.insert("nvram", read(f.dir.path().join("nvram/module")));
    s.insert("key_blob", blob);
    s.insert("acl", acl);
    s.insert("stored_object", read(obj.path.expect("token object")));
    s.insert(
        "generate_params",
        b"type=RSA size=2048 protect=module ident=fuzz plainname=Fuzz nvram=no pubexp=".to_vec(),
    );
    // A token record like the module's, authenticated under the target's fixed key.
    let mut record: TokenRecord =
        serde_json::from_slice(&read(f.kmdata().join("local/pkcs11_token"))).expect("the module's record");
    let other = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(other.path().join("local")).expect("local");
    record.label = "fuzz".into();
    record.save(other.path(), &Zeroizing::new(fuzz::RECORD_KEY), &Default::default()).expect("save");
    s.insert("token_record", read(other.path().join("local/pkcs11_token")));
    s
}

#[test]
fn every_fuzz_target_reads_its_seed_and_survives_its_mutants() {
    let seeds = seeds();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-seeds");
    for (i, (name, target)) in fuzz::TARGETS.iter().enumerate() {
        let seed = seeds.get(name).unwrap_or_else(|| panic!("no seed for target {name}"));
        let dir = out.join(name);
        std::fs::create_dir_all(&dir).expect("seed folder");
        std::fs::write(dir.join("seed"), seed).expect("seed");
        assert!(target(seed), "{name}: the seed is not read, so the target reaches nothing past the parser");
        let r = smoke(target, seed, 100 + i as u64, 1000, 200, 512);
        println!(
            "FUZZSMOKE {name}: {} mutants ({} read), {} random buffers ({} read)",
            r.mutants, r.mutants_read, r.random, r.random_read
        );
        assert_eq!(r.random_read, 0, "{name}: random bytes were read as a file");
        if *name != "generate_params" && *name != "acl" {
            assert!(r.mutants_read < r.mutants / 2, "{name}: {} of {} mutants read", r.mutants_read, r.mutants);
        }
    }
}
