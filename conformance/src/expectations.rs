//! Per-backend expectation files: one line per deviation, each with its reason.
//!
//! ```text
//! # case id                 verdict  reason
//! policy-narrowed-copy      xfail    SoftHSM2 2.6 refuses to change CKA_DECRYPT in C_CopyObject
//! ```
//! Verdicts: `xfail` (the case is run and must fail) and `skip` (not run). A case id ending in
//! `*` declares every case whose id starts with what precedes it (`abi-not-initialized-*`); an
//! exact id wins over a pattern, and a longer pattern over a shorter. Blank lines and `#`
//! comments are ignored; a case id the suite does not have, a pattern that matches no case, a
//! missing reason or an unknown verdict is an error that names the line.

use std::collections::HashMap;

/// What a backend declares about one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The case fails on this backend, for this reason.
    Fail(String),
    /// The case is not run, for this reason.
    Skip(String),
}

/// A parsed expectation file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    map: HashMap<String, Expectation>,
    /// `prefix*` declarations, longest prefix first.
    patterns: Vec<(String, Expectation)>,
}

impl Expectations {
    /// No deviations.
    pub fn none() -> Self {
        Expectations::default()
    }

    /// Parses an expectation file's text; `name` is used in errors.
    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        let suite = crate::suite();
        let known: std::collections::HashSet<&str> = suite.iter().map(|c| c.id.as_str()).collect();
        let mut map = HashMap::new();
        let mut patterns: Vec<(String, Expectation)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{name}:{}", i + 1);
            let mut words = line.split_whitespace();
            let (Some(id), Some(verdict)) = (words.next(), words.next()) else {
                return Err(format!("{at}: expected `case-id verdict reason`"));
            };
            let reason = words.collect::<Vec<_>>().join(" ");
            if reason.is_empty() {
                return Err(format!("{at}: `{id}` needs a reason"));
            }
            let e = match verdict {
                "xfail" => Expectation::Fail(reason.to_string()),
                "skip" => Expectation::Skip(reason.to_string()),
                other => return Err(format!("{at}: unknown verdict `{other}` (use xfail or skip)")),
            };
            if let Some(prefix) = id.strip_suffix('*') {
                if !known.iter().any(|k| k.starts_with(prefix)) {
                    return Err(format!("{at}: the pattern `{id}` matches no case of the suite"));
                }
                if patterns.iter().any(|(p, _)| p == prefix) {
                    return Err(format!("{at}: `{id}` is declared twice"));
                }
                patterns.push((prefix.to_string(), e));
                continue;
            }
            if !known.contains(id) {
                return Err(format!("{at}: the suite has no case `{id}`"));
            }
            if map.insert(id.to_string(), e).is_some() {
                return Err(format!("{at}: `{id}` is declared twice"));
            }
        }
        patterns.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(Expectations { map, patterns })
    }

    /// An expectation file shipped with hsmkit: `emulator`, `pkcs11-module`, `softhsm2` or `nss`.
    pub fn builtin(name: &str) -> Option<Self> {
        let text = match name {
            "emulator" => include_str!("../expectations/emulator.txt"),
            "softhsm2" => include_str!("../expectations/softhsm2.txt"),
            "pkcs11-module" => include_str!("../expectations/pkcs11-module.txt"),
            "nss" => include_str!("../expectations/nss.txt"),
            _ => return None,
        };
        Expectations::parse(&format!("conformance/expectations/{name}.txt"), text).ok()
    }

    /// The declaration for `id`, if any: its own line, else the longest pattern that matches.
    pub fn get(&self, id: &str) -> Option<&Expectation> {
        self.map.get(id).or_else(|| self.patterns.iter().find(|(p, _)| id.starts_with(p.as_str())).map(|(_, e)| e))
    }

    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed_with_their_reasons() {
        let e = Expectations::parse("x", "# c\n\nrandom   xfail   the token  has no RNG\n").expect("parse");
        assert_eq!(e.get("random"), Some(&Expectation::Fail("the token has no RNG".into())));
        assert_eq!(e.get("rsa-sign-pkcs1v15"), None);
    }

    #[test]
    fn a_pattern_declares_every_case_it_prefixes_and_an_exact_line_wins() {
        let text = "abi-bad-session-* xfail all of them\nabi-* skip the rest\nabi-bad-session-C_Sign xfail this one\n";
        let e = Expectations::parse("x", text).expect("parse");
        assert_eq!(e.get("abi-bad-session-C_Verify"), Some(&Expectation::Fail("all of them".into())));
        assert_eq!(e.get("abi-bad-session-C_Sign"), Some(&Expectation::Fail("this one".into())));
        assert_eq!(e.get("abi-get-info"), Some(&Expectation::Skip("the rest".into())));
        assert_eq!(e.get("random"), None);
    }

    #[test]
    fn every_case_id_is_unique() {
        let suite = crate::suite();
        let mut ids: Vec<&str> = suite.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), before, "two cases share an id");
    }

    #[test]
    fn the_shipped_files_parse() {
        let softhsm2 = Expectations::builtin("softhsm2").expect("softhsm2");
        assert!(!softhsm2.is_empty(), "SoftHSM2 declares its deviations");
        assert!(!Expectations::builtin("nss").expect("nss").is_empty(), "NSS declares its deviations");
        // The emulator, in process or behind libhsmkit_pkcs11.so, declares none.
        for name in ["emulator", "pkcs11-module"] {
            assert!(Expectations::builtin(name).expect(name).is_empty(), "{name} declares a deviation");
        }
        assert!(Expectations::builtin("hsm9000").is_none());
    }

    #[test]
    fn hostile_or_broken_files_are_refused_by_line() {
        for (text, says) in [
            ("random xfail", "needs a reason"),
            ("random", "expected"),
            ("no-such-case xfail why", "no case `no-such-case`"),
            ("random maybe why", "unknown verdict"),
            ("random xfail a\nrandom skip b", "declared twice"),
            ("\u{0}\u{1} xfail binary", "no case"),
            ("nothing-like-this-* xfail why", "matches no case"),
            ("abi-* xfail a\nabi-* skip b", "declared twice"),
        ] {
            let err = Expectations::parse("f.txt", text).expect_err(text);
            assert!(err.contains(says) && err.starts_with("f.txt:"), "{text}: {err}");
        }
    }
}
