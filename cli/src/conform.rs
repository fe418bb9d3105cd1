//! `hsmkit conform`: the conformance kit on a backend, with its reports. On a PKCS#11 module the
//! cases run in worker processes of this same command (`--worker`), so a module that crashes or
//! hangs costs the case that was running, not the run.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hsmkit_backend::{Error, ErrorKind, Op, Pin, Result};
use hsmkit_conformance::abi::{AbiCtx, Module};
use hsmkit_conformance::{Case, Ctx, Event, Expectations, Finding, ModuleInfo, Profile, Report, Target};
use secrecy::ExposeSecret as _;
use zeroize::Zeroizing;

use crate::Global;
use crate::pins::PinSource;

/// `conform` arguments.
#[derive(Debug, clap::Args)]
pub struct ConformArgs {
    /// The backend: emulator, emulator:KMDATA, pkcs11:/path/to/module.so
    #[arg(long, default_value = "emulator")]
    pub(crate) backend: String,
    /// The token label (PKCS#11 modules; default: the first token).
    #[arg(long, conflicts_with = "slot")]
    pub(crate) token: Option<String>,
    /// The slot id of the token (instead of --token).
    #[arg(long)]
    pub(crate) slot: Option<u64>,
    /// Log in as the user with the first PIN of the PIN file (else HSMKIT_USER_PIN, else a prompt).
    #[arg(long)]
    pub(crate) login: bool,
    /// A file whose first line is the security officer's PIN (else HSMKIT_SO_PIN); the cases
    /// that need the officer are skipped without it.
    #[arg(long, value_name = "FILE")]
    pub(crate) so_pin_file: Option<PathBuf>,
    /// An expectation file: declared deviations with reasons.
    #[arg(long, value_name = "FILE")]
    pub(crate) expectations: Option<PathBuf>,
    /// Profiles to run, comma-separated (default: all): abi, objects, rsa, keywrap, mechanisms,
    /// vectors, policy, byok, world.
    #[arg(long = "profile", value_delimiter = ',')]
    pub(crate) profiles: Vec<String>,
    /// The string a module needs in C_Initialize's pReserved (NSS softokn:
    /// "configdir='sql:DIR' certPrefix='' keyPrefix='' secmod='secmod.db' flags=noModDB").
    #[arg(long, value_name = "STRING")]
    pub(crate) init_args: Option<String>,
    /// Write the report as JSON (schema in docs/conform-json.md).
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Write the report as JUnit XML.
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,
    /// Write the report as Markdown.
    #[arg(long, value_name = "FILE")]
    pub(crate) markdown: Option<PathBuf>,
    /// Seconds a case may take before the module is declared hung (PKCS#11 modules).
    #[arg(long, default_value_t = 120)]
    pub(crate) case_timeout: u64,
    /// Run a PKCS#11 module's cases in this process (no crash survival).
    #[arg(long)]
    pub(crate) no_isolate: bool,
    /// The kit's self-test: plant each of its faults in the backend in turn (on `emulator`, a
    /// throwaway world) and print which cases caught which fault, and the mutation score.
    #[arg(long)]
    pub(crate) self_test: bool,
    /// Internal: run as a worker of a parent `hsmkit conform` (PINs on standard input).
    #[arg(long, hide = true)]
    pub(crate) worker: bool,
    /// Internal: the case a worker resumes after.
    #[arg(long, hide = true)]
    pub(crate) resume_after: Option<String>,
}

impl ConformArgs {
    fn module_options(&self) -> crate::backends::ModuleOptions<'_> {
        crate::backends::ModuleOptions {
            token: self.token.as_deref(),
            slot: self.slot,
            init_args: self.init_args.as_deref(),
        }
    }
}

fn bad(detail: String, hint: &str) -> Error {
    Error::new(ErrorKind::ArgumentsBad, Op::Info).detail(detail).hint(hint.to_string())
}

/// The PINs of a run.
struct Pins {
    user: Option<Pin>,
    so: Option<Pin>,
}

fn first_line(path: &std::path::Path, what: &str) -> Result<Pin> {
    let text = Zeroizing::new(
        hsmkit_emulator::fsio::read_text_bounded(path, hsmkit_emulator::fsio::MAX_TEXT_BYTES).map_err(|e| {
            Error::new(ErrorKind::NotFound, Op::Login)
                .detail(format!("cannot read the {what} file {}: {e}", path.display()))
        })?,
    );
    match text.lines().next().map(|l| l.trim_end_matches('\r')) {
        Some(l) if !l.is_empty() => Ok(Pin::from(l.to_string())),
        _ => Err(bad(format!("the {what} file {} is empty", path.display()), "put the PIN on its first line")),
    }
}

impl Pins {
    fn gather(g: &Global, a: &ConformArgs) -> Result<Pins> {
        let user = if !a.login {
            None
        } else if g.pin_file.is_none()
            && std::env::var_os("HSMKIT_PIN_FILE").is_none()
            && let Ok(p) = std::env::var("HSMKIT_USER_PIN")
        {
            Some(Pin::from(p))
        } else {
            Some(PinSource::from(g)?.next("the token's user", false)?)
        };
        let so = match &a.so_pin_file {
            Some(path) => Some(first_line(path, "security officer's PIN")?),
            None => std::env::var("HSMKIT_SO_PIN").ok().map(Pin::from),
        };
        Ok(Pins { user, so })
    }

    /// A worker's PINs, from its standard input: two lines, user and officer, each `-` for none.
    fn from_stdin() -> Result<Pins> {
        let mut text = Zeroizing::new(String::new());
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
            .map_err(|e| Error::new(ErrorKind::Io, Op::Login).detail(format!("a worker's PINs: {e}")))?;
        let mut lines = text.lines();
        let mut next = || match lines.next() {
            Some("-") | None => None,
            Some(l) => l.strip_prefix('+').map(|p| Pin::from(p.to_string())),
        };
        Ok(Pins { user: next(), so: next() })
    }

    fn to_stdin(&self) -> Zeroizing<Vec<u8>> {
        let line = |p: &Option<Pin>| p.as_ref().map_or("-".to_string(), |p| format!("+{}", p.expose_secret()));
        Zeroizing::new(format!("{}\n{}\n", line(&self.user), line(&self.so)).into_bytes())
    }
}

fn expectations(a: &ConformArgs) -> Result<Expectations> {
    Ok(match &a.expectations {
        Some(f) => {
            let text =
                hsmkit_emulator::fsio::read_text_bounded(f, hsmkit_emulator::fsio::MAX_TEXT_BYTES).map_err(|e| {
                    Error::new(ErrorKind::NotFound, Op::Info).detail(format!("cannot read {}: {e}", f.display()))
                })?;
            Expectations::parse(&f.display().to_string(), &text)
                .map_err(|e| Error::new(ErrorKind::ArgumentsBad, Op::Info).detail(e))?
        }
        // The emulator's own deviations ship with hsmkit.
        None if a.backend.starts_with("emulator") => {
            Expectations::builtin("emulator").unwrap_or_else(Expectations::none)
        }
        None => Expectations::none(),
    })
}

fn profiles(a: &ConformArgs) -> Result<Vec<Profile>> {
    let mut out = Vec::new();
    for name in a.profiles.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let p = Profile::parse(name).map_err(|e| bad(e, "choose profiles with --profile NAME[,NAME]"))?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Prints progress on standard error: a bar on a terminal, a line per case otherwise.
struct Progress {
    terminal: bool,
    done: usize,
    total: usize,
}

impl Progress {
    fn event(&mut self, e: &Event<'_>) {
        let mut err = std::io::stderr().lock();
        match e {
            Event::Start(case) if self.terminal => {
                let width = 30;
                let filled = (self.done * width).checked_div(self.total).unwrap_or(width);
                let _ = write!(
                    err,
                    "\r\x1b[2K[{}{}] {}/{} {}",
                    "#".repeat(filled),
                    ".".repeat(width - filled),
                    self.done,
                    self.total,
                    case.id
                );
            }
            Event::Start(_) => {}
            Event::End(f) => {
                self.done += 1;
                if !self.terminal {
                    let _ = writeln!(err, "[{}/{}] {} {}", self.done, self.total, f.outcome.name(), f.id);
                } else if self.done == self.total {
                    let _ = writeln!(err, "\r\x1b[2K[{}] {}/{}", "#".repeat(30), self.done, self.total);
                }
            }
        }
    }
}

pub fn conform(g: &Global, a: &ConformArgs) -> Result<()> {
    let selected = profiles(a)?;
    let cases = hsmkit_conformance::select(&selected);
    if a.self_test {
        return self_test(g, a, &cases);
    }
    let expectations = expectations(a)?;
    if a.worker {
        return worker(g, a, &cases, &expectations);
    }
    let pins = Pins::gather(g, a)?;
    let module_path = a.backend.strip_prefix("pkcs11:").map(PathBuf::from);
    if let Some(path) = &module_path {
        // A path that is no module fails here, once, rather than in every worker.
        if !path.is_file() {
            return Err(Error::new(ErrorKind::NotFound, Op::Initialize)
                .detail(format!("there is no PKCS#11 module at {}", path.display()))
                .hint("give the path of a module (.so), for example /usr/lib/softhsm/libsofthsm2.so"));
        }
        Module::load(path, None).map_err(|e| Error::new(ErrorKind::Device, Op::Initialize).detail(e))?;
    } else {
        // The same words as every other command's, before any case runs (an emulator whose
        // kmdata folder does not exist, or that holds no world, fails here, not case by case).
        let backend = crate::backends::open_with(&a.backend, g, &a.module_options())?;
        let slot = *backend.slots()?.first().ok_or_else(|| Error::new(ErrorKind::TokenNotPresent, Op::Info))?;
        drop(backend.open_session(slot, hsmkit_backend::SessionMode::ReadOnly)?);
    }
    let mut progress = Progress { terminal: std::io::stderr().is_terminal(), done: 0, total: cases.len() };
    let (module, findings) = match &module_path {
        Some(_) if !a.no_isolate => isolated(g, a, &cases, &expectations, &pins, &mut progress),
        _ => in_process(g, a, &cases, &expectations, &pins, &mut progress)?,
    };
    let report = Report::new(module, selected, findings);
    print!("{report}");
    let write = |path: &PathBuf, text: String| {
        hsmkit_emulator::fsio::write_atomic(path, text.as_bytes(), &Default::default())
            .map_err(|e| Error::new(ErrorKind::Io, Op::Info).detail(format!("cannot write {}: {e}", path.display())))
    };
    for (path, text) in [(&a.json, report.json()), (&a.junit, report.junit()), (&a.markdown, report.markdown())] {
        if let Some(path) = path {
            write(path, text)?;
            println!("wrote {}", path.display());
        }
    }
    if report.ok() {
        println!("Result: SUCCESS");
        Ok(())
    } else {
        Err(Error::new(ErrorKind::FunctionFailed, Op::Info)
            .detail(format!("the backend {} does not conform (see the FAIL, XPASS and CRASH lines)", a.backend)))
    }
}

/// The module's description for the report: through the seam, and its library line through the
/// ABI where it is a PKCS#11 module.
fn describe(g: &Global, a: &ConformArgs) -> ModuleInfo {
    // The library line first, while the module is not yet initialised by the seam's client.
    let mut library = None;
    if let Some(path) = a.backend.strip_prefix("pkcs11:")
        && let Ok(m) = Module::load(std::path::Path::new(path), a.init_args.as_deref())
    {
        match m.initialize() {
            cryptoki_sys::CKR_OK => {
                library = m.library_line();
                m.finalize();
            }
            cryptoki_sys::CKR_CRYPTOKI_ALREADY_INITIALIZED => library = m.library_line(),
            _ => {}
        }
    }
    let mut info = match crate::backends::open_with(&a.backend, g, &a.module_options()) {
        Ok(b) => ModuleInfo::of(&a.backend, b.as_ref()),
        Err(e) => ModuleInfo { backend: a.backend.clone(), token: format!("unreadable: {e}"), ..ModuleInfo::default() },
    };
    info.library = library;
    info
}

/// The cases in this process.
fn in_process(
    g: &Global,
    a: &ConformArgs,
    cases: &[Case],
    expectations: &Expectations,
    pins: &Pins,
    progress: &mut Progress,
) -> Result<(ModuleInfo, Vec<Finding>)> {
    let mut events = |e: Event<'_>| progress.event(&e);
    let mut findings = run_abi_then_seam(g, a, cases, expectations, pins, &mut events)?;
    let info = describe(g, a);
    // Report order: the suite's.
    let order: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    findings.sort_by_key(|f| order.iter().position(|id| *id == f.id));
    Ok((info, findings))
}

/// The cases in worker processes, one group per profile, each resumed after a crash.
fn isolated(
    g: &Global,
    a: &ConformArgs,
    cases: &[Case],
    expectations: &Expectations,
    pins: &Pins,
    progress: &mut Progress,
) -> (ModuleInfo, Vec<Finding>) {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hsmkit"));
    let stdin = pins.to_stdin();
    let mut findings = Vec::new();
    for profile in Profile::ALL {
        let group: Vec<Case> = cases.iter().filter(|c| c.profile == *profile).cloned().collect();
        if group.is_empty() {
            continue;
        }
        let worker = |after: Option<&str>| {
            let mut cmd = Command::new(&exe);
            if let Some(k) = &g.kmdata {
                cmd.arg("--kmdata").arg(k);
            }
            cmd.args(["conform", "--worker", "--backend", &a.backend, "--profile", profile.name()]);
            if let Some(t) = &a.token {
                cmd.args(["--token", t]);
            }
            if let Some(slot) = a.slot {
                cmd.args(["--slot", &slot.to_string()]);
            }
            if a.login {
                cmd.arg("--login");
            }
            if let Some(e) = &a.expectations {
                cmd.arg("--expectations").arg(e);
            }
            if let Some(i) = &a.init_args {
                cmd.args(["--init-args", i]);
            }
            if let Some(id) = after {
                cmd.args(["--resume-after", id]);
            }
            cmd
        };
        let mut events = |e: Event<'_>| progress.event(&e);
        findings.extend(hsmkit_conformance::isolate::run_isolated(
            &group,
            &worker,
            Some(stdin.as_slice()),
            Duration::from_secs(a.case_timeout.max(1)),
            &mut events,
        ));
    }
    // A crash the expectation file declares is an expected failure, with what happened.
    for f in &mut findings {
        if let (hsmkit_conformance::Outcome::Crashed(how), Some(hsmkit_conformance::Expectation::Fail(why))) =
            (&f.outcome, expectations.get(&f.id))
        {
            f.outcome = hsmkit_conformance::Outcome::ExpectedFailure(format!("{why} (here: {how})"));
        }
    }
    (describe_safely(g, a), findings)
}

/// The module's description, read in a worker too: a module that crashes on C_GetInfo does not
/// take the report with it.
fn describe_safely(g: &Global, a: &ConformArgs) -> ModuleInfo {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hsmkit"));
    let mut cmd = Command::new(exe);
    if let Some(k) = &g.kmdata {
        cmd.arg("--kmdata").arg(k);
    }
    cmd.args(["conform", "--worker", "--backend", &a.backend, "--profile", "world", "--resume-after", DESCRIBE]);
    if let Some(t) = &a.token {
        cmd.args(["--token", t]);
    }
    if let Some(slot) = a.slot {
        cmd.args(["--slot", &slot.to_string()]);
    }
    if let Some(i) = &a.init_args {
        cmd.args(["--init-args", i]);
    }
    let described = cmd
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<ModuleInfo>(&o.stdout).ok());
    described.unwrap_or_else(|| ModuleInfo {
        backend: a.backend.clone(),
        token: "unknown: the module could not be described (it crashed or failed in C_GetInfo or C_GetTokenInfo)"
            .into(),
        ..ModuleInfo::default()
    })
}

/// The `--resume-after` value that asks a worker for the module's description instead of cases.
const DESCRIBE: &str = "\u{1}describe";

/// A worker: runs the selection (after `--resume-after`), reporting each case on standard
/// output for the parent.
fn worker(g: &Global, a: &ConformArgs, cases: &[Case], expectations: &Expectations) -> Result<()> {
    if a.resume_after.as_deref() == Some(DESCRIBE) {
        let info = describe(g, a);
        println!("{}", serde_json::to_string(&info).unwrap_or_default());
        return Ok(());
    }
    let pins = Pins::from_stdin()?;
    let cases = hsmkit_conformance::isolate::resume_after(cases, a.resume_after.as_deref());
    let mut out = std::io::stdout().lock();
    let mut events = hsmkit_conformance::isolate::worker_events(&mut out);
    run_abi_then_seam(g, a, cases, expectations, &pins, &mut events)?;
    Ok(())
}

/// `--self-test`: every planted fault must be caught by a case that passes without it.
fn self_test(g: &Global, a: &ConformArgs, cases: &[Case]) -> Result<()> {
    use hsmkit_conformance::abi_faults::{AbiFault, abi_self_test};
    use hsmkit_conformance::faults::{Fault, self_test};
    // The default backend is a throwaway world with a user PIN, so the login cases run too.
    let throwaway = if a.backend == "emulator" { Some(ThrowawayWorld::new()?) } else { None };
    let pins = match &throwaway {
        Some(_) => Pins {
            user: Some(Pin::from(ThrowawayWorld::USER_PIN.to_string())),
            so: Some(Pin::from(ThrowawayWorld::CARD_PIN.to_string())),
        },
        None => Pins::gather(g, a)?,
    };
    let total = Fault::ALL.len() + AbiFault::ALL.len();
    let mut n = 0;
    let mut result = {
        let opened;
        let (backend, slot): (&dyn hsmkit_backend::Backend, _) = match &throwaway {
            Some(t) => (&t.emu, hsmkit_emulator::SLOT),
            None => {
                opened = crate::backends::open_with(&a.backend, g, &a.module_options())?;
                let slot = *opened.slots()?.first().ok_or_else(|| Error::new(ErrorKind::TokenNotPresent, Op::Info))?;
                (opened.as_ref(), slot)
            }
        };
        self_test(backend, slot, pins.user.clone(), cases, Fault::ALL, &mut |f| {
            n += 1;
            eprintln!("[{n}/{total}] {}", f.name());
        })
        // The seam's client lets go of the module here, before the ABI level loads it.
    };
    // The ABI level: the faults planted under the module's C ABI (the emulator's linked in, or
    // the module of a pkcs11: backend), caught by the ABI-level cases.
    let module = match &throwaway {
        Some(t) => Some(linked_module(&hsmkit_emulator::Config::beside(&t.kmdata))),
        None => abi_module(g, a)?,
    };
    if let Some(module) = &module {
        let clean = AbiCtx {
            module,
            token: a.token.clone(),
            slot: a.slot,
            user_pin: pins.user.clone(),
            so_pin: pins.so.clone(),
        };
        let (passes, caught) = abi_self_test(&clean, cases, AbiFault::ALL, &mut |f| {
            n += 1;
            eprintln!("[{n}/{total}] {}", f.name());
        });
        result.abi_baseline_passes = passes;
        result.abi_faults = caught;
    }
    print!("{result}");
    let (caught, all) = result.score();
    if caught == all {
        println!("Result: SUCCESS");
        Ok(())
    } else {
        Err(Error::new(ErrorKind::FunctionFailed, Op::Info)
            .detail(format!("the kit missed {} of {all} planted faults (see the MISSED lines)", all - caught)))
    }
}

/// A world in a temporary folder with one card (PIN `card`) and a user PIN, for the self-test.
struct ThrowawayWorld {
    emu: hsmkit_emulator::Emulator,
    kmdata: PathBuf,
    _dir: tempfile::TempDir,
}

impl ThrowawayWorld {
    const USER_PIN: &'static str = "self-test-user";
    const CARD_PIN: &'static str = "card";

    fn new() -> Result<ThrowawayWorld> {
        use hsmkit_backend::{Backend as _, SessionMode, UserKind};
        let io =
            |e: std::io::Error| Error::new(ErrorKind::Io, Op::Initialize).detail(format!("a temporary folder: {e}"));
        let dir = tempfile::tempdir().map_err(io)?;
        let kmdata = dir.path().join("kmdata");
        hsmkit_emulator::fsio::create_private_dir(&kmdata).map_err(io)?;
        let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(&kmdata))?;
        let card = Pin::from(Self::CARD_PIN.to_string());
        emu.create_world(
            hsmkit_emulator::suite::CipherSuite::DLf3072s256mAEScSP800131Ar1,
            hsmkit_emulator::world::Quorum { k: 1, n: 1 },
            std::slice::from_ref(&card),
        )?;
        {
            let s = emu.open_session(hsmkit_emulator::SLOT, SessionMode::ReadWrite)?;
            s.login(UserKind::SecurityOfficer, &card)?;
            s.init_pin(&Pin::from(Self::USER_PIN.to_string()))?;
            s.logout()?;
        }
        Ok(ThrowawayWorld { emu, kmdata, _dir: dir })
    }
}

/// The module the ABI level drives: a `pkcs11:` backend's library, or the emulator's C ABI
/// linked in on the backend's kmdata.
fn abi_module(g: &Global, a: &ConformArgs) -> Result<Option<Module>> {
    match a.backend.strip_prefix("pkcs11:") {
        Some(path) => Module::load(std::path::Path::new(path), a.init_args.as_deref())
            .map(Some)
            .map_err(|e| Error::new(ErrorKind::Device, Op::Initialize).detail(e)),
        None => Ok(crate::backends::emulator_config(&a.backend, g)?.map(|config| linked_module(&config))),
    }
}

/// The emulator's C ABI on `config`'s world, linked into this process: the module
/// `libhsmkit_pkcs11.so` is built from, so the ABI level runs on the emulator backend without
/// loading a library, on the same NVRAM and cards as the seam level.
pub(crate) fn linked_module(config: &hsmkit_emulator::Config) -> Module {
    Module::from_list(
        "libhsmkit_pkcs11 (linked in)",
        hsmkit_pkcs11::in_process(config),
        Some((hsmkit_pkcs11::C_GetInterfaceList, hsmkit_pkcs11::C_GetInterface)),
    )
}

/// Runs `cases` in this process: the ABI-level ones first, through the module's raw function list
/// while nothing else has it initialised, then the seam-level ones through the backend. Within a
/// profile the suite orders them so already (a worker's order is the list's).
fn run_abi_then_seam(
    g: &Global,
    a: &ConformArgs,
    cases: &[Case],
    expectations: &Expectations,
    pins: &Pins,
    events: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<Finding>> {
    let (abi_cases, seam_cases): (Vec<Case>, Vec<Case>) =
        cases.iter().cloned().partition(|c| matches!(c.body, hsmkit_conformance::Body::Abi(_)));
    let mut findings = Vec::new();
    if !abi_cases.is_empty() {
        let module = abi_module(g, a)?;
        let abi = module.as_ref().map(|m| AbiCtx {
            module: m,
            token: a.token.clone(),
            slot: a.slot,
            user_pin: pins.user.clone(),
            so_pin: pins.so.clone(),
        });
        let target = Target { seam: None, abi: abi.as_ref() };
        findings.extend(hsmkit_conformance::run_cases(&abi_cases, target, expectations, events));
    }
    if !seam_cases.is_empty() {
        let backend = crate::backends::open_with(&a.backend, g, &a.module_options())?;
        let slot = *backend.slots()?.first().ok_or_else(|| Error::new(ErrorKind::TokenNotPresent, Op::Info))?;
        let ctx = || Ctx::new(backend.as_ref(), slot, pins.user.clone()).with_so_pin(pins.so.clone());
        if a.backend.starts_with("emulator") && !a.worker {
            // The emulator's sessions run side by side: the cases take a thread a core. (Not in
            // a worker, whose protocol names cases one at a time, in order.)
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            findings.extend(hsmkit_conformance::run_cases_parallel(&seam_cases, &ctx, threads, expectations, events));
        } else {
            let ctx = ctx();
            let target = Target { seam: Some(&ctx), abi: None };
            findings.extend(hsmkit_conformance::run_cases(&seam_cases, target, expectations, events));
        }
    }
    Ok(findings)
}
