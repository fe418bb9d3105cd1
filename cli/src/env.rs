//! Where the emulator's files live: `--kmdata`, else `NFAST_KMDATA`, else a per-user default.

use std::path::PathBuf;

use hsmkit_backend::{Error, ErrorKind, Op, Result};
use hsmkit_emulator::rng::Clock;
use hsmkit_emulator::{Config, Emulator};

use crate::Global;

/// The fixed clock of a seeded run: 2026-01-01T00:00:00Z.
pub const SEEDED_TIME_MS: u64 = 1_767_225_600_000;

fn default_kmdata() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("hsmkit").join("kmdata")
}

/// The emulator's configuration from the command line and environment. A kmdata folder named
/// by the user must exist; the per-user default is created.
pub fn config(g: &Global) -> Result<Config> {
    let named = g.kmdata.clone().or_else(|| std::env::var_os("NFAST_KMDATA").map(PathBuf::from));
    let kmdata = match named {
        Some(p) => p,
        None => {
            let p = default_kmdata();
            std::fs::create_dir_all(&p).map_err(|e| {
                Error::new(ErrorKind::Io, Op::Initialize).detail(format!("cannot create {}: {e}", p.display()))
            })?;
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
