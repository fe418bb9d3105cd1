//! The hsmkit conformance kit: the cases a vendor runs on a PKCS#11 module (or any [`Backend`])
//! before a BYOK integration, checked with independent implementations (RustCrypto), with
//! per-backend expectation files instead of branches on the backend.
//!
//! - Cases belong to a [`Profile`] (`--profile rsa`, …) and name the clause they check.
//! - A case passes, fails (with the reason), is skipped because the backend does not list what it
//!   needs (with the reason), or is an expected failure declared in the backend's expectation file
//!   with its reason; a declared failure that passes is itself a failure, so the files cannot go
//!   stale silently.
//! - [`run`] runs a selection and reports each case as it starts and ends ([`Event`]), so a
//!   parent process can record a crash against the case that was running ([`isolate`]).
//! - [`Report`] prints as text, JSON (`docs/conform-json.md`), JUnit XML and Markdown.

pub mod abi;
pub mod abi_faults;
mod cases;
mod expectations;
pub mod faults;
pub mod isolate;
pub mod report;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hsmkit_backend::{Backend, Pin, Session, SessionMode, SlotId, UserKind};

/// Listed (mechanism, function) pairs of a backend's list that no case of the kit exercises.
pub use cases::uncovered;
pub use expectations::{Expectation, Expectations};
pub use report::{ModuleInfo, Report};

/// The kit's version, named in every report.
pub const KIT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A group of cases, selected with `--profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The C ABI: arguments, states and return codes of the functions themselves.
    Abi,
    /// Objects: sensitive and extractable semantics, derived attributes, copy, set, find.
    Objects,
    /// RSA PKCS#1 v1.5, PSS and OAEP at the sizes and hashes the module lists.
    Rsa,
    /// Key wrap: RFC 3394 and 5649, RSA-AES, the wrapped bytes unwrapped independently.
    Keywrap,
    /// Every other mechanism the module lists: AES modes, HMAC, CMAC, EC, derivation, DES3.
    Mechanisms,
    /// Published test vectors (Wycheproof) with their valid, invalid and acceptable verdicts.
    Vectors,
    /// Key-management policy under attack (the Tookan attacks and their kin).
    Policy,
    /// The BYOK transfer engine on this backend, its package checked independently.
    Byok,
    /// The nShield world model: quorum, cards, lockout, blob binding (emulator only).
    World,
}

impl Profile {
    /// Every profile, in run order.
    pub const ALL: &'static [Profile] = &[
        Profile::Abi,
        Profile::Objects,
        Profile::Rsa,
        Profile::Keywrap,
        Profile::Mechanisms,
        Profile::Vectors,
        Profile::Policy,
        Profile::Byok,
        Profile::World,
    ];

    /// The profile's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Abi => "abi",
            Profile::Objects => "objects",
            Profile::Rsa => "rsa",
            Profile::Keywrap => "keywrap",
            Profile::Mechanisms => "mechanisms",
            Profile::Vectors => "vectors",
            Profile::Policy => "policy",
            Profile::Byok => "byok",
            Profile::World => "world",
        }
    }

    /// The profile named `name`, or an error listing the names.
    pub fn parse(name: &str) -> Result<Profile, String> {
        Profile::ALL.iter().copied().find(|p| p.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
            format!("unknown profile '{name}' (the profiles: {})", names.join(", "))
        })
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a case runs against.
pub struct Ctx<'a> {
    /// The backend.
    pub backend: &'a dyn Backend,
    /// The slot to use.
    pub slot: SlotId,
    /// The user PIN, for backends that need a login.
    pub user_pin: Option<Pin>,
    /// The security officer's PIN, for the cases that need one (else they are skipped).
    pub so_pin: Option<Pin>,
    /// Vector checks made by the case running now (see [`Ctx::checked`]).
    checks: AtomicU64,
}

impl<'a> Ctx<'a> {
    /// A context on `backend`'s `slot`.
    pub fn new(backend: &'a dyn Backend, slot: SlotId, user_pin: Option<Pin>) -> Ctx<'a> {
        Ctx { backend, slot, user_pin, so_pin: None, checks: AtomicU64::new(0) }
    }

    /// The same, with the security officer's PIN.
    pub fn with_so_pin(mut self, so_pin: Option<Pin>) -> Ctx<'a> {
        self.so_pin = so_pin;
        self
    }

    /// A read-write session, logged in as the user when the backend needs it.
    pub fn session(&self) -> Result<Box<dyn Session + '_>, String> {
        let s =
            self.backend.open_session(self.slot, SessionMode::ReadWrite).map_err(|e| format!("open session: {e}"))?;
        self.login_user(s.as_ref())?;
        Ok(s)
    }

    /// Logs the user in on `s` when a user PIN was given; already logged in is fine (login state
    /// belongs to the application: another session may have logged in).
    pub(crate) fn login_user(&self, s: &dyn Session) -> Result<(), String> {
        if let Some(pin) = &self.user_pin {
            match s.login(UserKind::User, pin) {
                Ok(()) => {}
                Err(e) if e.kind() == &hsmkit_backend::ErrorKind::UserAlreadyLoggedIn => {}
                Err(e) => return Err(format!("login: {e}")),
            }
        }
        Ok(())
    }

    /// Counts `n` checks of published vectors made by the running case.
    pub fn checked(&self, n: u64) {
        self.checks.fetch_add(n, Ordering::Relaxed);
    }
}

/// A case's answer: `Err` says why the backend does not conform (or, made by [`not_listed`],
/// why the case was not run).
pub type CaseResult = Result<(), String>;

/// A seam-level case's body.
pub type SeamFn = Arc<dyn Fn(&Ctx<'_>) -> CaseResult + Send + Sync>;

/// What a case drives.
#[derive(Clone)]
pub enum Body {
    /// Any backend, through the seam.
    Seam(SeamFn),
    /// A PKCS#11 module's C ABI, directly.
    Abi(abi::AbiFn),
}

/// What a run drives: the seam, the ABI, or both. A case whose level is absent is skipped.
#[derive(Clone, Copy, Default)]
pub struct Target<'a> {
    /// The backend, through the seam.
    pub seam: Option<&'a Ctx<'a>>,
    /// The module's C ABI.
    pub abi: Option<&'a abi::AbiCtx<'a>>,
}

/// One conformance case.
#[derive(Clone)]
pub struct Case {
    /// Stable identifier, used in expectation files and reports.
    pub id: String,
    /// The profile it belongs to.
    pub profile: Profile,
    /// The specification clause it checks.
    pub clause: String,
    /// What it runs.
    pub body: Body,
}

impl Case {
    /// A seam-level case.
    pub fn seam(
        profile: Profile,
        id: impl Into<String>,
        clause: impl Into<String>,
        run: impl Fn(&Ctx<'_>) -> CaseResult + Send + Sync + 'static,
    ) -> Case {
        Case { id: id.into(), profile, clause: clause.into(), body: Body::Seam(Arc::new(run)) }
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case").field("id", &self.id).field("profile", &self.profile).finish_non_exhaustive()
    }
}

/// Every case of the kit, in run order (profile by profile).
pub fn suite() -> Vec<Case> {
    let mut all = abi::cases();
    all.extend(abi::objects());
    all.extend(cases::cases());
    // Profile by profile; within one, the ABI-level cases first, so a process that runs a profile
    // drives the raw ABI before the seam's client initialises the module.
    all.sort_by_key(|c| (c.profile, !matches!(c.body, Body::Abi(_))));
    all
}

/// The cases of `profiles` (all of them when empty), in run order.
pub fn select(profiles: &[Profile]) -> Vec<Case> {
    suite().into_iter().filter(|c| profiles.is_empty() || profiles.contains(&c.profile)).collect()
}

/// A case's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It conforms.
    Pass,
    /// It does not, and nothing declared that: the reason.
    Fail(String),
    /// It does not, as the expectation file declares: the declared reason.
    ExpectedFailure(String),
    /// It was declared to fail but passed: the expectation is out of date.
    UnexpectedPass(String),
    /// Not run: the reason (the expectation file's, or what the backend does not list).
    Skip(String),
    /// The module crashed, aborted or hung while the case ran (see [`isolate`]): what happened.
    Crashed(String),
}

impl Outcome {
    /// Whether the run stays green.
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Pass | Outcome::ExpectedFailure(_) | Outcome::Skip(_))
    }

    /// The outcome's short name in reports: pass, fail, xfail, xpass, skip, crash.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::ExpectedFailure(_) => "xfail",
            Outcome::UnexpectedPass(_) => "xpass",
            Outcome::Skip(_) => "skip",
            Outcome::Crashed(_) => "crash",
        }
    }

    /// The reason, for every outcome but a pass.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Pass => None,
            Outcome::Fail(r)
            | Outcome::ExpectedFailure(r)
            | Outcome::UnexpectedPass(r)
            | Outcome::Skip(r)
            | Outcome::Crashed(r) => Some(r),
        }
    }
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The case.
    pub id: String,
    /// Its profile.
    pub profile: Profile,
    /// The clause it checks.
    pub clause: String,
    /// What happened.
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
    /// Published vectors it checked.
    pub checks: u64,
}

/// What the runner reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// A case starts.
    Start(&'a Case),
    /// A case ended.
    End(&'a Finding),
}

/// The prefix of a case's `Err` that means "not run": the backend does not list what the case
/// needs. [`not_listed`] makes one; the runner reports it as a skip with the reason.
const SKIP_PREFIX: &str = "\u{0}skip: ";

/// A case's answer when the backend does not list `what`: the case is skipped, with the reason.
pub fn not_listed(what: &str) -> String {
    format!("{SKIP_PREFIX}the backend does not list {what}")
}

/// A case's answer when it cannot run for another reason (`why`): the case is skipped.
pub fn skipped(why: &str) -> String {
    format!("{SKIP_PREFIX}{why}")
}

/// Cases that check what a login changes: without a user PIN in the context there is nothing to
/// check (a token without a user PIN, such as an nShield world's module protection, needs none).
pub(crate) const NEED_LOGIN: &[&str] = &["logout-ends-private-use"];

/// Runs one case on `target` under `declared`.
pub fn run_case(case: &Case, target: Target<'_>, declared: Option<&Expectation>) -> Finding {
    let start = Instant::now();
    if let Some(ctx) = target.seam {
        ctx.checks.store(0, Ordering::Relaxed);
    }
    let no_login = target.seam.is_some_and(|c| c.user_pin.is_none());
    let outcome = match (declared, &case.body) {
        (Some(Expectation::Skip(why)), _) => Outcome::Skip(why.clone()),
        (None, Body::Seam(_)) if no_login && NEED_LOGIN.contains(&case.id.as_str()) => {
            Outcome::Skip("no user PIN was given (--login), so there is no login to end".into())
        }
        (_, Body::Seam(_)) if target.seam.is_none() => {
            Outcome::Skip("a seam-level case, and this run drives the module's ABI only".into())
        }
        (_, Body::Abi(_)) if target.abi.is_none() => Outcome::Skip(
            "an ABI-level case: it needs a module's C ABI (pkcs11:PATH, or the emulator's linked in by hsmkit conform), and this run drives the seam only".into(),
        ),
        (declared, body) => {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match (body, target) {
                (Body::Seam(f), Target { seam: Some(ctx), .. }) => f(ctx),
                (Body::Abi(f), Target { abi: Some(ctx), .. }) => f(ctx),
                _ => Err("no target for the case".into()),
            }))
            .unwrap_or_else(|_| Err("the case panicked".into()));
            match (result, declared) {
                (Err(e), _) if e.starts_with(SKIP_PREFIX) => Outcome::Skip(e[SKIP_PREFIX.len()..].to_string()),
                (Ok(()), Some(Expectation::Fail(why))) => Outcome::UnexpectedPass(why.clone()),
                (Ok(()), _) => Outcome::Pass,
                (Err(_), Some(Expectation::Fail(why))) => Outcome::ExpectedFailure(why.clone()),
                (Err(e), _) => Outcome::Fail(format!("{e} [{}]", case.clause)),
            }
        }
    };
    Finding {
        id: case.id.clone(),
        profile: case.profile,
        clause: case.clause.clone(),
        outcome,
        duration: start.elapsed(),
        checks: target.seam.map_or(0, |c| c.checks.load(Ordering::Relaxed)),
    }
}

/// Runs `cases` on `target` under `expectations`, one after another, telling `events` as it goes.
pub fn run_cases(
    cases: &[Case],
    target: Target<'_>,
    expectations: &Expectations,
    events: &mut dyn FnMut(Event<'_>),
) -> Vec<Finding> {
    let mut out = Vec::with_capacity(cases.len());
    for case in cases {
        events(Event::Start(case));
        let finding = run_case(case, target, expectations.get(&case.id));
        events(Event::End(&finding));
        out.push(finding);
    }
    out
}

/// Runs seam-level `cases` on `threads` threads at once, each thread with a context of its own
/// from `ctx` (a case counts its vector checks in its context). The cases that change the
/// application's login state, which every session of the backend shares (the `byok` profile's
/// officer steps, `logout-ends-private-use`), run afterwards, alone. Findings come back in
/// `cases`' order; `events` hears of each case as it ends (in the order they end).
///
/// For a backend whose sessions may run side by side (the emulator); a PKCS#11 module is run
/// with [`run_cases`], one case after another, as its application would.
pub fn run_cases_parallel<'b>(
    cases: &[Case],
    ctx: &(dyn Fn() -> Ctx<'b> + Sync),
    threads: usize,
    expectations: &Expectations,
    events: &mut dyn FnMut(Event<'_>),
) -> Vec<Finding> {
    let alone = |c: &Case| c.profile == Profile::Byok || NEED_LOGIN.contains(&c.id.as_str());
    let (serial, side_by_side): (Vec<&Case>, Vec<&Case>) = cases.iter().partition(|c| alone(c));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<Finding>();
    let mut out = Vec::with_capacity(cases.len());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            let (tx, next, side_by_side) = (tx.clone(), &next, &side_by_side);
            scope.spawn(move || {
                let ctx = ctx();
                while let Some(case) = side_by_side.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let f = run_case(case, Target { seam: Some(&ctx), abi: None }, expectations.get(&case.id));
                    if tx.send(f).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        for f in rx {
            events(Event::End(&f));
            out.push(f);
        }
    });
    let ctx = ctx();
    let serial: Vec<Case> = serial.into_iter().cloned().collect();
    out.extend(run_cases(&serial, Target { seam: Some(&ctx), abi: None }, expectations, events));
    let order = |id: &str| cases.iter().position(|c| c.id == id);
    out.sort_by_key(|f| order(&f.id));
    out
}

/// Runs every seam-level case on `ctx` under `expectations` (no events): the report of the suite
/// through the seam (the ABI-level cases are left out).
pub fn run(backend: &str, ctx: &Ctx<'_>, expectations: &Expectations) -> Report {
    let cases: Vec<Case> = suite().into_iter().filter(|c| matches!(c.body, Body::Seam(_))).collect();
    let findings = run_cases(&cases, Target { seam: Some(ctx), abi: None }, expectations, &mut |_| {});
    Report::new(ModuleInfo::of(backend, ctx.backend), Vec::new(), findings)
}

/// Entry point for fuzzing the expectation file reader: arbitrary bytes, read as the text of an
/// expectation file (lossily, as `hsmkit conform --expectations` reads only UTF-8), must be read
/// or refused with a message, never panic.
/// Says whether the text was read.
pub fn fuzz_expectations(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    Expectations::parse("fuzz.txt", &text).is_ok_and(|e| !format!("{e:?}").is_empty())
}
