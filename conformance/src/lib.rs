//! The hsmkit conformance kit: one suite of cases that drives any [`Backend`] through the seam,
//! checks the backend's cryptographic output with independent implementations (RustCrypto `rsa`
//! and `aes-kw`), and reads per-backend expectation files instead of branching on the backend.
//!
//! A case passes, fails (with the reason), or is an expected failure declared in the backend's
//! expectation file with its reason; a declared failure that passes is itself a failure, so the
//! files cannot go stale silently.

mod cases;
mod expectations;

use std::fmt;

use hsmkit_backend::{Backend, Pin, Session, SessionMode, SlotId, UserKind};

pub use cases::cases;
pub use expectations::{Expectation, Expectations};

/// What a case runs against.
pub struct Ctx<'a> {
    /// The backend.
    pub backend: &'a dyn Backend,
    /// The slot to use.
    pub slot: SlotId,
    /// The user PIN, for backends that need a login.
    pub user_pin: Option<Pin>,
}

impl Ctx<'_> {
    /// A read-write session, logged in as the user when the backend needs it.
    pub fn session(&self) -> Result<Box<dyn Session + '_>, String> {
        let s =
            self.backend.open_session(self.slot, SessionMode::ReadWrite).map_err(|e| format!("open session: {e}"))?;
        if let Some(pin) = &self.user_pin {
            match s.login(UserKind::User, pin) {
                // Login state belongs to the application: another session may have logged in.
                Ok(()) => {}
                Err(e) if e.kind() == &hsmkit_backend::ErrorKind::UserAlreadyLoggedIn => {}
                Err(e) => return Err(format!("login: {e}")),
            }
        }
        Ok(s)
    }
}

/// One conformance case.
pub struct Case {
    /// Stable identifier, used in expectation files.
    pub id: &'static str,
    /// The specification clause it checks.
    pub clause: &'static str,
    /// The body: `Err` says why the backend does not conform.
    pub run: fn(&Ctx<'_>) -> Result<(), String>,
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
    /// Not run, as the expectation file declares: the reason.
    Skip(String),
}

impl Outcome {
    /// Whether the run stays green.
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Pass | Outcome::ExpectedFailure(_) | Outcome::Skip(_))
    }
}

/// The outcomes of a run.
#[derive(Debug, Default)]
pub struct Report {
    /// The backend's name.
    pub backend: String,
    /// (case id, outcome), in order.
    pub results: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// Whether every outcome is green.
    pub fn ok(&self) -> bool {
        self.results.iter().all(|(_, o)| o.ok())
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|(_, o)| f(o)).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance suite on {}", self.backend)?;
        for (id, o) in &self.results {
            match o {
                Outcome::Pass => writeln!(f, "  pass   {id}")?,
                Outcome::Fail(why) => writeln!(f, "  FAIL   {id}: {why}")?,
                Outcome::ExpectedFailure(why) => writeln!(f, "  xfail  {id} (declared: {why})")?,
                Outcome::UnexpectedPass(why) => {
                    writeln!(f, "  XPASS  {id}: declared to fail ({why}) but passed; update the expectation file")?
                }
                Outcome::Skip(why) => writeln!(f, "  skip   {id} ({why})")?,
            }
        }
        let passed = self.count(|o| matches!(o, Outcome::Pass | Outcome::ExpectedFailure(_)));
        let failed = self.count(|o| !o.ok());
        let skipped = self.count(|o| matches!(o, Outcome::Skip(_)));
        writeln!(f, "{passed} passed, {failed} failed, {skipped} skipped")
    }
}

/// The prefix of a case's `Err` that means "not run": the backend does not list what the case
/// needs. [`not_listed`] makes one; the runner reports it as a skip with the reason.
const SKIP_PREFIX: &str = "\u{0}skip: ";

/// A case's answer when the backend does not list `what`: the case is skipped, with the reason.
pub fn not_listed(what: &str) -> String {
    format!("{SKIP_PREFIX}the backend does not list {what}")
}

/// Cases that check what a login changes: without a user PIN in the context there is nothing to
/// check (a token without a user PIN, such as an nShield world's module protection, needs none).
const NEED_LOGIN: &[&str] = &["logout-ends-private-use"];

/// Runs every case on `ctx` under `expectations`.
pub fn run(backend: &str, ctx: &Ctx<'_>, expectations: &Expectations) -> Report {
    let mut report = Report { backend: backend.to_string(), results: Vec::new() };
    for case in cases() {
        let outcome = match expectations.get(case.id) {
            Some(Expectation::Skip(why)) => Outcome::Skip(why.clone()),
            None if ctx.user_pin.is_none() && NEED_LOGIN.contains(&case.id) => {
                Outcome::Skip("no user PIN was given (--login), so there is no login to end".into())
            }
            declared => {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(ctx)))
                    .unwrap_or_else(|_| Err("the case panicked".into()));
                let result = match result {
                    Err(e) if e.starts_with(SKIP_PREFIX) => {
                        report.results.push((case.id, Outcome::Skip(e[SKIP_PREFIX.len()..].to_string())));
                        continue;
                    }
                    other => other,
                };
                match (result, declared) {
                    (Ok(()), Some(Expectation::Fail(why))) => Outcome::UnexpectedPass(why.clone()),
                    (Ok(()), _) => Outcome::Pass,
                    (Err(_), Some(Expectation::Fail(why))) => Outcome::ExpectedFailure(why.clone()),
                    (Err(e), _) => Outcome::Fail(format!("{e} [{}]", case.clause)),
                }
            }
        };
        report.results.push((case.id, outcome));
    }
    report
}

/// Entry point for fuzzing the expectation file reader: arbitrary bytes, read as the text of an
/// expectation file (lossily, as `hsmkit conform --expectations` reads only UTF-8), must be read
/// or refused with a message, never panic.
/// Says whether the text was read.
pub fn fuzz_expectations(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    Expectations::parse("fuzz.txt", &text).is_ok_and(|e| !format!("{e:?}").is_empty())
}
