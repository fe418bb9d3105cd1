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
    open_with(spec, g, &ModuleOptions { token, ..ModuleOptions::default() })
}

/// How to open a PKCS#11 module's token: by label or slot id, and the initialisation string
/// some modules need in `C_Initialize`'s `pReserved` (NSS softokn's `configdir=…`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ModuleOptions<'a> {
    /// The token's label.
    pub token: Option<&'a str>,
    /// The slot id (instead of a label).
    pub slot: Option<u64>,
    /// The initialisation string.
    pub init_args: Option<&'a str>,
}

/// The global options an emulator spec (`emulator`, `emulator:DIR`) stands for; `None` for
/// other specs.
fn emulator_global(spec: &str, g: &Global) -> Option<Global> {
    let mut g = g.clone();
    if spec != "emulator" {
        g.kmdata = Some(PathBuf::from(spec.strip_prefix("emulator:")?));
    }
    Some(g)
}

/// The emulator configuration (kmdata, NVRAM, cards, seed) of an emulator spec; `None` for other
/// specs.
pub fn emulator_config(spec: &str, g: &Global) -> Result<Option<hsmkit_emulator::Config>> {
    emulator_global(spec, g).map(|g| env::config(&g)).transpose()
}

/// As [`open`], with the token chosen by label or slot and a module's initialisation string.
pub fn open_with(spec: &str, g: &Global, o: &ModuleOptions<'_>) -> Result<Box<dyn Backend>> {
    let token = o.token;
    let init_args = o.init_args;
    if let Some(g) = emulator_global(spec, g) {
        return Ok(Box::new(env::emulator(&g)?));
    }
    if let Some(path) = spec.strip_prefix("pkcs11:") {
        let choice = match (token, o.slot) {
            (Some(t), _) => TokenChoice::Label(t.to_string()),
            (None, Some(slot)) => TokenChoice::Slot(slot),
            (None, None) => TokenChoice::First,
        };
        return Ok(Box::new(Pkcs11Backend::open_with(path, choice, init_args)?));
    }
    Err(Error::new(ErrorKind::ArgumentsBad, Op::Initialize)
        .detail(format!("unknown backend '{spec}'"))
        .hint("use emulator, emulator:KMDATA or pkcs11:/path/to/module.so"))
}
