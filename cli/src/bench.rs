//! `hsmkit bench`: the wrap and sign paths on every backend given, side by side, with the AWS-LC
//! reference row; the measuring is `hsmkit_benches`' (the same on every backend).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use hsmkit_backend::{Backend, Error, ErrorKind, Op, Pin, Result};
use hsmkit_benches::{BenchOp, Report, Row, Settings};
use hsmkit_transfer::engine::Officer;

use crate::Global;
use crate::pins::PinSource;

/// `bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A backend to measure (repeat for several; the first is the one the others are compared
    /// to): `emulator` (a throwaway world), `emulator:KMDATA`, `pkcs11:/path/to/module.so`.
    #[arg(long = "backend", default_value = "emulator")]
    pub(crate) backends: Vec<String>,
    /// The token of the PKCS#11 backends (default: each module's first).
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// Operations, comma-separated (default: one of each path); `--op list` lists them.
    #[arg(long = "op", value_delimiter = ',')]
    pub(crate) ops: Vec<String>,
    /// Thread counts, comma-separated: each thread has its own session.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub(crate) threads: Vec<usize>,
    /// Seconds measured per cell (split into interleaved rounds).
    #[arg(long, default_value_t = 3.0)]
    pub(crate) duration: f64,
    /// Interleaved rounds per cell.
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: u32,
    /// Leave out the AWS-LC reference row.
    #[arg(long)]
    pub(crate) no_reference: bool,
    /// A file whose first line is the security officer's PIN (on an emulator world, the card
    /// PINs joined by commas): the package step narrows a key once, which the officer approves.
    /// Without it, the package step runs only on the throwaway `emulator`.
    #[arg(long, value_name = "FILE")]
    pub(crate) so_pin_file: Option<PathBuf>,
    /// Write the results as JSON (schema in docs/bench-json.md).
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Write a bar chart (SVG).
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<PathBuf>,
}

/// The throwaway world's card PIN.
const CARD_PIN: &str = "bench";

/// The first line of the security officer's PIN file.
fn read_so_pin(path: &std::path::Path) -> Result<Pin> {
    let text = zeroize::Zeroizing::new(
        hsmkit_emulator::fsio::read_text_bounded(path, hsmkit_emulator::fsio::MAX_TEXT_BYTES).map_err(|e| {
            Error::new(ErrorKind::NotFound, Op::Login)
                .detail(format!("cannot read the security officer's PIN file {}: {e}", path.display()))
                .hint("give --so-pin-file FILE with the PIN on its first line")
        })?,
    );
    match text.lines().next().map(|l| l.trim_end_matches('\r')) {
        Some(line) if !line.is_empty() => Ok(Pin::from(line.to_string())),
        _ => Err(Error::new(ErrorKind::ArgumentsBad, Op::Login)
            .detail(format!("the security officer's PIN file {} is empty", path.display()))
            .hint("put the PIN on the file's first line")),
    }
}

fn bad(detail: String, hint: &str) -> Error {
    Error::new(ErrorKind::ArgumentsBad, Op::Info).detail(detail).hint(hint.to_string())
}

/// The operations `names` asks for.
fn parse_ops(names: &[String]) -> Result<Vec<BenchOp>> {
    if names.is_empty() {
        return Ok(BenchOp::DEFAULT.to_vec());
    }
    let mut out = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let op = BenchOp::parse(n)?;
        if !out.contains(&op) {
            out.push(op);
        }
    }
    Ok(out)
}

/// A backend of the run, and what keeps it alive (a throwaway world's folder).
struct Opened {
    name: String,
    backend: Box<dyn Backend>,
    /// The throwaway world's card, which approves its narrowings.
    officer: Option<Officer>,
    _dir: Option<tempfile::TempDir>,
}

fn open(spec: &str, g: &Global, token: Option<&str>) -> Result<Opened> {
    if spec == "emulator" {
        // A throwaway world (1/1 card, module protection), so a bench never touches real keys.
        let dir = tempfile::tempdir()
            .map_err(|e| Error::new(ErrorKind::Io, Op::Initialize).detail(format!("a temporary folder: {e}")))?;
        let kmdata = dir.path().join("kmdata");
        hsmkit_emulator::fsio::create_private_dir(&kmdata)
            .map_err(|e| Error::new(ErrorKind::Io, Op::Initialize).detail(format!("{}: {e}", kmdata.display())))?;
        let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(&kmdata))?;
        emu.create_world(
            hsmkit_emulator::suite::CipherSuite::DLf3072s256mAEScSP800131Ar1,
            hsmkit_emulator::world::Quorum { k: 1, n: 1 },
            &[Pin::from(CARD_PIN.to_string())],
        )?;
        return Ok(Opened {
            name: "emulator (in process)".into(),
            backend: Box::new(emu),
            officer: Some(Officer::Cards(vec![(1, Pin::from(CARD_PIN.to_string()))])),
            _dir: Some(dir),
        });
    }
    let backend = crate::backends::open(spec, g, token)?;
    let name = match spec.strip_prefix("pkcs11:") {
        Some(path) => {
            let file = std::path::Path::new(path).file_name().map(|f| f.to_string_lossy().into_owned());
            format!("{} (PKCS#11)", file.unwrap_or_else(|| path.to_string()))
        }
        None => spec.to_string(),
    };
    Ok(Opened { name, backend, officer: None, _dir: None })
}

pub fn run(g: &Global, a: &BenchArgs) -> Result<()> {
    if a.ops.iter().any(|o| o == "list") {
        for op in BenchOp::ALL {
            println!("{op}");
        }
        return Ok(());
    }
    let ops = parse_ops(&a.ops)?;
    if a.threads.is_empty() || a.threads.iter().any(|t| *t == 0 || *t > 256) {
        return Err(bad(format!("threads {:?}", a.threads), "give thread counts from 1 to 256, e.g. --threads 1,2"));
    }
    if !(a.duration > 0.0 && a.duration <= 3600.0) || a.rounds == 0 || a.rounds > 100 {
        return Err(bad(
            format!("duration {} s in {} rounds", a.duration, a.rounds),
            "give --duration between 0 and 3600 seconds and --rounds from 1 to 100",
        ));
    }
    let mut opened = Vec::new();
    for spec in &a.backends {
        opened.push(open(spec, g, a.token.as_deref())?);
    }
    let so_pin = a.so_pin_file.as_deref().map(read_so_pin).transpose()?;
    let mut pins: Option<PinSource> = None;
    let mut user_pin = None;
    let mut rows = Vec::new();
    for o in &opened {
        let slot = *o.backend.slots()?.first().ok_or_else(|| {
            Error::new(ErrorKind::TokenNotPresent, Op::Initialize).detail(format!("{} has no token", o.name))
        })?;
        let pin = if o.backend.info()?.login_required {
            if user_pin.is_none() {
                let source = pins.get_or_insert(PinSource::from(g)?);
                user_pin = Some(source.next("the tokens' user", false)?);
            }
            user_pin.clone()
        } else {
            None
        };
        let officer = o.officer.clone().or_else(|| so_pin.clone().map(Officer::Pin));
        if officer.is_none() && ops.contains(&BenchOp::Package) {
            eprintln!(
                "note: {} is left out of {}: it narrows a key, which the security officer approves (give --so-pin-file)",
                o.name,
                BenchOp::Package
            );
        }
        rows.push(Row::Backend { name: o.name.clone(), backend: o.backend.as_ref(), slot, pin, officer });
    }
    if !a.no_reference {
        rows.push(Row::Reference);
    }
    let settings = Settings {
        duration: Duration::from_secs_f64(a.duration),
        rounds: a.rounds,
        warmup: Duration::from_millis(200),
        threads: a.threads.clone(),
    };
    let names: Vec<String> = rows.iter().map(Row::name).collect();
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |p: &hsmkit_benches::run::Progress| {
        let mut err = std::io::stderr().lock();
        if terminal {
            let width = 30;
            let filled = (p.done * width).checked_div(p.total).unwrap_or(width);
            let _ = write!(
                err,
                "\r\x1b[2K[{}{}] {}/{} {}",
                "#".repeat(filled),
                ".".repeat(width - filled),
                p.done,
                p.total,
                p.current
            );
            if p.done == p.total {
                let _ = writeln!(err);
            }
        } else if !p.current.is_empty() {
            let _ = writeln!(err, "[{}/{}] {}", p.done + 1, p.total, p.current);
        }
    };
    let cells = hsmkit_benches::run::run(&rows, &ops, &settings, &mut progress)?;
    let report = Report::new(names, cells, &settings);
    print!("{}", report.table());
    let write = |path: &PathBuf, text: String| {
        hsmkit_emulator::fsio::write_atomic(path, text.as_bytes(), &Default::default())
            .map_err(|e| Error::new(ErrorKind::Io, Op::Info).detail(format!("cannot write {}: {e}", path.display())))
    };
    if let Some(path) = &a.json {
        write(path, report.json())?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &a.plot {
        let svg = report.svg().map_err(|e| Error::new(ErrorKind::Device, Op::Info).detail(format!("the plot: {e}")))?;
        write(path, svg)?;
        println!("wrote {}", path.display());
    }
    if report.cells.iter().any(|c| c.error.is_some()) {
        return Err(Error::new(ErrorKind::FunctionFailed, Op::Info)
            .detail("some cells failed (marked FAILED above)")
            .hint("a backend that lacks a mechanism fails its cells; choose operations with --op"));
    }
    Ok(())
}
