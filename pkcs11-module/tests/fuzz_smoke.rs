//! The fuzz targets' smoke run for what the module reads from outside (see
//! `emulator/tests/fuzz_smoke.rs`): `HSMKIT_CONF` files, attribute templates through the ABI on a
//! throwaway token, and the conformance kit's expectation files. Each entry point reads its seed
//! and survives seeded mutants and random buffers; a panic or a crash fails the run. The seeds go
//! to `target/fuzz-seeds/<target>/` for `scripts/fuzz.sh`.

mod common;

use std::process::ExitCode;

fn template_seed() -> Vec<u8> {
    // [type index][length][value]: CKA_CLASS = CKO_DATA, CKA_TOKEN = true, CKA_LABEL, CKA_VALUE.
    let mut t = vec![0u8, 8];
    t.extend_from_slice(&cryptoki_sys::CKO_DATA.to_ne_bytes());
    t.extend_from_slice(&[1, 1, 1]);
    t.extend_from_slice(&[3, 4]);
    t.extend_from_slice(b"seed");
    t.extend_from_slice(&[5, 3]);
    t.extend_from_slice(b"abc");
    t
}

fn main() -> ExitCode {
    common::with_throwaway_conf(|| {
        let expectations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/expectations");
        let mut targets: Vec<(&str, hsmkit_pkcs11::fuzz::Target, Vec<Vec<u8>>, usize)> = vec![
            (
                "config",
                hsmkit_pkcs11::fuzz::TARGETS[0].1,
                vec![b"# slots\nslot 0 /tmp/a/kmdata\nslot 7 /tmp/b c/kmdata\n".to_vec()],
                1000,
            ),
            ("template", hsmkit_pkcs11::fuzz::TARGETS[1].1, vec![template_seed()], 300),
        ];
        let files: Vec<Vec<u8>> = ["emulator.txt", "pkcs11-module.txt", "softhsm2.txt"]
            .iter()
            .map(|f| std::fs::read(expectations.join(f)).expect("expectation file"))
            .collect();
        targets.push(("expectations", hsmkit_conformance::fuzz_expectations, files, 400));
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-seeds");
        for (i, (name, target, seeds, count)) in targets.iter().enumerate() {
            std::fs::create_dir_all(out.join(name)).expect("seed folder");
            let (mut total, mut read, mut random) = (0, 0, 0);
            for (j, seed) in seeds.iter().enumerate() {
                std::fs::write(out.join(name).join(format!("seed{j}")), seed).expect("seed");
                assert!(target(seed), "{name}: seed {j} is not read");
                let r = hsmkit_emulator::mutate::smoke(target, seed, 300 + i as u64, *count, 100 / seeds.len(), 256);
                total += r.mutants;
                read += r.mutants_read;
                random += r.random;
            }
            println!("FUZZSMOKE {name}: {total} mutants ({read} read), {random} random buffers");
        }
        // The template target made and destroyed what it made: the token holds no object.
        let kmdata = common::kmdata_of(0);
        let left: Vec<_> = std::fs::read_dir(kmdata.join("local"))
            .expect("local")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("obj_") || n.starts_with("key_"))
            .collect();
        assert!(left.is_empty(), "objects left on the token: {left:?}");
        ExitCode::SUCCESS
    })
}
