//! Objects that are not keys: data objects (`CKO_DATA`: `CKA_APPLICATION`, `CKA_OBJECT_ID`,
//! `CKA_VALUE`) and X.509 certificates (`CKO_CERTIFICATE`, `CKC_X_509`), token and session
//! (PKCS#11 §4.5, §4.6).
//!
//! Token objects are the emulator's object files in kmdata ([`hsmkit_emulator::store`]), read
//! from disk on every use, so another process's change is seen at once; a handle names a file.
//! Session objects live in the library and go with the session that made them. Their handles are
//! at or above [`STORED_BASE`], apart from the emulator's key handles.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use cryptoki_sys as ck;
use cryptoki_sys::{CK_ATTRIBUTE_TYPE, CK_OBJECT_HANDLE, CK_SESSION_HANDLE, CK_ULONG};
use sha1::Digest as _;
use zeroize::Zeroizing;

use hsmkit_emulator::store::StoredObject;

use crate::ffi::{Answer, Result, Rv, rv};
use crate::objects::{Template, private_allowed};
use crate::state::{Library, Session};

/// The first handle of a stored object.
pub const STORED_BASE: CK_OBJECT_HANDLE = 1 << 40;

/// Whether `h` names a stored object.
pub fn is_stored(h: CK_OBJECT_HANDLE) -> bool {
    h >= STORED_BASE
}

/// Where a stored object is.
enum Place {
    /// A token object: its file.
    Token(PathBuf),
    /// A session object, owned by a session.
    Session { owner: CK_SESSION_HANDLE, obj: StoredObject },
}

struct Entry {
    slot: usize,
    place: Place,
}

/// The library's stored-object handles.
#[derive(Default)]
pub struct StoredTable {
    next: u64,
    entries: HashMap<CK_OBJECT_HANDLE, Entry>,
}

impl StoredTable {
    fn new_handle(&mut self) -> CK_OBJECT_HANDLE {
        self.next += 1;
        STORED_BASE + self.next
    }

    /// The handle of the token object file `path` of slot index `slot` (the same handle each time).
    fn token_handle(&mut self, slot: usize, path: &PathBuf) -> CK_OBJECT_HANDLE {
        let found = self
            .entries
            .iter()
            .find(|(_, e)| e.slot == slot && matches!(&e.place, Place::Token(p) if p == path))
            .map(|(h, _)| *h);
        found.unwrap_or_else(|| {
            let h = self.new_handle();
            self.entries.insert(h, Entry { slot, place: Place::Token(path.clone()) });
            h
        })
    }

    /// Forgets every handle of slot index `slot` (its token was initialised again).
    pub fn drop_slot(&mut self, slot: usize) {
        self.entries.retain(|_, e| e.slot != slot);
    }

    /// Forgets the session objects of the sessions `gone` (they closed).
    pub fn drop_sessions(&mut self, gone: &[CK_SESSION_HANDLE]) {
        self.entries.retain(|_, e| !matches!(&e.place, Place::Session { owner, .. } if gone.contains(owner)));
    }
}

const CERTIFICATE_CLASS: u64 = ck::CKO_CERTIFICATE;
const DATA_CLASS: u64 = ck::CKO_DATA;

/// Attributes a caller may give, by class.
const STORAGE: &[CK_ATTRIBUTE_TYPE] = &[
    ck::CKA_CLASS,
    ck::CKA_TOKEN,
    ck::CKA_PRIVATE,
    ck::CKA_MODIFIABLE,
    ck::CKA_COPYABLE,
    ck::CKA_DESTROYABLE,
    ck::CKA_LABEL,
];
const DATA: &[CK_ATTRIBUTE_TYPE] = &[ck::CKA_APPLICATION, ck::CKA_OBJECT_ID, ck::CKA_VALUE];
const CERTIFICATE: &[CK_ATTRIBUTE_TYPE] = &[
    ck::CKA_CERTIFICATE_TYPE,
    ck::CKA_TRUSTED,
    ck::CKA_CERTIFICATE_CATEGORY,
    ck::CKA_START_DATE,
    ck::CKA_END_DATE,
    ck::CKA_PUBLIC_KEY_INFO,
    ck::CKA_SUBJECT,
    ck::CKA_ID,
    ck::CKA_ISSUER,
    ck::CKA_SERIAL_NUMBER,
    ck::CKA_VALUE,
    ck::CKA_URL,
    ck::CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
    ck::CKA_HASH_OF_ISSUER_PUBLIC_KEY,
    ck::CKA_JAVA_MIDP_SECURITY_DOMAIN,
    ck::CKA_NAME_HASH_ALGORITHM,
];
/// Attributes that never change after the object is made (§4.4, §4.6).
const FIXED: &[CK_ATTRIBUTE_TYPE] = &[
    ck::CKA_CLASS,
    ck::CKA_TOKEN,
    ck::CKA_PRIVATE,
    ck::CKA_MODIFIABLE,
    ck::CKA_CERTIFICATE_TYPE,
    ck::CKA_CERTIFICATE_CATEGORY,
    ck::CKA_CHECK_VALUE,
    ck::CKA_UNIQUE_ID,
    ck::CKA_NAME_HASH_ALGORITHM,
];
/// Attributes only the module sets.
const MODULE_SET: &[CK_ATTRIBUTE_TYPE] = &[ck::CKA_CHECK_VALUE, ck::CKA_UNIQUE_ID];

fn bool_of(v: &[u8]) -> Result<bool> {
    match v {
        [b] => Ok(*b != 0),
        _ => Err(rv::ATTRIBUTE_VALUE_INVALID),
    }
}

fn ulong_of(v: &[u8]) -> Result<CK_ULONG> {
    Ok(CK_ULONG::from_ne_bytes(v.try_into().map_err(|_| rv::ATTRIBUTE_VALUE_INVALID)?))
}

/// A `CK_DATE`: empty, or eight ASCII digits `YYYYMMDD`.
pub(crate) fn check_date(v: &[u8]) -> Result<()> {
    if v.is_empty() || (v.len() == 8 && v.iter().all(u8::is_ascii_digit)) {
        Ok(())
    } else {
        Err(rv::ATTRIBUTE_VALUE_INVALID)
    }
}

/// Whether `class` is one the module stores as an object that is not a key.
pub fn stores(class: CK_ULONG) -> bool {
    matches!(class, DATA_CLASS | CERTIFICATE_CLASS)
}

fn known(class: u64) -> &'static [CK_ATTRIBUTE_TYPE] {
    if class == CERTIFICATE_CLASS { CERTIFICATE } else { DATA }
}

/// Checks one attribute a caller gives for an object of `class`.
fn check_attr(class: u64, kind: CK_ATTRIBUTE_TYPE, value: &[u8], officer: bool) -> Result<()> {
    if MODULE_SET.contains(&kind) {
        return Err(rv::ATTRIBUTE_READ_ONLY);
    }
    if !STORAGE.contains(&kind) && !known(class).contains(&kind) {
        return Err(rv::ATTRIBUTE_TYPE_INVALID);
    }
    match kind {
        ck::CKA_TOKEN | ck::CKA_PRIVATE | ck::CKA_MODIFIABLE | ck::CKA_COPYABLE | ck::CKA_DESTROYABLE => {
            bool_of(value).map(|_| ())
        }
        ck::CKA_TRUSTED => {
            // Only the security officer marks a certificate trusted (§4.6.2).
            if bool_of(value)? && !officer { Err(rv::ATTRIBUTE_READ_ONLY) } else { Ok(()) }
        }
        ck::CKA_CLASS | ck::CKA_CERTIFICATE_CATEGORY | ck::CKA_NAME_HASH_ALGORITHM => ulong_of(value).map(|_| ()),
        ck::CKA_JAVA_MIDP_SECURITY_DOMAIN => ulong_of(value).map(|_| ()),
        ck::CKA_CERTIFICATE_TYPE => match ulong_of(value)? {
            ck::CKC_X_509 => Ok(()),
            _ => Err(rv::ATTRIBUTE_VALUE_INVALID),
        },
        ck::CKA_START_DATE | ck::CKA_END_DATE => check_date(value),
        _ => Ok(()),
    }
}

/// The check value of a certificate: the first three bytes of SHA-1 of its value (§4.6.2).
fn check_value(value: &[u8]) -> Vec<u8> {
    sha1::Sha1::digest(value)[..3].to_vec()
}

/// The answer for attribute `t` of `obj`.
fn answer(obj: &StoredObject, t: CK_ATTRIBUTE_TYPE) -> Answer {
    let b = |on: bool| Answer::value(vec![u8::from(on)]);
    let class = obj.header.class;
    match t {
        ck::CKA_CLASS => Answer::value(class.to_ne_bytes().to_vec()),
        ck::CKA_TOKEN => b(obj.path.is_some()),
        ck::CKA_PRIVATE => b(obj.header.private),
        ck::CKA_UNIQUE_ID => Answer::value(obj.header.ident.clone().into_bytes()),
        ck::CKA_MODIFIABLE | ck::CKA_COPYABLE | ck::CKA_DESTROYABLE => {
            b(obj.attrs.get(&t).is_none_or(|v| v.first().is_some_and(|x| *x != 0)))
        }
        ck::CKA_LABEL => Answer::value(obj.attrs.get(&t).map(|v| v.to_vec()).unwrap_or_default()),
        ck::CKA_CHECK_VALUE if class == CERTIFICATE_CLASS => {
            Answer::value(obj.attrs.get(&ck::CKA_VALUE).map(|v| check_value(v)).unwrap_or_default())
        }
        ck::CKA_TRUSTED if class == CERTIFICATE_CLASS => b(obj.attrs.get(&t).is_some_and(|v| v.first() == Some(&1))),
        ck::CKA_CERTIFICATE_CATEGORY if class == CERTIFICATE_CLASS => Answer::value(
            obj.attrs.get(&t).map_or_else(|| 0 as CK_ULONG, |v| ulong_of(v).unwrap_or(0)).to_ne_bytes().to_vec(),
        ),
        _ if known(class).contains(&t) => Answer::value(obj.attrs.get(&t).map(|v| v.to_vec()).unwrap_or_default()),
        _ => Answer::Invalid,
    }
}

fn emu_of(lib: &Library, s: &Session) -> Result<std::sync::Arc<hsmkit_emulator::Emulator>> {
    Ok(lib.slots[s.slot].token()?.emu.clone())
}

fn officer(lib: &Library, s: &Session) -> Result<bool> {
    Ok(lib.slots[s.slot].token()?.login == Some(ck::CKU_SO))
}

fn not_found(e: hsmkit_backend::Error) -> Rv {
    match e.kind() {
        hsmkit_backend::ErrorKind::ObjectHandleInvalid | hsmkit_backend::ErrorKind::NotFound => {
            rv::OBJECT_HANDLE_INVALID
        }
        _ => crate::emu_err(e),
    }
}

/// `C_CreateObject` of a data object or certificate.
pub fn create(lib: &Library, s: &Session, t: &Template<'_>, class: CK_ULONG) -> Result<CK_OBJECT_HANDLE> {
    let so = officer(lib, s)?;
    let mut token = false;
    // Certificates are public objects unless asked otherwise; data objects private (§4.4: the
    // default is the token's; a value an application stores is private until it says not).
    let mut private = class == DATA_CLASS;
    let mut attrs = BTreeMap::new();
    for a in t.attrs() {
        check_attr(class, a.kind, a.value, so)?;
        match a.kind {
            ck::CKA_CLASS => {}
            ck::CKA_TOKEN => token = bool_of(a.value)?,
            ck::CKA_PRIVATE => private = bool_of(a.value)?,
            _ => {
                attrs.insert(a.kind, Zeroizing::new(a.value.to_vec()));
            }
        }
    }
    if class == CERTIFICATE_CLASS {
        for need in [ck::CKA_CERTIFICATE_TYPE, ck::CKA_SUBJECT, ck::CKA_VALUE] {
            if !attrs.contains_key(&need) {
                return Err(rv::TEMPLATE_INCOMPLETE);
            }
        }
    }
    if token && !s.rw {
        return Err(rv::SESSION_READ_ONLY);
    }
    if so && private {
        return Err(rv::USER_NOT_LOGGED_IN);
    }
    if private && !private_allowed(lib, s)? {
        return Err(rv::USER_NOT_LOGGED_IN);
    }
    let emu = emu_of(lib, s)?;
    let obj = emu.new_object(class, private, attrs).map_err(crate::emu_err)?;
    if token {
        // Written before the handle table is locked: other sessions need not wait on the disk.
        let obj = emu.save_object(obj).map_err(crate::emu_err)?;
        let path = obj.path.clone().ok_or(rv::GENERAL_ERROR)?;
        Ok(lib.stored()?.token_handle(s.slot, &path))
    } else {
        let mut table = lib.stored()?;
        let h = table.new_handle();
        table.entries.insert(h, Entry { slot: s.slot, place: Place::Session { owner: s.handle, obj } });
        Ok(h)
    }
}

/// The object `h` as the session may see it (a private object only when private objects are
/// visible).
fn read(lib: &Library, s: &Session, h: CK_OBJECT_HANDLE) -> Result<StoredObject> {
    let obj = {
        let table = lib.stored()?;
        let e = table.entries.get(&h).filter(|e| e.slot == s.slot).ok_or(rv::OBJECT_HANDLE_INVALID)?;
        match &e.place {
            Place::Session { obj, .. } => obj.clone(),
            Place::Token(path) => {
                let path = path.clone();
                drop(table);
                emu_of(lib, s)?.load_object(&path).map_err(not_found)?
            }
        }
    };
    if obj.header.private && !private_allowed(lib, s)? {
        return Err(rv::OBJECT_HANDLE_INVALID);
    }
    Ok(obj)
}

/// `C_GetAttributeValue` of a stored object.
pub fn get_attribute_values(
    lib: &Library,
    s: &Session,
    h: CK_OBJECT_HANDLE,
    types: &[CK_ATTRIBUTE_TYPE],
) -> Result<Vec<Answer>> {
    let obj = read(lib, s, h)?;
    Ok(types.iter().map(|t| answer(&obj, *t)).collect())
}

/// Whether `obj` allows `what` (`CKA_MODIFIABLE`, `CKA_COPYABLE`, `CKA_DESTROYABLE`).
fn allows(obj: &StoredObject, what: CK_ATTRIBUTE_TYPE) -> bool {
    answer(obj, what) == Answer::value(vec![1])
}

/// `C_SetAttributeValue` of a stored object.
pub fn set_attribute_value(lib: &Library, s: &Session, h: CK_OBJECT_HANDLE, t: &Template<'_>) -> Result<()> {
    let mut obj = read(lib, s, h)?;
    if obj.path.is_some() && !s.rw {
        return Err(rv::SESSION_READ_ONLY);
    }
    let so = officer(lib, s)?;
    for a in t.attrs() {
        if FIXED.contains(&a.kind) || MODULE_SET.contains(&a.kind) {
            return Err(rv::ATTRIBUTE_READ_ONLY);
        }
        check_attr(obj.header.class, a.kind, a.value, so)?;
    }
    // The change, applied to the object as it is now (a token object is read again under the
    // objects' lock, so a change made meanwhile by another process is neither lost nor undone).
    let apply = |obj: &mut StoredObject| -> Result<()> {
        if !allows(obj, ck::CKA_MODIFIABLE) {
            return Err(rv::ACTION_PROHIBITED);
        }
        for a in t.attrs() {
            if matches!(a.kind, ck::CKA_COPYABLE | ck::CKA_DESTROYABLE) && bool_of(a.value)? && !allows(obj, a.kind) {
                // Only from true to false (§4.4).
                return Err(rv::ATTRIBUTE_READ_ONLY);
            }
            obj.attrs.insert(a.kind, Zeroizing::new(a.value.to_vec()));
        }
        Ok(())
    };
    if let Some(path) = obj.path.clone() {
        let mut refused = None;
        let r = emu_of(lib, s)?.update_object(&path, |o| {
            apply(o).map_err(|rv| {
                refused = Some(rv);
                hsmkit_backend::Error::new(hsmkit_backend::ErrorKind::ActionProhibited, hsmkit_backend::Op::ChangeAcl)
            })
        });
        return match (r, refused) {
            (Ok(_), _) => Ok(()),
            (Err(_), Some(rv)) => Err(rv),
            (Err(e), None) => Err(not_found(e)),
        };
    }
    apply(&mut obj)?;
    hsmkit_emulator::store::check_size(&obj.attrs, hsmkit_backend::Op::ChangeAcl).map_err(crate::emu_err)?;
    let mut table = lib.stored()?;
    if let Some(Entry { place: Place::Session { obj: held, .. }, .. }) = table.entries.get_mut(&h) {
        *held = obj;
    }
    Ok(())
}

/// `C_DestroyObject` of a stored object.
pub fn destroy(lib: &Library, s: &Session, h: CK_OBJECT_HANDLE) -> Result<()> {
    let obj = read(lib, s, h)?;
    if !allows(&obj, ck::CKA_DESTROYABLE) {
        return Err(rv::ACTION_PROHIBITED);
    }
    if let Some(path) = &obj.path {
        if !s.rw {
            return Err(rv::SESSION_READ_ONLY);
        }
        emu_of(lib, s)?.destroy_object(path).map_err(not_found)?;
    }
    lib.stored()?.entries.remove(&h);
    Ok(())
}

/// `C_CopyObject` of a stored object: the template may set `CKA_TOKEN`, `CKA_PRIVATE`, the label
/// and the attributes that may change.
pub fn copy(lib: &Library, s: &Session, h: CK_OBJECT_HANDLE, t: &Template<'_>) -> Result<CK_OBJECT_HANDLE> {
    let obj = read(lib, s, h)?;
    if !allows(&obj, ck::CKA_COPYABLE) {
        return Err(rv::ACTION_PROHIBITED);
    }
    let class = obj.header.class;
    let mut attrs: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)> = obj.attrs.iter().map(|(k, v)| (*k, v.to_vec())).collect();
    attrs.push((ck::CKA_CLASS, class.to_ne_bytes().to_vec()));
    attrs.push((ck::CKA_TOKEN, vec![u8::from(obj.path.is_some())]));
    attrs.push((ck::CKA_PRIVATE, vec![u8::from(obj.header.private)]));
    for a in t.attrs() {
        if a.kind == ck::CKA_CLASS && ulong_of(a.value)? != class {
            return Err(rv::TEMPLATE_INCONSISTENT);
        }
        if matches!(a.kind, ck::CKA_CERTIFICATE_TYPE | ck::CKA_UNIQUE_ID | ck::CKA_CHECK_VALUE) {
            return Err(rv::ATTRIBUTE_READ_ONLY);
        }
        attrs.retain(|(k, _)| *k != a.kind);
        attrs.push((a.kind, a.value.to_vec()));
    }
    let inputs: Vec<crate::ffi::InAttr<'_>> =
        attrs.iter().map(|(k, v)| crate::ffi::InAttr { kind: *k, value: v.as_slice() }).collect();
    create(lib, s, &Template::new(inputs)?, class)
}

/// The stored objects of the session's slot that match every attribute of `t`.
pub fn find(lib: &Library, s: &Session, t: &Template<'_>) -> Result<Vec<CK_OBJECT_HANDLE>> {
    if let Some(c) = t.attrs().iter().find(|a| a.kind == ck::CKA_CLASS)
        && !ulong_of(c.value).is_ok_and(stores)
    {
        return Ok(Vec::new());
    }
    // A template naming an attribute no stored object has (a key's) matches none: no file is read.
    let sample = StoredObject {
        header: hsmkit_emulator::store::ObjectHeader {
            format: String::new(),
            version: 1,
            ident: String::new(),
            class: DATA_CLASS,
            private: false,
            hkm: Vec::new(),
        },
        attrs: BTreeMap::new(),
        path: None,
    };
    let possible = |class: u64| {
        let probe = StoredObject {
            header: hsmkit_emulator::store::ObjectHeader { class, ..sample.header.clone() },
            ..sample.clone()
        };
        t.attrs().iter().all(|a| answer(&probe, a.kind) != Answer::Invalid)
    };
    if !possible(DATA_CLASS) && !possible(CERTIFICATE_CLASS) {
        return Ok(Vec::new());
    }
    let visible_private = private_allowed(lib, s)?;
    let emu = emu_of(lib, s)?;
    let mut candidates: Vec<(CK_OBJECT_HANDLE, StoredObject)> = Vec::new();
    // Each file on its own: a damaged object is left out of searches (and named in the log and
    // by `nkminfo -k`), so it cannot stop every search of the token.
    let mut paths = Vec::new();
    let local = emu.config().kmdata.join("local");
    if let Ok(entries) = std::fs::read_dir(&local) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(hsmkit_emulator::store::OBJECT_PREFIX) {
                paths.push(e.path());
            }
        }
    }
    paths.sort();
    let mut token_objects = Vec::new();
    for path in paths {
        match emu.load_object(&path) {
            Ok(obj) => token_objects.push((path, obj)),
            Err(e) => crate::log_error(&e),
        }
    }
    let mut table = lib.stored()?;
    for (path, obj) in token_objects {
        candidates.push((table.token_handle(s.slot, &path), obj));
    }
    for (h, e) in &table.entries {
        if let (true, Place::Session { obj, .. }) = (e.slot == s.slot, &e.place) {
            candidates.push((*h, obj.clone()));
        }
    }
    drop(table);
    let mut found: Vec<CK_OBJECT_HANDLE> = candidates
        .into_iter()
        .filter(|(_, o)| visible_private || !o.header.private)
        .filter(|(_, o)| t.attrs().iter().all(|a| answer(o, a.kind) == Answer::value(a.value.to_vec())))
        .map(|(h, _)| h)
        .collect();
    found.sort_unstable();
    Ok(found)
}
