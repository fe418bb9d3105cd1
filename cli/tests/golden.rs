//! Golden files: a ceremony run with `--seed 7` writes exactly the files kept under
//! `vectors/ceremony-seed-7/` (insta snapshots). A change to any format, key derivation or
//! randomness path shows here as a diff to review, never silently.

use std::path::Path;
use std::process::Command;

const FILES: &[&str] = &[
    "BYOK-KEK-pkg-NA-1",
    "BYOK-SecurityWorld-pkg-NA-1",
    "verifykeypackage.pin",
    "TransferPackage-ContosoFirstkey.byok",
    "kmdata/local/world",
    "kmdata/local/key_simple_contosokey",
    "kmdata/local/key_xferacld_contosokey",
];

#[test]
fn a_seeded_ceremony_writes_the_golden_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = dir.path().join("ceremony");
    let out = Command::new(env!("CARGO_BIN_EXE_hsmkit"))
        .args(["--seed", "7", "ceremony", "--dir"])
        .arg(&run)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors/ceremony-seed-7");
    insta::with_settings!({ snapshot_path => vectors, prepend_module_to_snapshot => false, omit_expression => true }, {
        for f in FILES {
            let text = std::fs::read_to_string(run.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            insta::assert_snapshot!(f.replace('/', "__"), text);
        }
    });
}
