//! Crash-safe file writes: a temporary file beside the target, fsync, rename, fsync of the folder.
//!
//! After a crash at any point a reader sees the old file or the new one, never a torn one.
//! Temporary files start with a dot and are ignored by every reader. A [`FaultHook`] lets tests
//! stop a write at each stage, as a crash would.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a write can be interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStage {
    /// Half of the bytes are in the temporary file.
    PartialWrite,
    /// The temporary file is complete and synced, but not renamed.
    BeforeRename,
    /// The rename happened, the folder is not synced yet.
    AfterRename,
}

/// A test hook called at each [`WriteStage`]; returning `true` simulates a crash there.
#[derive(Clone, Default)]
pub struct FaultHook(Option<Arc<CrashAt>>);

/// The hook's function: whether to crash writing `path` at `stage`.
type CrashAt = dyn Fn(&Path, WriteStage) -> bool + Send + Sync;

impl FaultHook {
    /// A hook that crashes when `f` says so.
    pub fn new(f: impl Fn(&Path, WriteStage) -> bool + Send + Sync + 'static) -> Self {
        FaultHook(Some(Arc::new(f)))
    }

    fn crash_at(&self, path: &Path, stage: WriteStage) -> io::Result<()> {
        hsmkit_backend::crash::crash_point(|| format!("{stage:?} of {}", path.display()));
        match &self.0 {
            Some(f) if f(path, stage) => Err(io::Error::other(format!("simulated crash at {stage:?}"))),
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for FaultHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "FaultHook(set)" } else { "FaultHook(none)" })
    }
}

fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// How a write commits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// Replace whatever is there.
    Replace,
    /// Refuse if the target exists (checked atomically at the commit).
    New,
}

/// Writes `bytes` to `path` atomically, with mode 0600 (owner read/write only). A `path` that is a
/// symbolic link is written through: its target is replaced, the link stays (a card kept on a
/// mounted stick and linked from the cards folder stays on the stick).
pub fn write_atomic(path: &Path, bytes: &[u8], hook: &FaultHook) -> io::Result<()> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        let target = fs::canonicalize(path)?;
        return write_committed(&target, bytes, hook, Commit::Replace);
    }
    write_committed(path, bytes, hook, Commit::Replace)
}

/// Like [`write_atomic`], but the commit fails with `AlreadyExists` if `path` exists by then, so
/// a file made concurrently is never replaced.
pub fn write_atomic_new(path: &Path, bytes: &[u8], hook: &FaultHook) -> io::Result<()> {
    write_committed(path, bytes, hook, Commit::New)
}

fn write_committed(path: &Path, bytes: &[u8], hook: &FaultHook, commit: Commit) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = write_stages(path, &tmp, bytes, hook, commit);
    if let Err(e) = &result {
        // A simulated crash leaves its debris, as a real one would; a real error cleans up.
        if !e.to_string().starts_with("simulated crash") {
            let _ = fs::remove_file(&tmp);
        }
    }
    result
}

fn write_stages(path: &Path, tmp: &Path, bytes: &[u8], hook: &FaultHook, commit: Commit) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp)?;
    let half = bytes.len() / 2;
    file.write_all(&bytes[..half])?;
    hook.crash_at(path, WriteStage::PartialWrite)?;
    file.write_all(&bytes[half..])?;
    file.sync_all()?;
    drop(file);
    hook.crash_at(path, WriteStage::BeforeRename)?;
    match commit {
        Commit::Replace => fs::rename(tmp, path)?,
        Commit::New => {
            // A hard link fails if the target exists: an atomic "create, never replace".
            fs::hard_link(tmp, path)?;
            let _ = fs::remove_file(tmp);
        }
    }
    hook.crash_at(path, WriteStage::AfterRename)?;
    // The new file is committed; a failure to sync the folder only weakens durability.
    if let Some(dir) = path.parent() {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Creates `dir` and its parents; a folder it creates is private to the owner (mode 0700).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The largest world file read (a world with 64 cards is about 10 KiB).
pub const MAX_WORLD_BYTES: u64 = 1 << 20;
/// The largest card file read (about 1 KiB).
pub const MAX_CARD_BYTES: u64 = 64 << 10;
/// The largest NVRAM file read (about 1 KiB).
pub const MAX_NVRAM_BYTES: u64 = 64 << 10;
/// The largest package, key file or other input file a command reads (a `.byok` of an RSA-4096
/// key is about 10 KiB).
pub const MAX_INPUT_BYTES: u64 = 16 << 20;
/// The largest text file (PIN file, PEM key, configuration, expectation file) a command reads.
pub const MAX_TEXT_BYTES: u64 = 1 << 20;

/// Reads `path` as UTF-8 text if it is at most `max` bytes (as [`read_bounded`]).
pub fn read_text_bounded(path: &Path, max: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, max)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{} is not UTF-8 text", path.display())))
}

/// Reads `path` whole if it is at most `max` bytes; a larger file is refused (`InvalidData`,
/// naming the limit) before it is read, so a hostile file costs no memory.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is {len} bytes, more than the {max} bytes such a file can be", path.display()),
        ));
    }
    let mut out = Vec::with_capacity(len as usize);
    file.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} grew past {max} bytes", path.display())));
    }
    Ok(out)
}

/// Removes `path` (a key or object being destroyed), with a crash point before and after.
pub fn remove_file(path: &Path) -> io::Result<()> {
    hsmkit_backend::crash::crash_point(|| format!("before removing {}", path.display()));
    fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    hsmkit_backend::crash::crash_point(|| format!("after removing {}", path.display()));
    Ok(())
}

/// Moves `from` to `to` (same file system) and syncs the folder, with a crash point before and
/// after. A `from` already moved (by a process that got there first) is no error.
pub fn rename_into(from: &Path, to: &Path) -> io::Result<()> {
    hsmkit_backend::crash::crash_point(|| format!("before moving {} to {}", from.display(), to.display()));
    match fs::rename(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound && to.exists() => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(dir) = to.parent() {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    hsmkit_backend::crash::crash_point(|| format!("after moving {} to {}", from.display(), to.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_at_any_stage_leaves_old_or_new_content() {
        for stage in [WriteStage::PartialWrite, WriteStage::BeforeRename, WriteStage::AfterRename] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("world");
            write_atomic(&path, b"old content", &FaultHook::default()).expect("first write");
            let hook = FaultHook::new(move |_, s| s == stage);
            let err = write_atomic(&path, b"new content, longer", &hook).expect_err("crash");
            assert!(err.to_string().contains("simulated crash"));
            let now = fs::read(&path).expect("read");
            let expect: &[u8] = if stage == WriteStage::AfterRename { b"new content, longer" } else { b"old content" };
            assert_eq!(now, expect, "{stage:?}");
        }
    }

    #[test]
    fn a_new_file_never_replaces_one_made_meanwhile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key_simple_k");
        write_atomic_new(&path, b"first", &FaultHook::default()).expect("first");
        let err = write_atomic_new(&path, b"second", &FaultHook::default()).expect_err("exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).expect("read"), b"first");
        assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 1, "no temporary file left");
    }

    #[test]
    fn files_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("card");
        write_atomic(&path, b"x", &FaultHook::default()).expect("write");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
