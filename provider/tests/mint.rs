//! A minted toolset verifies as a tenant verifies it, is written as the real toolset's three
//! files without overwriting anything, and is the same byte for byte under the same seed.

use hsmkit_provider::{Options, PIN_FILE, mint};
use hsmkit_transfer::packages::{self, Region};

fn seeded(region: Region, seed: u64) -> Options {
    Options { region, generation: 1, seed: Some(seed), clock_ms: Some(1_767_225_600_000) }
}

#[test]
fn a_minted_toolset_verifies_and_is_written_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let toolset = mint(&dir.path().join("provider"), &Options::new(Region::EU)).expect("mint");
    assert_eq!(toolset.kek_name, "BYOK-KEK-pkg-EU-1");
    let verified = toolset.verify().expect("verifies");
    assert!(!verified.kek.body.kek.exportable);
    // The verifier, given the files and the pin file's hash, reaches the same verdict.
    let out = dir.path().join("toolset");
    std::fs::create_dir(&out).expect("out");
    toolset.write(&out).expect("write");
    let read = |name: &str| std::fs::read(out.join(name)).expect(name);
    let pinned = packages::parse_root_hash(String::from_utf8(read(PIN_FILE)).expect("utf-8").trim()).expect("pin");
    let again = packages::verify("kek", &read(&toolset.kek_name), "world", &read(&toolset.world_name), &pinned)
        .expect("the written toolset verifies");
    assert_eq!(again.kek.body.kek.spki, verified.kek.body.kek.spki);
    // Nothing is overwritten, and a folder that holds a provider is refused.
    let err = toolset.write(&out).expect_err("exists");
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = mint(&dir.path().join("provider"), &Options::new(Region::EU)).expect_err("a provider is there");
    assert!(err.to_string().contains("already holds a provider"), "{err}");
}

#[test]
fn the_same_seed_mints_the_same_toolset_and_another_does_not() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = mint(&dir.path().join("a"), &seeded(Region::NA, 7)).expect("a");
    let b = mint(&dir.path().join("b"), &seeded(Region::NA, 7)).expect("b");
    let c = mint(&dir.path().join("c"), &seeded(Region::NA, 8)).expect("c");
    assert_eq!((&a.kek, &a.world, a.root_hash), (&b.kek, &b.world, b.root_hash));
    assert_ne!(a.kek, c.kek);
    assert_ne!(a.root_hash, c.root_hash);
}
