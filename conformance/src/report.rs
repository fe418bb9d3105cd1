//! A run's report: what was tested (the module, its library and token, its mechanism list, the
//! kit's version) and each case's finding, as text, JSON (`docs/conform-json.md`), JUnit XML and
//! Markdown.

use std::fmt::{self, Write as _};

use hsmkit_backend::Backend;

use crate::{Finding, KIT_VERSION, Outcome, Profile};

/// The JSON report's schema name.
pub const JSON_SCHEMA: &str = "hsmkit-conform/1";

/// One mechanism of the module's list, as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MechanismRow {
    /// `CKM_*` without the prefix (`SHA256_RSA_PKCS`).
    pub name: String,
    /// The functions its flags claim (`sign`, `verify`, `wrap`, …).
    pub functions: Vec<String>,
    /// Smallest key size (bits, or bytes where the module counts bytes).
    pub min: u32,
    /// Largest key size.
    pub max: u32,
    /// Composed by the client from mechanisms the module has, not the module's own.
    pub composed: bool,
}

/// What was tested.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModuleInfo {
    /// The backend as given (`emulator`, `pkcs11:/usr/lib/softhsm/libsofthsm2.so`).
    pub backend: String,
    /// The library: manufacturer, description and version (`C_GetInfo`), where known.
    pub library: Option<String>,
    /// The token: manufacturer, model, serial number, firmware (`C_GetTokenInfo`).
    pub token: String,
    /// The mechanism list.
    pub mechanisms: Vec<MechanismRow>,
}

impl ModuleInfo {
    /// The module behind `backend`, named `spec`, read through the seam.
    pub fn of(spec: &str, backend: &dyn Backend) -> ModuleInfo {
        let token = match backend.info() {
            Ok(i) => format!("{} {} (serial {}, firmware {})", i.vendor, i.model, i.serial, i.firmware),
            Err(e) => format!("unreadable: {e}"),
        };
        let mechanisms = backend
            .capabilities()
            .map(|c| {
                c.mechanisms
                    .iter()
                    .map(|m| MechanismRow {
                        name: m.kind.name().to_string(),
                        functions: flag_names(m.flags),
                        min: m.min_bits,
                        max: m.max_bits,
                        composed: m.composed,
                    })
                    .collect()
            })
            .unwrap_or_default();
        ModuleInfo { backend: spec.to_string(), library: None, token, mechanisms }
    }
}

fn flag_names(flags: hsmkit_backend::MechanismFlags) -> Vec<String> {
    use hsmkit_backend::MechanismFlags as F;
    let names = [
        (F::ENCRYPT, "encrypt"),
        (F::DECRYPT, "decrypt"),
        (F::SIGN, "sign"),
        (F::VERIFY, "verify"),
        (F::GENERATE, "generate"),
        (F::GENERATE_KEY_PAIR, "generate-key-pair"),
        (F::WRAP, "wrap"),
        (F::UNWRAP, "unwrap"),
        (F::DERIVE, "derive"),
    ];
    names.iter().filter(|(f, _)| flags.contains(*f)).map(|(_, n)| (*n).to_string()).collect()
}

/// A run's report.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was tested.
    pub module: ModuleInfo,
    /// The profiles selected (empty: all).
    pub profiles: Vec<Profile>,
    /// Each case's finding, in run order.
    pub findings: Vec<Finding>,
}

/// Counts of a report's outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Cases run or declared.
    pub cases: usize,
    /// Passed.
    pub pass: usize,
    /// Failed undeclared.
    pub fail: usize,
    /// Failed as declared.
    pub xfail: usize,
    /// Passed although declared to fail.
    pub xpass: usize,
    /// Not run.
    pub skip: usize,
    /// The module crashed or hung.
    pub crash: usize,
    /// Published vectors checked.
    pub vector_checks: u64,
}

impl Report {
    /// A report of `findings` on `module`.
    pub fn new(module: ModuleInfo, profiles: Vec<Profile>, findings: Vec<Finding>) -> Report {
        Report { module, profiles, findings }
    }

    /// Whether nothing failed unexpectedly (the exit code's 0).
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.outcome.ok())
    }

    /// The counts.
    pub fn totals(&self) -> Totals {
        let mut t = Totals { cases: self.findings.len(), ..Totals::default() };
        for f in &self.findings {
            t.vector_checks += f.checks;
            match f.outcome {
                Outcome::Pass => t.pass += 1,
                Outcome::Fail(_) => t.fail += 1,
                Outcome::ExpectedFailure(_) => t.xfail += 1,
                Outcome::UnexpectedPass(_) => t.xpass += 1,
                Outcome::Skip(_) => t.skip += 1,
                Outcome::Crashed(_) => t.crash += 1,
            }
        }
        t
    }

    /// The finding of case `id`.
    pub fn finding(&self, id: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.id == id)
    }

    /// The JSON report (schema `hsmkit-conform/1`, `docs/conform-json.md`).
    pub fn json(&self) -> String {
        let cases: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "id": f.id,
                    "profile": f.profile,
                    "clause": f.clause,
                    "outcome": f.outcome.name(),
                    "reason": f.outcome.reason(),
                    "duration_ms": f.duration.as_secs_f64() * 1000.0,
                    "vector_checks": f.checks,
                })
            })
            .collect();
        let v = serde_json::json!({
            "schema": JSON_SCHEMA,
            "kit": { "name": "hsmkit", "version": KIT_VERSION },
            "module": self.module,
            "profiles": self.profiles,
            "ok": self.ok(),
            "totals": self.totals(),
            "cases": cases,
        });
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }

    /// JUnit XML: one `<testsuite>` per profile, one `<testcase>` per case; an undeclared failure
    /// or an unexpected pass is a `<failure>`, a crash an `<error>`, a skip or declared failure a
    /// `<skipped>` with its reason.
    pub fn junit(&self) -> String {
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let t = self.totals();
        let secs = |fs: &[&Finding]| fs.iter().map(|f| f.duration.as_secs_f64()).sum::<f64>();
        let all: Vec<&Finding> = self.findings.iter().collect();
        let _ = writeln!(
            x,
            "<testsuites name=\"hsmkit conform {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            xml(&self.module.backend),
            t.cases,
            t.fail + t.xpass,
            t.crash,
            t.skip + t.xfail,
            secs(&all)
        );
        for profile in Profile::ALL {
            let fs: Vec<&Finding> = self.findings.iter().filter(|f| f.profile == *profile).collect();
            if fs.is_empty() {
                continue;
            }
            let count = |f: &dyn Fn(&Outcome) -> bool| fs.iter().filter(|x| f(&x.outcome)).count();
            let _ = writeln!(
                x,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
                profile,
                fs.len(),
                count(&|o| matches!(o, Outcome::Fail(_) | Outcome::UnexpectedPass(_))),
                count(&|o| matches!(o, Outcome::Crashed(_))),
                count(&|o| matches!(o, Outcome::Skip(_) | Outcome::ExpectedFailure(_))),
                secs(&fs)
            );
            for f in fs {
                let _ = write!(
                    x,
                    "    <testcase classname=\"hsmkit.{}\" name=\"{}\" time=\"{:.3}\"",
                    profile,
                    xml(&f.id),
                    f.duration.as_secs_f64()
                );
                let reason = f.outcome.reason().map(xml).unwrap_or_default();
                match &f.outcome {
                    Outcome::Pass => x.push_str("/>\n"),
                    Outcome::Fail(_) => {
                        let _ = writeln!(x, ">\n      <failure message=\"{reason}\" type=\"fail\"/>\n    </testcase>");
                    }
                    Outcome::UnexpectedPass(_) => {
                        let _ = writeln!(
                            x,
                            ">\n      <failure message=\"declared to fail ({reason}) but passed: update the expectation file\" type=\"xpass\"/>\n    </testcase>"
                        );
                    }
                    Outcome::Crashed(_) => {
                        let _ = writeln!(x, ">\n      <error message=\"{reason}\" type=\"crash\"/>\n    </testcase>");
                    }
                    Outcome::Skip(_) => {
                        let _ = writeln!(x, ">\n      <skipped message=\"{reason}\"/>\n    </testcase>");
                    }
                    Outcome::ExpectedFailure(_) => {
                        let _ =
                            writeln!(x, ">\n      <skipped message=\"expected failure: {reason}\"/>\n    </testcase>");
                    }
                }
            }
            x.push_str("  </testsuite>\n");
        }
        x.push_str("</testsuites>\n");
        x
    }

    /// Markdown: what was tested, the totals per profile, every case that did not simply pass
    /// with its reason, and the mechanism list.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let t = self.totals();
        let _ = writeln!(m, "# Conformance of `{}`\n", md(&self.module.backend));
        let _ = writeln!(
            m,
            "hsmkit {KIT_VERSION} conformance kit. Result: **{}**: {} cases, {} passed, {} failed, {} declared failures, {} unexpected passes, {} skipped, {} crashed; {} published vectors checked.\n",
            if self.ok() { "conforms" } else { "does not conform" },
            t.cases,
            t.pass,
            t.fail,
            t.xfail,
            t.xpass,
            t.skip,
            t.crash,
            t.vector_checks
        );
        if let Some(lib) = &self.module.library {
            let _ = writeln!(m, "- Library: {}", md(lib));
        }
        let _ = writeln!(m, "- Token: {}\n", md(&self.module.token));
        m.push_str(
            "| profile | cases | pass | fail | xfail | xpass | skip | crash |\n|---|---|---|---|---|---|---|---|\n",
        );
        for profile in Profile::ALL {
            let fs: Vec<&Finding> = self.findings.iter().filter(|f| f.profile == *profile).collect();
            if fs.is_empty() {
                continue;
            }
            let n = |name: &str| fs.iter().filter(|f| f.outcome.name() == name).count();
            let _ = writeln!(
                m,
                "| {profile} | {} | {} | {} | {} | {} | {} | {} |",
                fs.len(),
                n("pass"),
                n("fail"),
                n("xfail"),
                n("xpass"),
                n("skip"),
                n("crash")
            );
        }
        let notable: Vec<&Finding> = self.findings.iter().filter(|f| f.outcome != Outcome::Pass).collect();
        if !notable.is_empty() {
            m.push_str("\n## Cases that did not simply pass\n\n| case | outcome | reason |\n|---|---|---|\n");
            for f in notable {
                let _ = writeln!(
                    m,
                    "| `{}` | {} | {} |",
                    md(&f.id),
                    f.outcome.name(),
                    md(f.outcome.reason().unwrap_or_default())
                );
            }
        }
        m.push_str("\n## Mechanisms the module lists\n\n| mechanism | functions | key sizes |\n|---|---|---|\n");
        for r in &self.module.mechanisms {
            let how = if r.composed { " (composed by the client)" } else { "" };
            let _ = writeln!(m, "| `{}`{how} | {} | {}–{} |", r.name, r.functions.join(", "), r.min, r.max);
        }
        m
    }
}

/// Text in an XML attribute.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no way to write most control characters: they are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// Text in a Markdown table cell.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance kit {KIT_VERSION} on {}", self.module.backend)?;
        for x in &self.findings {
            let id = &x.id;
            match &x.outcome {
                Outcome::Pass => writeln!(f, "  pass   {id}")?,
                Outcome::Fail(why) => writeln!(f, "  FAIL   {id}: {why}")?,
                Outcome::ExpectedFailure(why) => writeln!(f, "  xfail  {id} (declared: {why})")?,
                Outcome::UnexpectedPass(why) => {
                    writeln!(f, "  XPASS  {id}: declared to fail ({why}) but passed; update the expectation file")?
                }
                Outcome::Skip(why) => writeln!(f, "  skip   {id} ({why})")?,
                Outcome::Crashed(why) => writeln!(f, "  CRASH  {id}: {why}")?,
            }
        }
        let t = self.totals();
        writeln!(
            f,
            "{} passed, {} failed as declared, {} failed, {} passed against a declaration, {} skipped, {} crashed ({} cases, {} vector checks)",
            t.pass, t.xfail, t.fail, t.xpass, t.skip, t.crash, t.cases, t.vector_checks
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn finding(id: &str, outcome: Outcome) -> Finding {
        Finding {
            id: id.to_owned(),
            profile: Profile::Abi,
            clause: "PKCS #11 3.0 §5".to_owned(),
            outcome,
            duration: Duration::from_millis(1),
            checks: 2,
        }
    }

    #[test]
    fn the_summary_line_keeps_declared_failures_apart_from_passes() {
        let report = Report::new(
            ModuleInfo::default(),
            vec![Profile::Abi],
            vec![
                finding("a", Outcome::Pass),
                finding("b", Outcome::Pass),
                finding("c", Outcome::ExpectedFailure("known".into())),
                finding("d", Outcome::Fail("wrong CKR".into())),
                finding("e", Outcome::UnexpectedPass("known".into())),
                finding("f", Outcome::Skip("not listed".into())),
            ],
        );
        let text = report.to_string();
        let last = text.lines().last().expect("a summary line");
        assert_eq!(
            last,
            "2 passed, 1 failed as declared, 1 failed, 1 passed against a declaration, 1 skipped, \
             0 crashed (6 cases, 12 vector checks)"
        );
        assert!(!report.ok());
    }
}
