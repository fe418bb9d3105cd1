//! The one function that picks a backend from a spec string.

use std::path::PathBuf;

use hsmkit_backend::{Backend, Error, ErrorKind, Op, Result};
use hsmkit_pkcs11_client::{Pkcs11Backend, TokenChoice};

use crate::{Global, env};

/// Opens the backend a spec names:
/// - `emulator`: the emulated module on the kmdata of `--kmdata` / `NFAST_KMDATA`;
/// - `emulator:DIR`: the emulated module on kmdata `DIR`;
/// - `pkcs11:PATH`: the PKCS#11 module at `PATH`, token `token` (else the first).
pub fn open(spec: &str, g: &Global, token: Option<&str>) -> Result<Box<dyn Backend>> {
    if spec == "emulator" {
        return Ok(Box::new(env::emulator(g)?));
    }
    if let Some(dir) = spec.strip_prefix("emulator:") {
        let mut g = g.clone();
        g.kmdata = Some(PathBuf::from(dir));
        return Ok(Box::new(env::emulator(&g)?));
    }
    if let Some(path) = spec.strip_prefix("pkcs11:") {
        let choice = token.map_or(TokenChoice::First, |t| TokenChoice::Label(t.to_string()));
        return Ok(Box::new(Pkcs11Backend::open(path, choice)?));
    }
    Err(Error::new(ErrorKind::ArgumentsBad, Op::Initialize)
        .detail(format!("unknown backend '{spec}'"))
        .hint("use emulator, emulator:KMDATA or pkcs11:/path/to/module.so"))
}
