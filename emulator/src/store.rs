//! Objects that are not keys: PKCS#11 data objects (`CKO_DATA`) and certificates
//! (`CKO_CERTIFICATE`), as applications store them beside their keys.
//!
//! A token object is a file `local/obj_<ident>` in kmdata. Its header (class, whether it is a
//! private object, the world's `hkm`) is in the clear; its attributes are sealed with AES-256-GCM
//! under a key derived from the world's module key KM, with the header as associated data. So every
//! byte is authenticated (an edited label, value or header is refused), a private object's value is
//! confidential, and the file opens only in a module of its world. Session objects never touch
//! the disk. Attributes are kept as the caller gave them, by `CKA_*` number; what each class may
//! hold is the PKCS#11 module's business.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use hsmkit_backend::{Error, ErrorKind, Op, Result};

use crate::emulator::Emulator;
use crate::fsio::FaultHook;
use crate::suite::{Sealed, derive_key, open, seal};

/// The header's `format`.
pub const OBJECT_FORMAT: &str = "hsmkit-object";
/// The file name prefix of token objects.
pub const OBJECT_PREFIX: &str = "obj_";
/// The most attributes an object holds.
pub const MAX_ATTRIBUTES: usize = 64;
/// The most bytes of attribute values an object holds.
pub const MAX_OBJECT_BYTES: usize = 1 << 20;

/// The clear, authenticated part of an object file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectHeader {
    /// Always [`OBJECT_FORMAT`].
    pub format: String,
    /// Format version, 1.
    pub version: u32,
    /// The object's identifier (`ob` and 16 hex digits), also its file name after `obj_`.
    pub ident: String,
    /// `CKA_CLASS`.
    pub class: u64,
    /// `CKA_PRIVATE`: seen only by the logged-in user.
    pub private: bool,
    /// The hash of the module key the object is sealed under.
    #[serde(with = "hex")]
    pub hkm: Vec<u8>,
}

/// An object file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectFile {
    /// The header.
    pub header: ObjectHeader,
    /// The attributes, sealed under KM.
    pub sealed: Sealed,
}

/// One object, opened: its header and attributes. Values may be secrets (a private data
/// object's value): they are zeroized when dropped and `Debug` shows their lengths only.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The header.
    pub header: ObjectHeader,
    /// Attributes by `CKA_*` number (`CKA_CLASS` and `CKA_PRIVATE` come from the header).
    pub attrs: BTreeMap<u64, Zeroizing<Vec<u8>>>,
    /// The file of a token object; `None` for a session object.
    pub path: Option<PathBuf>,
}

impl std::fmt::Debug for StoredObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lens: Vec<(u64, usize)> = self.attrs.iter().map(|(k, v)| (*k, v.len())).collect();
        f.debug_struct("StoredObject").field("header", &self.header).field("attr_lengths", &lens).finish()
    }
}

fn header_bytes(h: &ObjectHeader, op: Op) -> Result<Vec<u8>> {
    serde_json::to_vec(h).map_err(|e| Error::new(ErrorKind::Device, op).detail(e.to_string()))
}

fn corrupt(path: &Path, why: &str) -> Error {
    Error::new(ErrorKind::Corrupt, Op::LoadKey)
        .detail(format!("the object file {} {why}", path.display()))
        .hint("restore it from your backup; an object file cannot be repaired by hand")
}

/// The attributes as sealed: `[[cka, "hex"], …]` in order.
#[derive(Serialize, Deserialize)]
struct Plain(Vec<(u64, String)>);

/// Checks that `attrs` stays within the limits.
pub fn check_size(attrs: &BTreeMap<u64, Zeroizing<Vec<u8>>>, op: Op) -> Result<()> {
    let bytes: usize = attrs.values().map(|v| v.len()).sum();
    if attrs.len() > MAX_ATTRIBUTES || bytes > MAX_OBJECT_BYTES {
        return Err(Error::new(ErrorKind::DataLenRange, op).detail(format!(
            "an object holds at most {MAX_ATTRIBUTES} attributes and {MAX_OBJECT_BYTES} bytes, not {} and {bytes}",
            attrs.len()
        )));
    }
    Ok(())
}

impl ObjectFile {
    fn seal(obj: &StoredObject, km: &[u8], nonce: [u8; 12], op: Op) -> Result<ObjectFile> {
        check_size(&obj.attrs, op)?;
        let plain = Plain(obj.attrs.iter().map(|(k, v)| (*k, hex::encode(v.as_slice()))).collect());
        let text = Zeroizing::new(
            serde_json::to_vec(&plain).map_err(|e| Error::new(ErrorKind::Device, op).detail(e.to_string()))?,
        );
        let key = derive_key(km, "hsmkit object file")?;
        let sealed = seal(key.as_ref(), nonce, &header_bytes(&obj.header, op)?, &text)?;
        Ok(ObjectFile { header: obj.header.clone(), sealed })
    }

    /// Parses an object file, refusing what it cannot trust before anything is opened.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<ObjectFile> {
        let file: ObjectFile =
            serde_json::from_slice(bytes).map_err(|_| corrupt(path, "is not a readable hsmkit object"))?;
        let h = &file.header;
        if h.format != OBJECT_FORMAT || h.version != 1 {
            return Err(corrupt(path, "is not an hsmkit object of a known version"));
        }
        if path.file_name().and_then(|n| n.to_str()) != Some(&format!("{OBJECT_PREFIX}{}", h.ident)) {
            return Err(corrupt(path, "does not carry the name it is stored under"));
        }
        Ok(file)
    }

    /// Opens the attributes under `km`.
    pub fn open(&self, km: &[u8], path: &Path) -> Result<StoredObject> {
        let key = derive_key(km, "hsmkit object file")?;
        let text = open(key.as_ref(), &header_bytes(&self.header, Op::LoadKey)?, &self.sealed).ok_or_else(|| {
            corrupt(path, "failed its integrity check: it was edited, damaged or is of another world")
        })?;
        let plain: Plain = serde_json::from_slice(&text).map_err(|_| corrupt(path, "holds unreadable attributes"))?;
        let mut attrs = BTreeMap::new();
        for (k, v) in plain.0 {
            let v = hex::decode(v).map_err(|_| corrupt(path, "holds unreadable attributes"))?;
            if attrs.insert(k, Zeroizing::new(v)).is_some() {
                return Err(corrupt(path, "holds an attribute twice"));
            }
        }
        Ok(StoredObject { header: self.header.clone(), attrs, path: Some(path.to_path_buf()) })
    }
}

fn io(op: Op, path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Io, op).detail(format!("cannot use {}: {e}", path.display()))
}

impl Emulator {
    /// A new object (not yet stored) of `class`, with a fresh identifier.
    pub fn new_object(
        &self,
        class: u64,
        private: bool,
        attrs: BTreeMap<u64, Zeroizing<Vec<u8>>>,
    ) -> Result<StoredObject> {
        let op = Op::ImportKey;
        let world = self.require_world(op)?;
        let id: [u8; 8] = self.rng(op)?.array();
        let header = ObjectHeader {
            format: OBJECT_FORMAT.into(),
            version: 1,
            ident: format!("ob{}", hex::encode(id)),
            class,
            private,
            hkm: world.hkm().to_vec(),
        };
        check_size(&attrs, op)?;
        Ok(StoredObject { header, attrs, path: None })
    }

    /// Where the token object `ident` lives.
    pub fn object_path(&self, ident: &str) -> PathBuf {
        self.config().kmdata.join("local").join(format!("{OBJECT_PREFIX}{ident}"))
    }

    fn write_object(&self, obj: &StoredObject, path: &Path, new: bool, op: Op) -> Result<()> {
        let (_, km) = self.module_key(op)?;
        let nonce = self.rng(op)?.array();
        let file = ObjectFile::seal(obj, &km, nonce, op)?;
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| Error::new(ErrorKind::Device, op).detail(e.to_string()))?;
        let hook: &FaultHook = &self.config().faults;
        if new {
            crate::fsio::write_atomic_new(path, &bytes, hook).map_err(io(op, path))
        } else {
            crate::fsio::write_atomic(path, &bytes, hook).map_err(io(op, path))
        }
    }

    /// Stores `obj` as a token object (a new file; never replaces one). Returns it with its path.
    pub fn save_object(&self, mut obj: StoredObject) -> Result<StoredObject> {
        let path = self.object_path(&obj.header.ident);
        self.write_object(&obj, &path, true, Op::SaveKey)?;
        obj.path = Some(path);
        Ok(obj)
    }

    /// Holds `local/objects.lock` exclusively: every change of a stored object, in any process,
    /// runs under it, so none is lost to another or undone by a stale copy.
    fn objects_lock(&self, op: Op) -> Result<fs::File> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.config().kmdata.join("local").join("objects.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(op, &path))?;
        file.lock().map_err(io(op, &path))?;
        Ok(file)
    }

    /// Changes the token object at `path`: read again under the objects' lock (another process
    /// may have changed or destroyed it), changed by `edit`, written back crash-safely.
    pub fn update_object(
        &self,
        path: &Path,
        edit: impl FnOnce(&mut StoredObject) -> Result<()>,
    ) -> Result<StoredObject> {
        let op = Op::ChangeAcl;
        let _held = self.objects_lock(op)?;
        let mut obj = self.load_object(path)?;
        edit(&mut obj)?;
        self.write_object(&obj, path, false, op)?;
        Ok(obj)
    }

    /// Removes the token object at `path` (under the objects' lock).
    pub fn destroy_object(&self, path: &Path) -> Result<()> {
        let _held = self.objects_lock(Op::DestroyKey)?;
        crate::fsio::remove_file(path).map_err(|e| {
            let kind =
                if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::ObjectHandleInvalid } else { ErrorKind::Io };
            Error::new(kind, Op::DestroyKey).detail(format!("cannot remove {}: {e}", path.display()))
        })
    }

    /// Reads and opens the token object at `path`.
    pub fn load_object(&self, path: &Path) -> Result<StoredObject> {
        let op = Op::LoadKey;
        let (world, km) = self.module_key(op)?;
        let bytes = crate::fsio::read_bounded(path, MAX_OBJECT_BYTES as u64 * 4).map_err(|e| {
            let kind =
                if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::ObjectHandleInvalid } else { ErrorKind::Io };
            Error::new(kind, op).detail(format!("cannot read {}: {e}", path.display()))
        })?;
        let file = ObjectFile::parse(&bytes, path)?;
        if file.header.hkm != world.hkm() {
            return Err(corrupt(path, "belongs to another security world"));
        }
        file.open(&km, path)
    }

    /// The token objects of this world, opened (`nkminfo` lists them; the PKCS#11 module finds
    /// them). A damaged object file is an error that names it.
    pub fn list_objects(&self) -> Result<Vec<StoredObject>> {
        let local = self.config().kmdata.join("local");
        let entries = match fs::read_dir(&local) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(Op::FindKeys, &local)(e)),
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(OBJECT_PREFIX)))
            .collect();
        paths.sort();
        paths.iter().map(|p| self.load_object(p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emulator() -> (tempfile::TempDir, Emulator) {
        let dir = tempfile::tempdir().expect("tmp");
        let kmdata = dir.path().join("kmdata");
        fs::create_dir(&kmdata).expect("kmdata");
        let emu = Emulator::open(crate::Config::beside(&kmdata)).expect("open");
        emu.create_world(
            crate::suite::CipherSuite::DLf3072s256mAEScSP800131Ar1,
            crate::world::Quorum { k: 1, n: 1 },
            &[hsmkit_backend::Pin::from("p".to_string())],
        )
        .expect("world");
        (dir, emu)
    }

    fn attrs() -> BTreeMap<u64, Zeroizing<Vec<u8>>> {
        [(3u64, b"label".to_vec()), (0x11, b"secret value".to_vec())]
            .into_iter()
            .map(|(k, v)| (k, Zeroizing::new(v)))
            .collect()
    }

    #[test]
    fn objects_round_trip_and_every_byte_is_authenticated() {
        let (_d, emu) = emulator();
        let obj = emu.save_object(emu.new_object(0, true, attrs()).expect("new")).expect("save");
        let path = obj.path.clone().expect("path");
        let listed = emu.list_objects().expect("list");
        assert_eq!(listed, vec![obj.clone()]);
        let bytes = fs::read(&path).expect("read");
        assert!(!String::from_utf8_lossy(&bytes).contains("secret value"), "the value is sealed");
        assert!(!String::from_utf8_lossy(&bytes).contains(&hex::encode("secret value")), "the value is sealed");
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            fs::write(&path, &bytes[..cut]).expect("truncate");
            assert_eq!(emu.load_object(&path).expect_err("truncated").kind(), &ErrorKind::Corrupt);
        }
        let mut refused = 0;
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            fs::write(&path, &b).expect("flip");
            match emu.load_object(&path) {
                Err(e) => {
                    assert_eq!(e.kind(), &ErrorKind::Corrupt, "flip at {i}: {e}");
                    refused += 1;
                }
                // JSON whitespace and hex letter case carry no meaning; the object read is the same.
                Ok(o) => assert_eq!(o, obj, "flip at {i} changed the object unnoticed"),
            }
        }
        assert!(refused > bytes.len() / 2, "{refused} of {} flips refused", bytes.len());
        // A file renamed to another object's name is refused.
        fs::write(&path, &bytes).expect("restore");
        let other = emu.object_path("ob0000000000000000");
        fs::copy(&path, &other).expect("copy");
        assert_eq!(emu.load_object(&other).expect_err("renamed").kind(), &ErrorKind::Corrupt);
        fs::remove_file(&other).expect("rm");
        // Changed and rewritten; destroyed.
        emu.update_object(&path, |o| {
            o.attrs.insert(3, Zeroizing::new(b"renamed".to_vec()));
            Ok(())
        })
        .expect("update");
        assert_eq!(emu.load_object(&path).expect("load").attrs[&3].as_slice(), b"renamed");
        emu.destroy_object(&path).expect("destroy");
        assert!(emu.list_objects().expect("list").is_empty());
    }

    #[test]
    fn hostile_sizes_and_headers_are_refused() {
        let (_d, emu) = emulator();
        let big: BTreeMap<u64, Zeroizing<Vec<u8>>> = (0..100u64).map(|k| (k, Zeroizing::new(vec![0u8; 4]))).collect();
        assert_eq!(emu.new_object(0, false, big).expect_err("too many").kind(), &ErrorKind::DataLenRange);
        let obj = emu.save_object(emu.new_object(1, false, attrs()).expect("new")).expect("save");
        let path = obj.path.expect("path");
        let text = fs::read_to_string(&path).expect("read");
        for (from, to) in [
            ("\"version\": 1", "\"version\": 2"),
            ("\"private\": false", "\"private\": true"),
            ("\"class\": 1", "\"class\": 0"),
        ] {
            fs::write(&path, text.replace(from, to)).expect("edit");
            assert_eq!(emu.load_object(&path).expect_err(to).kind(), &ErrorKind::Corrupt, "{to}");
        }
        fs::write(&path, text.replace("\"version\": 1", "\"version\": 1, \"extra\": 0")).expect("edit");
        assert_eq!(emu.load_object(&path).expect_err("unknown field").kind(), &ErrorKind::Corrupt);
    }
}
