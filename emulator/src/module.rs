//! The module itself: its serial number (ESN), its mode and its NVRAM.
//!
//! NVRAM is a folder of the module's own, apart from kmdata: it holds the module key KM once the
//! module is in a world. It stands for the module's tamper-protected memory; protect the folder
//! as you would the module (files are written with mode 0600).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use hsmkit_backend::{Error, ErrorKind, Op, Result};

use crate::fsio::{FaultHook, write_atomic};
use crate::rng::HsmRng;

/// The module's mode (the nShield front-panel switch and `nopclearfail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// `O`: normal operation.
    Operational,
    /// `I`: pre-initialisation; a new world can be created.
    Initialisation,
    /// `M`: maintenance; firmware can be upgraded.
    Maintenance,
}

impl Mode {
    /// The mode's front-panel letter and name.
    pub fn describe(self) -> &'static str {
        match self {
            Mode::Operational => "operational",
            Mode::Initialisation => "initialisation",
            Mode::Maintenance => "maintenance",
        }
    }
}

/// The NVRAM file's contents.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nvram {
    /// Electronic serial number, `XXXX-XXXX-XXXX`.
    pub esn: String,
    /// Current mode.
    pub mode: Mode,
    /// The module key of the world the module is in (hex), if any.
    #[serde(default, with = "opt_secret_hex")]
    pub km: Option<Zeroizing<Vec<u8>>>,
    /// Hash of that KM (hex).
    #[serde(default)]
    pub hkm: Option<String>,
    /// The identity (hash of KNSO, hex) of the world the module joined: a world file with the
    /// same module key but another KNSO (a forged world) is refused. Absent for modules
    /// programmed before it was kept; they are pinned when next programmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hknso: Option<String>,
    /// The module's randomness is seeded (test output, never real keys): set when the module is
    /// first written by a seeded run. Seeded and unseeded runs never share a module.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seeded: bool,
    /// How many seeded runs opened the module: mixed into the seeded generator, so two runs do
    /// not repeat each other's keys (zero, not written, for an unseeded module).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
    /// SHA-256 of the world file (hex) as the module last verified it: a load of the same bytes
    /// skips the KNSO signature check. Recorded when the module makes or joins the world.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world_sha256: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl std::fmt::Debug for Nvram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nvram")
            .field("esn", &self.esn)
            .field("mode", &self.mode)
            .field("km", &self.km.as_ref().map(|_| "<redacted>"))
            .field("hkm", &self.hkm)
            .field("hknso", &self.hknso)
            .field("seeded", &self.seeded)
            .finish()
    }
}

impl Nvram {
    /// Parses the NVRAM file's bytes (`path` names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Nvram> {
        let nv: Nvram = serde_json::from_slice(bytes).map_err(|_| {
            Error::new(ErrorKind::Corrupt, Op::Module)
                .detail(format!("the module's NVRAM file {} is damaged", path.display()))
                .hint(
                    "restore it, or remove the NVRAM folder to start a fresh module and load the world with its cards",
                )
        })?;
        if !valid_esn(&nv.esn) {
            return Err(Error::new(ErrorKind::Corrupt, Op::Module)
                .detail(format!("the module's NVRAM file {} has an invalid serial number", path.display())));
        }
        Ok(nv)
    }
}

/// Reads the module's NVRAM from `dir`, or starts a fresh module if it has none.
pub fn open_or_create(dir: &Path, rng: &mut HsmRng) -> Result<(Nvram, PathBuf)> {
    let path = dir.join("module");
    match crate::fsio::read_bounded(&path, crate::fsio::MAX_NVRAM_BYTES).map(Zeroizing::new) {
        Ok(bytes) => Ok((Nvram::from_bytes(&bytes, &path)?, path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A fresh module: nothing is written until its state changes (a world is loaded),
            // so a command that fails leaves no trace.
            let b: [u8; 6] = rng.array();
            let esn = format!("{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}", b[0], b[1], b[2], b[3], b[4], b[5]);
            Ok((
                Nvram {
                    esn,
                    mode: Mode::Operational,
                    km: None,
                    hkm: None,
                    hknso: None,
                    seeded: rng.is_seeded(),
                    epoch: 0,
                    world_sha256: None,
                },
                path,
            ))
        }
        Err(e) => Err(Error::new(ErrorKind::Io, Op::Module).detail(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Whether `esn` has the form `XXXX-XXXX-XXXX` (hex digits).
pub fn valid_esn(esn: &str) -> bool {
    let parts: Vec<&str> = esn.split('-').collect();
    parts.len() == 3 && parts.iter().all(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Writes NVRAM crash-safely, making its folder (mode 0700) if needed.
pub fn save(nv: &Nvram, path: &Path, hook: &FaultHook) -> Result<()> {
    if let Some(dir) = path.parent() {
        crate::fsio::create_private_dir(dir).map_err(|e| {
            Error::new(ErrorKind::Io, Op::Module)
                .detail(format!("cannot create the NVRAM folder {}: {e}", dir.display()))
        })?;
    }
    let bytes = Zeroizing::new(
        serde_json::to_vec_pretty(nv).map_err(|e| Error::new(ErrorKind::Device, Op::Module).detail(e.to_string()))?,
    );
    write_atomic(path, &bytes, hook).map_err(|e| {
        Error::new(ErrorKind::Io, Op::Module).detail(format!("cannot write NVRAM {}: {e}", path.display()))
    })
}

mod opt_secret_hex {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(v: &Option<Zeroizing<Vec<u8>>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&*Zeroizing::new(hex::encode(b.as_slice()))),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Zeroizing<Vec<u8>>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        let s = s.map(Zeroizing::new);
        s.map(|h| hex::decode(h.as_str()).map(Zeroizing::new).map_err(serde::de::Error::custom)).transpose()
    }
}

/// Holds the lock file beside the NVRAM file at `path` (`module.lock`) until dropped: every
/// read-modify-write of NVRAM by more than one process runs under it.
pub fn lock(path: &Path) -> Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let lock_path = path.with_file_name("module.lock");
    let io = |e: std::io::Error| {
        Error::new(ErrorKind::Io, Op::Module).detail(format!("cannot lock {}: {e}", lock_path.display()))
    };
    let file =
        fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&lock_path).map_err(io)?;
    file.lock().map_err(io)?;
    Ok(file)
}
