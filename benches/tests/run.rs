//! The runner and its reports: cells measured on the emulator and the reference, ratios taken
//! to the right rows, the JSON's schema, one bar per cell in the SVG, and a backend that fails
//! mid-run giving failed cells, not a crash.

use std::time::Duration;

use hsmkit_benches::{BenchOp, Report, Row, Settings};

fn emulator(dir: &std::path::Path) -> hsmkit_emulator::Emulator {
    let kmdata = dir.join("kmdata");
    std::fs::create_dir(&kmdata).expect("kmdata");
    let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(&kmdata)).expect("emulator");
    emu.create_world(
        hsmkit_emulator::suite::CipherSuite::DLf3072s256mAEScSP800131Ar1,
        hsmkit_emulator::world::Quorum { k: 1, n: 1 },
        &[hsmkit_backend::Pin::from("p".to_string())],
    )
    .expect("world");
    emu
}

fn quick(threads: Vec<usize>) -> Settings {
    Settings { duration: Duration::from_millis(120), rounds: 2, warmup: Duration::from_millis(10), threads }
}

#[test]
fn cells_ratios_json_and_svg() {
    let dir = tempfile::tempdir().expect("tmp");
    let emu = emulator(dir.path());
    let rows = vec![
        Row::Backend { name: "emulator".into(), backend: &emu, slot: hsmkit_emulator::SLOT, pin: None, officer: None },
        Row::Reference,
    ];
    let ops = [BenchOp::SignPkcs1(2048), BenchOp::WrapAesKwp, BenchOp::Noop];
    let mut seen = Vec::new();
    let cells =
        hsmkit_benches::run::run(&rows, &ops, &quick(vec![1, 2]), &mut |p| seen.push((p.done, p.total))).expect("run");
    // 2 ops x 2 thread counts x 2 rows, and noop on the reference only x 2 thread counts.
    assert_eq!(cells.len(), 10, "{cells:#?}");
    assert!(cells.iter().all(|c| c.error.is_none() && c.calls > 0 && c.ops_per_sec > 0.0), "{cells:#?}");
    assert!(cells.iter().all(|c| c.median_ns > 0 && c.p99_ns >= c.median_ns && c.round_rates.len() == 2));
    assert_eq!(seen.last(), Some(&(20, 20)), "progress reaches the end: 10 cells x 2 rounds");
    // The harness's own cost per call: the noop cell's median.
    let noop = cells.iter().find(|c| c.op == "noop" && c.threads == 1).expect("noop");
    assert!(noop.median_ns < 1_000, "the harness costs {} ns a call", noop.median_ns);
    let settings = quick(vec![1, 2]);
    let report = Report::new(rows.iter().map(Row::name).collect(), cells, &settings);
    let sign = report.cells.iter().find(|c| c.row == "emulator" && c.op == "sign-pkcs1-2048" && c.threads == 1);
    let sign = sign.expect("cell");
    let reference = report.cells.iter().find(|c| c.row.starts_with("reference") && c.op == sign.op && c.threads == 1);
    let want = sign.ops_per_sec / reference.expect("ref").ops_per_sec;
    assert!((report.ratio(sign, "reference (AWS-LC)").expect("ratio") - want).abs() < 1e-9);
    let table = report.table();
    assert!(table.contains("sign-pkcs1-2048") && table.contains("vs ref"), "{table}");
    // JSON: the documented schema.
    let v: serde_json::Value = serde_json::from_str(&report.json()).expect("JSON");
    assert_eq!(v["schema"], "hsmkit-bench/1");
    assert_eq!(v["rows"][0], "emulator");
    let cell = &v["cells"][0];
    for field in ["row", "op", "threads", "ops_per_sec", "median_ns", "p99_ns", "calls", "round_rates", "spread"] {
        assert!(!cell[field].is_null(), "cell field {field}: {cell}");
    }
    // SVG: parses, and has one bar per cell: each row's colour fills its bars and its legend
    // swatch.
    let svg = report.svg().expect("svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for (r, name) in report.rows.iter().enumerate() {
        use plotters::style::{Color as _, Palette as _};
        let (red, green, blue) = plotters::style::Palette99::pick(r).to_rgba().rgb();
        let fill = format!("fill=\"#{red:02X}{green:02X}{blue:02X}\"");
        let drawn = svg.matches(&fill).count();
        let cells = report.cells.iter().filter(|c| &c.row == name).count();
        assert_eq!(drawn, cells + 1, "{name}: {cells} bars and a legend swatch, {drawn} drawn");
    }
}

#[test]
fn a_backend_that_fails_mid_run_gives_failed_cells_not_a_crash() {
    let dir = tempfile::tempdir().expect("tmp");
    let emu = emulator(dir.path());
    let rows = vec![
        Row::Backend { name: "emulator".into(), backend: &emu, slot: hsmkit_emulator::SLOT, pin: None, officer: None },
        Row::Reference,
    ];
    let ops = [BenchOp::SignPkcs1(2048)];
    let settings =
        Settings { duration: Duration::from_millis(600), rounds: 6, warmup: Duration::ZERO, threads: vec![1] };
    let mut switched = false;
    let cells = hsmkit_benches::run::run(&rows, &ops, &settings, &mut |p| {
        // Halfway, the module leaves operational mode: every later call on it fails.
        if !switched && p.done >= p.total / 2 {
            emu.set_mode(hsmkit_emulator::module::Mode::Maintenance).expect("mode");
            switched = true;
        }
    })
    .expect("the run completes");
    let failed = cells.iter().find(|c| c.row == "emulator").expect("cell");
    assert!(failed.error.as_deref().is_some_and(|e| e.contains("operational")), "{failed:?}");
    let reference = cells.iter().find(|c| c.row.starts_with("reference")).expect("cell");
    assert!(reference.error.is_none() && reference.calls > 0, "{reference:?}");
    let report = Report::new(rows.iter().map(Row::name).collect(), cells, &settings);
    assert!(report.table().contains("FAILED"));
    report.svg().expect("a chart with a failed cell");
}

#[test]
fn a_cell_whose_rounds_disagree_is_flagged_and_one_that_agrees_is_not() {
    let cell = |row: &str, rates: Vec<f64>, spread: f64| hsmkit_benches::Cell {
        row: row.into(),
        op: "sign-pkcs1-2048".into(),
        threads: 1,
        ops_per_sec: rates.iter().sum::<f64>() / rates.len() as f64,
        median_ns: 1_000,
        p99_ns: 2_000,
        calls: 100,
        round_rates: rates,
        spread,
        how: None,
        error: None,
    };
    let cells =
        vec![cell("steady", vec![1000.0, 1010.0, 990.0], 0.02), cell("noisy", vec![1000.0, 600.0, 900.0], 0.44)];
    let report = Report::new(vec!["steady".into(), "noisy".into()], cells, &quick(vec![1]));
    let table = report.table();
    let warnings: Vec<&str> = table.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{table}");
    assert!(warnings[0].contains("noisy") && warnings[0].contains("44%") && warnings[0].contains("cannot be trusted"));
    // The ratio to the first row: the noisy row's mean rate over the steady row's.
    assert!(table.lines().any(|l| l.contains("noisy") && l.contains("0.83x")), "{table}");
}

/// The files under the module's kmdata, sorted (what a bench must leave as it found).
fn kmdata_files(dir: &std::path::Path) -> Vec<String> {
    fn walk(d: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).expect("kmdata") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    let mut names = Vec::new();
    walk(&dir.join("kmdata"), &mut names);
    names.sort();
    names
}

#[test]
fn the_package_step_runs_through_the_engine_and_leaves_the_module_as_found() {
    use hsmkit_transfer::engine::Officer;
    let dir = tempfile::tempdir().expect("tmp");
    let emu = emulator(dir.path());
    let before = kmdata_files(dir.path());
    let cards = Officer::Cards(vec![(1, hsmkit_backend::Pin::from("p".to_string()))]);
    let rows = vec![
        Row::Backend {
            name: "emulator".into(),
            backend: &emu,
            slot: hsmkit_emulator::SLOT,
            pin: None,
            officer: Some(cards),
        },
        // Without an officer the row does not run the package step; the reference never does.
        Row::Backend {
            name: "no officer".into(),
            backend: &emu,
            slot: hsmkit_emulator::SLOT,
            pin: None,
            officer: None,
        },
        Row::Reference,
    ];
    let cells = hsmkit_benches::run::run(&rows, &[BenchOp::Package], &quick(vec![1, 2]), &mut |_| {}).expect("run");
    assert_eq!(cells.len(), 2, "the emulator row at 1 and 2 threads only: {cells:#?}");
    assert!(cells.iter().all(|c| c.row == "emulator" && c.error.is_none() && c.calls > 0), "{cells:#?}");
    // Each worker generated, narrowed and packaged a key of its own; all of it is gone again.
    assert!(before.iter().any(|f| f.contains("world")), "{before:?}");
    assert_eq!(kmdata_files(dir.path()), before, "the bench left keys behind");
    // Without an officer, a worker says what it needs.
    let lone =
        [Row::Backend { name: "x".into(), backend: &emu, slot: hsmkit_emulator::SLOT, pin: None, officer: None }];
    let material = hsmkit_benches::ops::Material::for_ops(&[BenchOp::Package]).expect("material");
    let err = lone[0].worker(BenchOp::Package, &material).err().expect("refused");
    assert!(err.to_string().contains("security officer"), "{err}");
}
