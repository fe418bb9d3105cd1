//! Where the emulator's files live: `--kmdata`, else `NFAST_KMDATA`, else a per-user default.

use std::path::PathBuf;

use hsmkit_backend::{Error, ErrorKind, Op, Result};
use hsmkit_emulator::rng::Clock;
use hsmkit_emulator::{Config, Emulator};

use crate::Global;

/// The fixed clock of a seeded run: 2026-01-01T00:00:00Z.
pub const SEEDED_TIME_MS: u64 = 1_767_225_600_000;

/// The per-user default kmdata folder: `$XDG_DATA_HOME/hsmkit/kmdata`, else
/// `~/.local/share/hsmkit/kmdata`; an error when neither variable is set (never a folder where the
/// command happens to stand).
fn default_kmdata() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or_else(|| {
            Error::new(ErrorKind::ArgumentsBad, Op::Initialize)
                .detail("no kmdata folder is named, and neither XDG_DATA_HOME nor HOME is set")
                .hint("give --kmdata DIR or set NFAST_KMDATA")
        })?;
    Ok(base.join("hsmkit").join("kmdata"))
}

/// The emulator's configuration from the command line and environment. The kmdata folder must
/// exist, named or the per-user default: only the commands that make a world make it
/// ([`config_making_kmdata`]).
pub fn config(g: &Global) -> Result<Config> {
    config_with(g, false)
}

/// [`config`] for a command that writes a world: the per-user default kmdata folder is made
/// (owner-only) if it is missing.
pub fn config_making_kmdata(g: &Global) -> Result<Config> {
    config_with(g, true)
}

fn config_with(g: &Global, make_default: bool) -> Result<Config> {
    let named = g.kmdata.clone().or_else(|| std::env::var_os("NFAST_KMDATA").map(PathBuf::from));
    let kmdata = match named {
        Some(p) => p,
        None => {
            let p = default_kmdata()?;
            if make_default {
                hsmkit_emulator::fsio::create_private_dir(&p).map_err(|e| {
                    Error::new(ErrorKind::Io, Op::Initialize).detail(format!("cannot create {}: {e}", p.display()))
                })?;
            }
            p
        }
    };
    let mut c = Config::beside(kmdata);
    if let Some(d) = &g.cards {
        c.cards = d.clone();
    }
    if let Some(d) = &g.nvram {
        c.nvram = d.clone();
    }
    if let Some(seed) = g.seed {
        eprintln!(
            "hsmkit: WARNING: --seed {seed}: randomness is seeded and the clock fixed; the output is reproducible and NOT for real keys"
        );
        c.seed = Some(seed);
        c.clock = Clock::Fixed(SEEDED_TIME_MS);
    }
    Ok(c)
}

/// Opens the emulator.
pub fn emulator(g: &Global) -> Result<Emulator> {
    Emulator::open(config(g)?)
}

/// The emulator for a command that makes a world (`new-world --initialize`): the per-user default
/// kmdata folder is made if missing.
pub fn emulator_making_kmdata(g: &Global) -> Result<Emulator> {
    Emulator::open(config_making_kmdata(g)?)
}
