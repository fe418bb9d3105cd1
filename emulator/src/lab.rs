//! Throwaway worlds ([`WorldLab`]): a new module and world in a temporary folder of their own,
//! removed when dropped. The conformance kit's `world` profile locks cards and binds keys to other
//! worlds there, and never on the world the user pointed it at.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use hsmkit_backend::{
    Backend, BackendInfo, Capabilities, Error, ErrorKind, Op, Pin, Result, Session, SessionMode, SlotId, WorldLab,
};

use crate::suite::CipherSuite;
use crate::world::Quorum;
use crate::{Config, Emulator};

/// A module and its world in a temporary folder, removed on drop.
pub struct ScratchWorld {
    emu: Emulator,
    dir: PathBuf,
}

impl fmt::Debug for ScratchWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScratchWorld").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Drop for ScratchWorld {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Backend for ScratchWorld {
    fn info(&self) -> Result<BackendInfo> {
        self.emu.info()
    }
    fn capabilities(&self) -> Result<Capabilities> {
        self.emu.capabilities()
    }
    fn slots(&self) -> Result<Vec<SlotId>> {
        self.emu.slots()
    }
    fn open_session(&self, slot: SlotId, mode: SessionMode) -> Result<Box<dyn Session + '_>> {
        self.emu.open_session(slot, mode)
    }
    fn world_lab(&self) -> Option<&dyn WorldLab> {
        Some(&self.emu)
    }
}

impl WorldLab for Emulator {
    fn scratch_world(&self, quorum: (u8, u8), pins: &[Pin]) -> Result<Box<dyn Backend>> {
        static MADE: AtomicU64 = AtomicU64::new(0);
        let suite = self.world()?.map_or(CipherSuite::DLf3072s256mAEScSP800131Ar1, |w| w.suite());
        let io = |what: &str, path: &std::path::Path, e: std::io::Error| {
            Error::new(ErrorKind::Io, Op::CreateWorld)
                .detail(format!("cannot make a scratch world's {what} {}: {e}", path.display()))
                .hint("set TMPDIR to a writable folder")
        };
        // A folder of this process's own: made here (never one that already exists, whatever its
        // name), readable by its owner only, and tried again under another name if taken.
        let dir = (0..16)
            .map(|_| {
                let nanos =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                std::env::temp_dir().join(format!(
                    "hsmkit-scratch-world-{}-{}-{nanos:x}",
                    std::process::id(),
                    MADE.fetch_add(1, Ordering::Relaxed)
                ))
            })
            .find_map(|dir| {
                use std::os::unix::fs::DirBuilderExt;
                match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                    Ok(()) => Some(Ok(dir)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                    Err(e) => Some(Err(io("folder", &dir, e))),
                }
            })
            .unwrap_or_else(|| Err(io("folder", &std::env::temp_dir(), std::io::ErrorKind::AlreadyExists.into())))?;
        let kmdata = dir.join("kmdata");
        if let Err(e) = std::fs::create_dir(&kmdata) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(io("kmdata folder", &kmdata, e));
        }
        let emu = match Emulator::open(Config::beside(&kmdata)) {
            Ok(emu) => emu,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        // From here the folder goes with the scratch world, whatever happens.
        let scratch = ScratchWorld { emu, dir };
        scratch.emu.create_world(suite, Quorum { k: quorum.0, n: quorum.1 }, pins)?;
        Ok(Box::new(scratch))
    }
}
