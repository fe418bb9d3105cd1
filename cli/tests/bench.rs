//! `hsmkit bench`: its arguments, its table, its JSON and its chart, on the emulator and SoftHSM2.

mod common;

use std::process::{Command, Output};

fn hsmkit(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hsmkit"))
        .args(args)
        .env_remove("HOME")
        .current_dir(dir)
        .output()
        .expect("run hsmkit")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn bad_arguments_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = hsmkit(dir.path(), &["bench", "--op", "sign-rot13"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("unknown operation 'sign-rot13'") && t.contains("sign-pkcs1-2048"), "{t}");
    let out = hsmkit(dir.path(), &["bench", "--threads", "0"]);
    assert!(!out.status.success() && text(&out).contains("thread counts from 1 to 256"), "{}", text(&out));
    let out = hsmkit(dir.path(), &["bench", "--duration", "-1"]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = hsmkit(dir.path(), &["bench", "--backend", "pkcs11:/nonexistent.so"]);
    assert!(!out.status.success() && text(&out).contains("nonexistent.so"), "{}", text(&out));
    let out = hsmkit(dir.path(), &["bench", "--op", "list"]);
    let names = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && names.lines().count() >= 15 && names.contains("wrap-rsa-aes-kek4096"), "{names}");
}

#[test]
fn the_emulator_and_softhsm2_side_by_side_with_json_and_a_chart() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let conf = common::softhsm2_token(d, "bench");
    std::fs::write(d.join("pins"), "1234\n").expect("pins");
    std::fs::write(d.join("so-pin"), "5678\n").expect("so pin");
    let bench = |ops: &str, so_pin: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hsmkit"));
        cmd.args(["bench", "--backend", "emulator", "--backend", "pkcs11:/usr/lib/softhsm/libsofthsm2.so"])
            .args(["--token", "bench", "--op", ops, "--threads", "1,2"])
            .args(["--duration", "0.3", "--rounds", "2", "--json", "run.json", "--plot", "run.svg"])
            .arg("--pin-file")
            .arg(d.join("pins"))
            .env("SOFTHSM2_CONF", &conf)
            .env_remove("HOME")
            .current_dir(d);
        if so_pin {
            cmd.arg("--so-pin-file").arg(d.join("so-pin"));
        }
        cmd.output().expect("run")
    };
    let out = bench("sign-pkcs1-2048,wrap-rsa-aes-kek2048,package-rsa-2048", true);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for row in [
        "emulator (in process)",
        "libsofthsm2.so (PKCS#11) (composed)",
        "emulator (in process) (native)",
        "reference (AWS-LC)",
    ] {
        assert!(t.contains(row), "{row}: {t}");
    }
    assert!(t.contains("vs 1st") && t.contains("vs ref"), "{t}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("run.json")).expect("json")).expect("JSON");
    assert_eq!(json["schema"], "hsmkit-bench/1");
    let cells = json["cells"].as_array().expect("cells");
    // 2 operations x 2 thread counts x 3 rows, and the package step (no reference) x 2 x 2.
    assert_eq!(cells.len(), 16, "{json}");
    assert!(cells.iter().all(|c| c["error"].is_null() && c["ops_per_sec"].as_f64().is_some_and(|r| r > 0.0)));
    let svg = std::fs::read_to_string(d.join("run.svg")).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("wrap-rsa-aes-kek2048 x2"), "a labelled chart");
    // The package step has no reference row: its bars are relative to the first row, and say so.
    assert!(svg.contains("package-rsa-2048 x1 (vs emulator (in process))"), "{svg}");
    // The token is left as found: the package step's keys are gone again.
    let left = Command::new("pkcs11-tool")
        .args(["--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "bench", "--login", "--pin", "1234"])
        .arg("--list-objects")
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("pkcs11-tool");
    let objects = String::from_utf8_lossy(&left.stdout);
    assert!(left.status.success() && !objects.contains("Object"), "objects left on the token: {objects}");

    // Without the security officer's PIN, SoftHSM2 is left out of the package step, and says why.
    let out = bench("package-rsa-2048", false);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("libsofthsm2.so (PKCS#11) is left out of package-rsa-2048") && t.contains("--so-pin-file"),
        "{t}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("run.json")).expect("json")).expect("JSON");
    let rows: Vec<&str> = json["cells"].as_array().expect("cells").iter().filter_map(|c| c["row"].as_str()).collect();
    assert_eq!(rows, ["emulator (in process)"; 2], "{json}");
}
