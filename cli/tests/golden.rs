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

/// Every sealed box a seeded ceremony writes (key blobs, cards, the world's KM, stored objects)
/// has its own nonce: a seeded run restarts its generator in each process, and two messages
/// sealed under one key with one nonce would give the GCM authentication key away.
#[test]
fn a_seeded_ceremony_never_repeats_a_nonce() {
    fn nonces(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                if let (Some(serde_json::Value::String(n)), Some(serde_json::Value::String(ct))) =
                    (m.get("nonce"), m.get("ct"))
                {
                    out.push((n.clone(), ct.clone()));
                }
                m.values().for_each(|x| nonces(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| nonces(x, out)),
            _ => {}
        }
    }
    let dir = tempfile::tempdir().expect("tmp");
    let run = dir.path().join("ceremony");
    let out = Command::new(env!("CARGO_BIN_EXE_hsmkit"))
        .args(["--seed", "7", "ceremony", "--dir"])
        .arg(&run)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut all = Vec::new();
    let mut stack = vec![run.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&p).expect("read")) {
                nonces(&v, &mut all);
            }
        }
    }
    assert!(all.len() >= 8, "the ceremony seals at least the cards, the world's KM and the key blobs: {}", all.len());
    // The same box copied whole (a CNG copy keeps its source's recovery blob) is one message; two
    // different boxes with one nonce are the failure.
    let mut boxes = all.clone();
    boxes.sort();
    boxes.dedup();
    let mut by_nonce: Vec<&String> = boxes.iter().map(|(n, _)| n).collect();
    by_nonce.dedup();
    assert_eq!(by_nonce.len(), boxes.len(), "a nonce seals two different boxes: {boxes:?}");
}
