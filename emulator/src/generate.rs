//! `generatekey`'s `key=value` parameters (nShield's syntax: `type=RSA size=2048 protect=module
//! ident=…`), parsed and checked before anything is made.

use hsmkit_backend::{Error, ErrorKind, Op, Result};

use crate::keyblob::check_ident;

fn bad(op: Op, detail: String, hint: &str) -> Error {
    Error::new(ErrorKind::ArgumentsBad, op).detail(detail).hint(hint.to_string())
}

/// What `generatekey` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `type=RSA size=… pubexp=…`.
    Rsa {
        /// Modulus bits.
        size: u32,
        /// Public exponent.
        pubexp: u64,
    },
    /// `type=ECDSA curve=NISTP256` (or `type=Ed25519`).
    Ec(hsmkit_backend::EcCurve),
}

/// Parsed `key=value` parameters of `generatekey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateParams {
    /// The key's type and size.
    pub kind: KeyKind,
    /// `ident=`: the key's identifier (checked).
    pub ident: String,
    /// `plainname=`: its readable name (the ident when not given).
    pub plainname: String,
}

const KNOWN_PARAMS: &[&str] =
    &["type", "size", "curve", "protect", "ident", "plainname", "nvram", "pubexp", "recovery"];

/// The curve a `curve=` parameter names (nShield's NISTP256, NISTP384, NISTP521, or the usual
/// names).
fn parse_curve(op: Op, text: Option<&str>) -> Result<hsmkit_backend::EcCurve> {
    let text = text.ok_or_else(|| bad(op, "no curve given".into(), "add curve=NISTP256 (or NISTP384, NISTP521)"))?;
    match hsmkit_backend::EcCurve::from_name(text) {
        Some(hsmkit_backend::EcCurve::Ed25519) | None => Err(bad(
            op,
            format!("curve '{text}' is not one type=ECDSA takes"),
            "use curve=NISTP256, NISTP384 or NISTP521 (for Ed25519, type=Ed25519)",
        )),
        Some(c) => Ok(c),
    }
}

impl GenerateParams {
    /// Parses `generatekey`'s `key=value` parameters: every unknown, malformed or unsupported one
    /// is an error that names it and says what to write instead.
    pub fn parse(params: &[String]) -> Result<GenerateParams> {
        let op = Op::GenerateKeyPair;
        let mut map = std::collections::BTreeMap::new();
        for p in params {
            let Some((k, v)) = p.split_once('=') else {
                return Err(bad(
                    op,
                    format!("'{p}' is not key=value"),
                    "write parameters as key=value, for example size=2048",
                ));
            };
            if !KNOWN_PARAMS.contains(&k) {
                return Err(bad(
                    op,
                    format!("unknown parameter '{k}'"),
                    &format!("known parameters: {}", KNOWN_PARAMS.join(", ")),
                ));
            }
            map.insert(k.to_string(), v.to_string());
        }
        let get = |k: &str| map.get(k).map(String::as_str);
        let key_type = get("type").unwrap_or("").to_ascii_uppercase();
        match key_type.as_str() {
            "RSA" | "ECDSA" | "ED25519" => {}
            "" => return Err(bad(op, "no key type given".into(), "add type=RSA (or type=ECDSA curve=NISTP256)")),
            t => {
                return Err(bad(
                    op,
                    format!("key type '{t}' is not supported"),
                    "the emulator's generatekey makes type=RSA, type=ECDSA (with curve=) and type=Ed25519 keys",
                ));
            }
        }
        match get("protect").unwrap_or("module") {
            "module" => {}
            p @ ("token" | "softcard") => {
                return Err(Error::new(ErrorKind::Unsupported, op)
                    .detail(format!("protect={p} (Operator Card Set or softcard protection) is not supported here"))
                    .hint("use protect=module: the BYOK toolset does not support OCS-protected keys"));
            }
            p => {
                return Err(bad(op, format!("unknown protection '{p}'"), "use protect=module"));
            }
        }
        match get("nvram").unwrap_or("no") {
            "no" => {}
            v => {
                return Err(Error::new(ErrorKind::Unsupported, op)
                    .detail(format!("nvram={v} is not supported"))
                    .hint("use nvram=no"));
            }
        }
        let ident = get("ident")
            .ok_or_else(|| bad(op, "no ident given".into(), "add ident=NAME (digits, dashes and lowercase letters)"))?;
        check_ident(ident, op)?;
        let plainname = get("plainname").filter(|s| !s.is_empty()).unwrap_or(ident).to_string();
        let kind = match key_type.as_str() {
            "RSA" => {
                let size_text = get("size").ok_or_else(|| bad(op, "no key size given".into(), "add size=2048"))?;
                let size = size_text
                    .parse::<u32>()
                    .map_err(|_| bad(op, format!("size '{size_text}' is not a number"), "use size=2048"))?;
                let pubexp = match get("pubexp").unwrap_or("") {
                    "" => 65537,
                    hex => u64::from_str_radix(hex.trim_start_matches("0x"), 16).map_err(|_| {
                        bad(
                            op,
                            format!("pubexp '{hex}' is not a hexadecimal number"),
                            "give the exponent in hex (10001 for 65537), or leave it empty",
                        )
                    })?,
                };
                crate::check_rsa_params(size, pubexp)?;
                KeyKind::Rsa { size, pubexp }
            }
            "ECDSA" => KeyKind::Ec(parse_curve(op, get("curve"))?),
            _ => KeyKind::Ec(hsmkit_backend::EcCurve::Ed25519),
        };
        if !matches!(kind, KeyKind::Rsa { .. }) {
            for p in ["size", "pubexp"] {
                if get(p).is_some_and(|v| !v.is_empty()) {
                    return Err(bad(
                        op,
                        format!("{p}= is an RSA parameter"),
                        "an EC key's size is its curve's (curve=)",
                    ));
                }
            }
        }
        Ok(GenerateParams { kind, ident: ident.to_string(), plainname })
    }
}
