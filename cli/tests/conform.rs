//! `hsmkit conform` on PKCS#11 modules: a deliberately broken module (it segfaults in
//! C_SignInit and hangs in C_GenerateRandom) costs the cases that were running, not the run; the
//! reports validate (JUnit against docs/junit.xsd with xmllint, JSON against
//! docs/conform.schema.json); and the kit runs green on libhsmkit_pkcs11.so and SoftHSM2 against
//! their expectation files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// The broken module, compiled with the system's C compiler into `dir`.
fn broken_module(dir: &Path) -> PathBuf {
    let out = dir.join("libbroken.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken/broken_module.c");
    let cc = Command::new("cc").args(["-shared", "-fPIC", "-O0", "-o"]).arg(&out).arg(&src).output().expect("cc");
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
    out
}

fn conform(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hsmkit"));
    cmd.arg("conform").args(args).env_remove("HOME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hsmkit conform")
}

/// Validates `value` against the subset of JSON Schema that docs/conform.schema.json uses
/// (type, enum, required, properties, additionalProperties: false, items); returns what is wrong.
fn validate(schema: &serde_json::Value, value: &serde_json::Value, at: &str, errors: &mut Vec<String>) {
    use serde_json::Value;
    let type_ok = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    };
    match &schema["type"] {
        Value::String(t) if !type_ok(t) => errors.push(format!("{at}: not a {t}: {value}")),
        Value::Array(ts) if !ts.iter().filter_map(Value::as_str).any(type_ok) => {
            errors.push(format!("{at}: none of {ts:?}: {value}"))
        }
        _ => {}
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {options:?}"));
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), value.as_object()) {
        for r in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !obj.contains_key(r) {
                errors.push(format!("{at}: missing {r}"));
            }
        }
        for (k, v) in obj {
            match props.get(k) {
                Some(s) => validate(s, v, &format!("{at}.{k}"), errors),
                None if schema["additionalProperties"] == Value::Bool(false) => {
                    errors.push(format!("{at}: unknown {k}"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            validate(items, v, &format!("{at}[{i}]"), errors);
        }
    }
}

fn check_reports(dir: &Path) -> serde_json::Value {
    let xmllint = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(repo().join("docs/junit.xsd"))
        .arg(dir.join("report.xml"))
        .output()
        .expect("xmllint (bash scripts/test.sh installs libxml2-utils)");
    assert!(xmllint.status.success(), "the JUnit report: {}", String::from_utf8_lossy(&xmllint.stderr));
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("docs/conform.schema.json")).expect("schema")).expect("JSON");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report")).expect("JSON");
    let mut errors = Vec::new();
    validate(&schema, &report, "$", &mut errors);
    assert!(errors.is_empty(), "the JSON report against docs/conform.schema.json: {errors:#?}");
    report
}

fn outcome<'a>(report: &'a serde_json::Value, id: &str) -> (&'a str, &'a str) {
    let case = report["cases"].as_array().expect("cases").iter().find(|c| c["id"] == id);
    let case = case.unwrap_or_else(|| panic!("no case {id}"));
    (case["outcome"].as_str().expect("outcome"), case["reason"].as_str().unwrap_or_default())
}

#[test]
fn a_module_that_crashes_and_hangs_costs_the_cases_that_ran_not_the_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let module = broken_module(d);
    let spec = format!("pkcs11:{}", module.display());
    let (json, xml, md) = (d.join("report.json"), d.join("report.xml"), d.join("report.md"));
    let out = conform(
        &[
            "--backend",
            &spec,
            "--profile",
            "abi",
            "--case-timeout",
            "2",
            "--json",
            json.to_str().expect("utf-8"),
            "--junit",
            xml.to_str().expect("utf-8"),
            "--markdown",
            md.to_str().expect("utf-8"),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a module that crashes does not conform: {stdout}");
    let report = check_reports(d);
    // The segfault and the hang are recorded against the cases that were running...
    for id in ["abi-not-initialized-C_SignInit", "abi-bad-session-C_SignInit"] {
        let (o, why) = outcome(&report, id);
        assert!(o == "crash" && why.contains("SIGSEGV"), "{id}: {o} {why}");
    }
    for id in ["abi-not-initialized-C_GenerateRandom", "abi-bad-session-C_GenerateRandom", "abi-generate-random-null"] {
        let (o, why) = outcome(&report, id);
        assert!(o == "crash" && why.contains("did not answer within 2 s"), "{id}: {o} {why}");
    }
    // ... and the run went on: every case has a finding, and those after the crashes ran.
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(report["totals"]["crash"], 5, "{}", report["totals"]);
    assert_eq!(cases.len() as u64, report["totals"]["cases"].as_u64().expect("n"));
    assert!(cases.len() > 100, "the abi profile has {} cases", cases.len());
    assert_eq!(outcome(&report, "abi-get-info").0, "pass");
    assert_eq!(outcome(&report, "abi-bad-session-C_SignUpdate").0, "pass", "the case after a crash ran");
    // The broken module's own faults are found as well as its crashes.
    assert_eq!(outcome(&report, "abi-initialize-mutex-inconsistent").0, "fail");
    // The reports name the module.
    assert_eq!(report["module"]["library"], "hsmkit tests a deliberately broken module 0.0 (Cryptoki 2.40)");
    let junit = std::fs::read_to_string(&xml).expect("junit");
    assert_eq!(junit.matches("<error ").count(), 5, "{junit}");
    let markdown = std::fs::read_to_string(&md).expect("markdown");
    assert!(markdown.contains("does not conform") && markdown.contains("| `abi-bad-session-C_SignInit` | crash |"));
    assert!(stdout.contains("CRASH  abi-not-initialized-C_SignInit"), "{stdout}");
}

#[test]
fn the_kit_runs_green_on_libhsmkit_pkcs11_and_softhsm2_with_their_expectation_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("pin"), "1234\n").expect("pin");
    std::fs::write(d.join("so-pin"), "5678\n").expect("so pin");
    let (module, hsmkit_conf) = common::libhsmkit_token(d, "kit");
    let softhsm_conf = common::softhsm2_token(d, "kit");
    let expectations = repo().join("conformance/expectations");
    for (spec, file, env) in [
        (format!("pkcs11:{}", module.display()), "pkcs11-module.txt", ("HSMKIT_CONF", hsmkit_conf.as_path())),
        (
            "pkcs11:/usr/lib/softhsm/libsofthsm2.so".to_string(),
            "softhsm2.txt",
            ("SOFTHSM2_CONF", softhsm_conf.as_path()),
        ),
    ] {
        let out = conform(
            &[
                "--backend",
                &spec,
                "--token",
                "kit",
                "--login",
                "--pin-file",
                d.join("pin").to_str().expect("utf-8"),
                "--so-pin-file",
                d.join("so-pin").to_str().expect("utf-8"),
                "--expectations",
                expectations.join(file).to_str().expect("utf-8"),
                "--json",
                d.join("report.json").to_str().expect("utf-8"),
                "--junit",
                d.join("report.xml").to_str().expect("utf-8"),
            ],
            &[env],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{spec}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let report = check_reports(d);
        assert_eq!(report["ok"], true);
        // The ABI level ran (in a worker of its own), not skipped.
        let abi_run = report["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .filter(|c| c["profile"] == "abi" && (c["outcome"] == "pass" || c["outcome"] == "xfail"))
            .count();
        assert!(abi_run > 140, "{spec}: {abi_run} ABI cases ran");
        let total = report["cases"].as_array().expect("cases").len();
        assert!(total > 500, "{spec}: {total} cases");
        // The README's figure: over 150 cases at the ABI (the abi and objects profiles).
        let at_abi = report["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .filter(|c| c["profile"] == "abi" || c["profile"] == "objects")
            .count();
        assert!(at_abi > 150, "{spec}: {at_abi} ABI-level cases");
        let checks = report["totals"]["vector_checks"].as_u64().unwrap_or_default();
        // The emulator behind the .so takes every vector set's keys; SoftHSM2 lacks SHA-2 OAEP.
        let least = if spec.contains("softhsm") { 3_000 } else { 5_000 };
        assert!(checks > least, "{spec}: {checks} vector checks");
        let byok = report["cases"].as_array().expect("cases").iter().find(|c| c["profile"] == "byok").expect("byok");
        assert_eq!(byok["outcome"], "pass", "{spec}: {byok}");
        // Every case removed what it made: the token holds no object afterwards.
        let listed = Command::new("pkcs11-tool")
            .args(["--module", spec.trim_start_matches("pkcs11:"), "--token-label", "kit", "--login", "--pin", "1234"])
            .arg("--list-objects")
            .env(env.0, env.1)
            .output()
            .expect("pkcs11-tool");
        let objects = String::from_utf8_lossy(&listed.stdout);
        assert!(listed.status.success() && !objects.contains("Object;"), "{spec}: objects left: {objects}");
        assert!(
            report["module"]["library"].is_string()
                && !report["module"]["mechanisms"].as_array().expect("m").is_empty()
        );
    }
    // The token by slot id and the officer's PIN from the environment: byok (which needs the
    // officer) and the objects profile run the same.
    let out = conform(
        &[
            "--backend",
            &format!("pkcs11:{}", module.display()),
            "--slot",
            "0",
            "--login",
            "--pin-file",
            d.join("pin").to_str().expect("utf-8"),
            "--profile",
            "byok,objects",
            "--json",
            d.join("report.json").to_str().expect("utf-8"),
        ],
        &[("HSMKIT_CONF", hsmkit_conf.as_path()), ("HSMKIT_SO_PIN", Path::new("5678"))],
    );
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("report.json")).expect("report")).expect("JSON");
    assert_eq!(outcome(&report, "byok-transfer-unwraps-off-the-module").0, "pass", "{report}");
    assert_eq!(outcome(&report, "objects-copy-cannot-loosen").0, "pass", "{report}");
}

#[test]
fn the_kit_runs_green_on_nss_softokn_a_third_independent_module() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (module, init, label) = common::nss_token(d);
    let spec = format!("pkcs11:{}", module.display());
    let expectations = repo().join("conformance/expectations/nss.txt");
    // The PINs from the environment this time; NSS has no security officer PIN once the user's
    // is set, so the officer's cases are skipped.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hsmkit"));
    cmd.args(["conform", "--backend", &spec, "--token", label, "--init-args", &init, "--login"])
        .arg("--expectations")
        .arg(&expectations)
        .arg("--json")
        .arg(d.join("report.json"))
        .arg("--junit")
        .arg(d.join("report.xml"))
        .env("HSMKIT_USER_PIN", "1234")
        .env_remove("HSMKIT_PIN_FILE")
        .env_remove("HOME");
    let out = cmd.output().expect("run hsmkit conform");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("NSS softokn: {}", stdout.lines().rev().find(|l| l.contains(" passed, ")).unwrap_or_default());
    let report = check_reports(d);
    let library = report["module"]["library"].as_str().unwrap_or_default();
    assert!(library.contains("Mozilla") || library.contains("NSS"), "{library}");
    let ran = |profile: &str| {
        report["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .filter(|c| c["profile"] == profile && (c["outcome"] == "pass" || c["outcome"] == "xfail"))
            .count()
    };
    assert!(ran("abi") > 100 && ran("rsa") > 5, "abi {} rsa {}", ran("abi"), ran("rsa"));
}

#[test]
fn the_self_test_catches_every_planted_fault_and_a_smaller_selection_misses_some() {
    let out = conform(&["--self-test"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let caught = stdout.lines().filter(|l| l.trim_start().starts_with("caught")).count();
    assert!(caught >= 20 && !stdout.contains("MISSED"), "{stdout}");
    assert!(stdout.contains(&format!("mutation score: {caught}/{caught} faults caught")), "{stdout}");
    // Faults under the C ABI (the emulator's, linked in), each caught by the case that checks
    // what it breaks.
    abi_faults_caught_by_their_cases(&stdout);
    // The policy profile alone cannot see a flipped signature bit: the self-test says so.
    let out = conform(&["--self-test", "--profile", "policy"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("MISSED  signature-bit-flip") && stdout.contains("caught  ignore-cka-sign"), "{stdout}");
    // Without the abi profile, the faults under the C ABI go unseen.
    assert!(stdout.contains("MISSED  abi-size-query-ends-operation"), "{stdout}");
    // On a pkcs11: backend the layer goes over that module's function list (here the .so).
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(d.join("pin"), "1234\n").expect("pin");
    let (module, hsmkit_conf) = common::libhsmkit_token(d, "kit");
    let spec = format!("pkcs11:{}", module.display());
    let pin = d.join("pin");
    let args = [
        "--self-test",
        "--backend",
        &spec,
        "--token",
        "kit",
        "--login",
        "--pin-file",
        pin.to_str().expect("utf-8"),
        "--profile",
        "abi",
    ];
    let out = conform(&args, &[("HSMKIT_CONF", hsmkit_conf.as_path())]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    abi_faults_caught_by_their_cases(&stdout);
}

/// Each fault planted under the C ABI is caught, and by the case that checks what it breaks.
fn abi_faults_caught_by_their_cases(stdout: &str) {
    for (fault, case) in [
        ("abi-error-keeps-operation", "abi-sign-ends-after-error"),
        ("abi-size-query-ends-operation", "abi-sign-size-query"),
        ("abi-short-buffer-ends-operation", "abi-sign-size-query"),
        ("abi-second-init-accepted", "abi-sign-init-twice"),
        ("abi-no-init-check", "abi-not-initialized-C_GetSessionInfo"),
        ("abi-bad-handle-general-error", "abi-bad-session-C_CloseSession"),
        ("abi-unavailable-not-marked", "abi-attribute-sensitive-and-unknown"),
        ("abi-find-without-init", "abi-find-objects-protocol"),
        ("abi-slot-list-overcount", "abi-slot-list-size-query"),
    ] {
        let line = stdout.lines().find(|l| l.trim_start().starts_with(&format!("caught  {fault} ")));
        assert!(line.is_some_and(|l| l.ends_with(&format!("by {case}"))), "{fault}: {line:?}\n{stdout}");
    }
}
