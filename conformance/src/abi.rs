//! ABI-level cases: a PKCS#11 module driven through its C function list directly (`cryptoki-sys`),
//! where a safe wrapper would hide what is checked: `C_Initialize`'s arguments, the state
//! machine, the return code of every function for a bad handle, a null pointer or the wrong state,
//! the size-query protocol, and attribute templates.
//!
//! Every case starts from a module that is not initialised, initialises it itself and finalises
//! it at the end, so the cases are independent of each other and of the order they run in. They
//! run in a process where nothing else has the module loaded (`hsmkit conform` runs the `abi`
//! profile in a worker of its own).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};
use std::sync::Arc;

use cryptoki_sys as ck;
use hsmkit_backend::{ErrorKind, Pin};
use secrecy::ExposeSecret as _;

use crate::{Body, Case, CaseResult, Profile};

/// An ABI-level case's body.
pub type AbiFn = Arc<dyn Fn(&AbiCtx<'_>) -> CaseResult + Send + Sync>;

/// `C_GetInterfaceList` (PKCS#11 3.0).
pub type GetInterfaceListFn = unsafe extern "C" fn(*mut ck::CK_INTERFACE, *mut ck::CK_ULONG) -> ck::CK_RV;
/// `C_GetInterface` (PKCS#11 3.0).
pub type GetInterfaceFn = unsafe extern "C" fn(
    *mut ck::CK_UTF8CHAR,
    *mut ck::CK_VERSION,
    *mut *mut ck::CK_INTERFACE,
    ck::CK_FLAGS,
) -> ck::CK_RV;

/// A PKCS#11 module, loaded for raw calls.
pub struct Module {
    _lib: Option<libloading::Library>,
    interfaces: Option<(GetInterfaceListFn, GetInterfaceFn)>,
    f: &'static ck::CK_FUNCTION_LIST,
    path: PathBuf,
    reserved: Option<CString>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").field("path", &self.path).finish_non_exhaustive()
    }
}

/// The names of the return values the ABI cases meet.
const CKR_NAMES: &[(ck::CK_RV, &str)] = &[
    (ck::CKR_OK, "CKR_OK"),
    (ck::CKR_HOST_MEMORY, "CKR_HOST_MEMORY"),
    (ck::CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID"),
    (ck::CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"),
    (ck::CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"),
    (ck::CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"),
    (ck::CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY"),
    (ck::CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE"),
    (ck::CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID"),
    (ck::CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"),
    (ck::CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE"),
    (ck::CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"),
    (ck::CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED"),
    (ck::CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"),
    (ck::CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"),
    (ck::CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"),
    (ck::CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"),
    (ck::CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"),
    (ck::CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED"),
    (ck::CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"),
    (ck::CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"),
    (ck::CKR_SESSION_PARALLEL_NOT_SUPPORTED, "CKR_SESSION_PARALLEL_NOT_SUPPORTED"),
    (ck::CKR_SESSION_READ_ONLY_EXISTS, "CKR_SESSION_READ_ONLY_EXISTS"),
    (ck::CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE"),
    (ck::CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"),
    (ck::CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"),
    (ck::CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"),
    (ck::CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"),
    (ck::CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"),
    (ck::CKR_USER_TYPE_INVALID, "CKR_USER_TYPE_INVALID"),
    (ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "CKR_USER_ANOTHER_ALREADY_LOGGED_IN"),
    (ck::CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"),
    (ck::CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"),
    (ck::CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"),
];

/// `CKR_NAME (0x…)` of a return value.
pub fn rv_name(rv: ck::CK_RV) -> String {
    match CKR_NAMES.iter().find(|(v, _)| *v == rv) {
        Some((_, name)) if rv == ck::CKR_OK => (*name).to_string(),
        Some((_, name)) => format!("{name} (0x{rv:x})"),
        None => {
            let name = ErrorKind::from_ckr(rv).ckr_name();
            if name == "CKR_?" { format!("0x{rv:x}") } else { format!("{name} (0x{rv:x})") }
        }
    }
}

impl Module {
    /// Loads the module at `path`; `reserved` is the string some modules (NSS softokn) need in
    /// `C_Initialize`'s `pReserved`.
    pub fn load(path: &Path, reserved: Option<&str>) -> Result<Module, String> {
        let reserved = reserved
            .map(|r| CString::new(r).map_err(|_| "the initialisation string has a NUL byte".to_string()))
            .transpose()?;
        // SAFETY: loading a PKCS#11 module runs its initialisers, which is what loading it is for;
        // C_GetFunctionList has this signature in every module and returns a static list.
        unsafe {
            let lib = libloading::Library::new(path).map_err(|e| format!("cannot load {}: {e}", path.display()))?;
            let get: libloading::Symbol<'_, unsafe extern "C" fn(*mut *mut ck::CK_FUNCTION_LIST) -> ck::CK_RV> = lib
                .get(b"C_GetFunctionList")
                .map_err(|e| format!("{} has no C_GetFunctionList: {e}", path.display()))?;
            let mut list = null_mut();
            let rv = get(&mut list);
            if rv != ck::CKR_OK || list.is_null() {
                return Err(format!("C_GetFunctionList returned {} and {list:?}", rv_name(rv)));
            }
            let f: &'static ck::CK_FUNCTION_LIST = &*list;
            // SAFETY: the symbols, where present, have the signatures PKCS#11 3.0 gives them.
            let interfaces = {
                let list: Option<libloading::Symbol<'_, GetInterfaceListFn>> = lib.get(b"C_GetInterfaceList").ok();
                let one: Option<libloading::Symbol<'_, GetInterfaceFn>> = lib.get(b"C_GetInterface").ok();
                list.zip(one).map(|(l, o)| (*l, *o))
            };
            Ok(Module { _lib: Some(lib), interfaces, f, path: path.to_path_buf(), reserved })
        }
    }

    /// A module whose function list this process already has (linked in, or a layer over
    /// another module's list), with its PKCS#11 3.0 interface functions if it has them, named
    /// `name` in reports.
    pub fn from_list(
        name: &str,
        f: &'static ck::CK_FUNCTION_LIST,
        interfaces: Option<(GetInterfaceListFn, GetInterfaceFn)>,
    ) -> Module {
        Module { _lib: None, interfaces, f, path: PathBuf::from(name), reserved: None }
    }

    /// The module's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The function list.
    pub fn f(&self) -> &ck::CK_FUNCTION_LIST {
        self.f
    }

    /// Another function list in this module's place (a layer over it), with its initialisation
    /// string, and without the PKCS#11 3.0 interface functions, which would go around the layer.
    pub(crate) fn layered(&self, name: &str, f: &'static ck::CK_FUNCTION_LIST) -> Module {
        Module { _lib: None, interfaces: None, f, path: PathBuf::from(name), reserved: self.reserved.clone() }
    }

    /// The function list, which lives as long as the process (a loaded module is never unloaded
    /// while a [`Module`] names it).
    pub(crate) fn f_static(&self) -> &'static ck::CK_FUNCTION_LIST {
        self.f
    }

    /// The initialisation arguments every case uses: the operating system's locking, and the
    /// module's initialisation string if it needs one.
    pub fn init_args(&self) -> ck::CK_C_INITIALIZE_ARGS {
        ck::CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: ck::CKF_OS_LOCKING_OK,
            pReserved: self.reserved.as_ref().map_or(null_mut(), |r| r.as_ptr().cast_mut().cast()),
        }
    }

    /// `C_Initialize` with [`Module::init_args`].
    pub fn initialize(&self) -> ck::CK_RV {
        let mut args = self.init_args();
        match self.f.C_Initialize {
            // SAFETY: the arguments live through the call.
            Some(init) => unsafe { init((&raw mut args).cast()) },
            None => ck::CKR_FUNCTION_NOT_SUPPORTED,
        }
    }

    /// `C_Finalize(NULL)`.
    pub fn finalize(&self) -> ck::CK_RV {
        match self.f.C_Finalize {
            // SAFETY: NULL is the one argument C_Finalize takes.
            Some(fin) => unsafe { fin(null_mut()) },
            None => ck::CKR_FUNCTION_NOT_SUPPORTED,
        }
    }

    /// `C_GetInfo` as one line (manufacturer, description, library and Cryptoki versions);
    /// the module must be initialised.
    pub fn library_line(&self) -> Option<String> {
        let mut info: ck::CK_INFO = zeroed_info();
        // SAFETY: an output struct of the right type.
        let rv = unsafe { self.f.C_GetInfo?(&mut info) };
        (rv == ck::CKR_OK).then(|| {
            format!(
                "{} {} {}.{} (Cryptoki {}.{})",
                padded(&info.manufacturerID),
                padded(&info.libraryDescription),
                info.libraryVersion.major,
                info.libraryVersion.minor,
                info.cryptokiVersion.major,
                info.cryptokiVersion.minor
            )
        })
    }
}

fn zeroed_info() -> ck::CK_INFO {
    ck::CK_INFO {
        cryptokiVersion: ck::CK_VERSION { major: 0, minor: 0 },
        manufacturerID: [0; 32],
        flags: 0,
        libraryDescription: [0; 32],
        libraryVersion: ck::CK_VERSION { major: 0, minor: 0 },
    }
}

fn zeroed_token() -> ck::CK_TOKEN_INFO {
    // SAFETY: CK_TOKEN_INFO is plain data (byte arrays, integers): all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

/// A blank-padded field as text.
fn padded(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end().to_string()
}

/// What an ABI-level case runs against.
pub struct AbiCtx<'a> {
    /// The module.
    pub module: &'a Module,
    /// The token's label (else the first slot with a token).
    pub token: Option<String>,
    /// The token's slot id (instead of a label).
    pub slot: Option<u64>,
    /// The user PIN.
    pub user_pin: Option<Pin>,
    /// The security officer's PIN.
    pub so_pin: Option<Pin>,
}

/// An initialised module, finalised when dropped.
struct Init<'a> {
    m: &'a Module,
    ctx: &'a AbiCtx<'a>,
}

impl Drop for Init<'_> {
    fn drop(&mut self) {
        self.m.finalize();
    }
}

/// An open session, closed when dropped (before the module is finalised).
struct Sess<'a> {
    f: &'a ck::CK_FUNCTION_LIST,
    h: ck::CK_SESSION_HANDLE,
}

impl Drop for Sess<'_> {
    fn drop(&mut self) {
        if let Some(close) = self.f.C_CloseSession {
            // SAFETY: a handle this case opened.
            unsafe { close(self.h) };
        }
    }
}

impl AbiCtx<'_> {
    /// The module, initialised for this case (finalised again at its end). A module left
    /// initialised by an earlier case is finalised first.
    fn init(&self) -> Result<Init<'_>, String> {
        let mut rv = self.module.initialize();
        if rv == ck::CKR_CRYPTOKI_ALREADY_INITIALIZED {
            self.module.finalize();
            rv = self.module.initialize();
        }
        check(rv, ck::CKR_OK, "C_Initialize")?;
        Ok(Init { m: self.module, ctx: self })
    }
}

/// Fails unless `rv` is `want`.
fn check(rv: ck::CK_RV, want: ck::CK_RV, what: &str) -> CaseResult {
    if rv == want { Ok(()) } else { Err(format!("{what} returned {}, expected {}", rv_name(rv), rv_name(want))) }
}

/// A session state's name.
fn state_name(s: ck::CK_STATE) -> String {
    match s {
        ck::CKS_RO_PUBLIC_SESSION => "CKS_RO_PUBLIC_SESSION".into(),
        ck::CKS_RO_USER_FUNCTIONS => "CKS_RO_USER_FUNCTIONS".into(),
        ck::CKS_RW_PUBLIC_SESSION => "CKS_RW_PUBLIC_SESSION".into(),
        ck::CKS_RW_USER_FUNCTIONS => "CKS_RW_USER_FUNCTIONS".into(),
        ck::CKS_RW_SO_FUNCTIONS => "CKS_RW_SO_FUNCTIONS".into(),
        other => format!("state {other:#x}"),
    }
}

/// Fails unless the session state `got` is `want`.
fn check_state(got: ck::CK_STATE, want: ck::CK_STATE, what: &str) -> CaseResult {
    if got == want { Ok(()) } else { Err(format!("{what} is in {}, expected {}", state_name(got), state_name(want))) }
}

/// Fails unless `rv` is one of `want`.
fn check_any(rv: ck::CK_RV, want: &[ck::CK_RV], what: &str) -> CaseResult {
    if want.contains(&rv) {
        Ok(())
    } else {
        let names: Vec<String> = want.iter().map(|w| rv_name(*w)).collect();
        Err(format!("{what} returned {}, expected {}", rv_name(rv), names.join(" or ")))
    }
}

impl<'a> Init<'a> {
    fn f(&self) -> &'a ck::CK_FUNCTION_LIST {
        self.m.f
    }

    /// The slots with a token.
    fn slots(&self) -> Result<Vec<ck::CK_SLOT_ID>, String> {
        let get = self.f().C_GetSlotList.ok_or("C_GetSlotList is missing")?;
        let mut n: ck::CK_ULONG = 0;
        // SAFETY: a count query (NULL list), then a list of the size the module gave.
        check(unsafe { get(ck::CK_TRUE, null_mut(), &mut n) }, ck::CKR_OK, "C_GetSlotList(NULL)")?;
        let mut slots = vec![0; n as usize];
        check(unsafe { get(ck::CK_TRUE, slots.as_mut_ptr(), &mut n) }, ck::CKR_OK, "C_GetSlotList")?;
        slots.truncate(n as usize);
        Ok(slots)
    }

    fn token_info(&self, slot: ck::CK_SLOT_ID) -> Result<ck::CK_TOKEN_INFO, String> {
        let mut info = zeroed_token();
        let get = self.f().C_GetTokenInfo.ok_or("C_GetTokenInfo is missing")?;
        // SAFETY: an output struct of the right type.
        check(unsafe { get(slot, &mut info) }, ck::CKR_OK, "C_GetTokenInfo")?;
        Ok(info)
    }

    /// The slot of the token under test: the one labelled as asked, else the first.
    fn slot(&self) -> Result<ck::CK_SLOT_ID, String> {
        if let Some(want) = self.ctx.slot {
            return if self.slots()?.contains(&(want as ck::CK_SLOT_ID)) {
                Ok(want as ck::CK_SLOT_ID)
            } else {
                Err(format!("slot {want} has no token"))
            };
        }
        for slot in self.slots()? {
            match &self.ctx.token {
                None => return Ok(slot),
                Some(label) if padded(&self.token_info(slot)?.label) == *label => return Ok(slot),
                Some(_) => {}
            }
        }
        Err(match &self.ctx.token {
            Some(l) => format!("no token is labelled {l:?}"),
            None => "the module has no slot with a token".into(),
        })
    }

    fn open(&self, rw: bool) -> Result<Sess<'a>, String> {
        let slot = self.slot()?;
        let open = self.f().C_OpenSession.ok_or("C_OpenSession is missing")?;
        let flags = ck::CKF_SERIAL_SESSION | if rw { ck::CKF_RW_SESSION } else { 0 };
        let mut h = 0;
        // SAFETY: no callback; the handle is an output.
        check(unsafe { open(slot, flags, null_mut(), None, &mut h) }, ck::CKR_OK, "C_OpenSession")?;
        Ok(Sess { f: self.f(), h })
    }

    fn login(&self, s: &Sess<'_>, user: ck::CK_USER_TYPE) -> CaseResult {
        let pin = if user == ck::CKU_SO { &self.ctx.so_pin } else { &self.ctx.user_pin };
        let Some(pin) = pin else {
            return Err(crate::skipped(if user == ck::CKU_SO {
                "no security officer PIN was given (--so-pin-file)"
            } else {
                "no user PIN was given (--login)"
            }));
        };
        let login = self.f().C_Login.ok_or("C_Login is missing")?;
        let p = pin.expose_secret().as_bytes();
        // SAFETY: the PIN buffer lives through the call; the module only reads it.
        let rv = unsafe { login(s.h, user, p.as_ptr().cast_mut(), p.len() as ck::CK_ULONG) };
        check_any(rv, &[ck::CKR_OK, ck::CKR_USER_ALREADY_LOGGED_IN], "C_Login")
    }
}

/// A session handle no module hands out (hsmkit, SoftHSM2 and NSS count up from 1).
const BAD_SESSION: ck::CK_SESSION_HANDLE = 0x7fff_fff3;
/// A slot id no module has.
const BAD_SLOT: ck::CK_SLOT_ID = 0x7fff_fff5;

/// Scratch buffers the table's calls point into: every pointer argument is valid, so the only
/// thing wrong with a call is the handle (or the module's state).
struct Scratch {
    bytes: [u8; 512],
    len: ck::CK_ULONG,
    handle: ck::CK_OBJECT_HANDLE,
    handle2: ck::CK_OBJECT_HANDLE,
    mech: ck::CK_MECHANISM,
    attr: ck::CK_ATTRIBUTE,
    session_info: ck::CK_SESSION_INFO,
}

impl Scratch {
    fn new() -> Box<Scratch> {
        let mut s = Box::new(Scratch {
            bytes: [0; 512],
            len: 256,
            handle: 1,
            handle2: 0,
            mech: ck::CK_MECHANISM { mechanism: ck::CKM_SHA256_RSA_PKCS, pParameter: null_mut(), ulParameterLen: 0 },
            attr: ck::CK_ATTRIBUTE { type_: ck::CKA_LABEL, pValue: null_mut(), ulValueLen: 0 },
            session_info: ck::CK_SESSION_INFO { slotID: 0, state: 0, flags: 0, ulDeviceError: 0 },
        });
        s.attr.pValue = s.bytes.as_mut_ptr().cast();
        s.attr.ulValueLen = 16;
        s
    }
}

/// One function called with a session handle: its name and the call.
type SessionCall = (&'static str, fn(&ck::CK_FUNCTION_LIST, ck::CK_SESSION_HANDLE, &mut Scratch) -> Option<ck::CK_RV>);

/// One function called with a slot id.
type SlotCall = (&'static str, fn(&ck::CK_FUNCTION_LIST, ck::CK_SLOT_ID, &mut Scratch) -> Option<ck::CK_RV>);

/// A table of calls: each function by name, with its arguments (`$s` the handle or slot id, `$x`
/// the scratch buffers).
macro_rules! calls {
    ($(#[$doc:meta])* $table:ident: $ty:ty { $( $name:ident ( $s:ident, $x:ident ) => ( $($arg:expr),* ); )* }) => {
        $(#[$doc])*
        const $table: &[$ty] = &[
            $( (stringify!($name), |f, $s, $x| {
                let _ = &$x;
                // SAFETY: every pointer points into the scratch buffers, which outlive the call
                // and are as large as the lengths passed.
                f.$name.map(|g| unsafe { g($($arg),*) })
            }), )*
        ];
    };
}

calls! {
    /// Every function that takes a session handle, called with valid pointers.
    SESSION_CALLS: SessionCall {
    C_CloseSession(s, x) => (s);
    C_GetSessionInfo(s, x) => (s, &mut x.session_info);
    C_GetOperationState(s, x) => (s, x.bytes.as_mut_ptr(), &mut x.len);
    C_SetOperationState(s, x) => (s, x.bytes.as_mut_ptr(), 16, 0, 0);
    C_Login(s, x) => (s, ck::CKU_USER, x.bytes.as_mut_ptr(), 4);
    C_Logout(s, x) => (s);
    C_CreateObject(s, x) => (s, &mut x.attr, 1, &mut x.handle2);
    C_CopyObject(s, x) => (s, x.handle, &mut x.attr, 1, &mut x.handle2);
    C_DestroyObject(s, x) => (s, x.handle);
    C_GetObjectSize(s, x) => (s, x.handle, &mut x.len);
    C_GetAttributeValue(s, x) => (s, x.handle, &mut x.attr, 1);
    C_SetAttributeValue(s, x) => (s, x.handle, &mut x.attr, 1);
    C_FindObjectsInit(s, x) => (s, &mut x.attr, 1);
    C_FindObjects(s, x) => (s, &mut x.handle2, 1, &mut x.len);
    C_FindObjectsFinal(s, x) => (s);
    C_EncryptInit(s, x) => (s, &mut x.mech, x.handle);
    C_Encrypt(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), &mut x.len);
    C_EncryptUpdate(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), &mut x.len);
    C_EncryptFinal(s, x) => (s, x.bytes.as_mut_ptr(), &mut x.len);
    C_DecryptInit(s, x) => (s, &mut x.mech, x.handle);
    C_Decrypt(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), &mut x.len);
    C_DecryptUpdate(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), &mut x.len);
    C_DecryptFinal(s, x) => (s, x.bytes.as_mut_ptr(), &mut x.len);
    C_DigestInit(s, x) => (s, &mut x.mech);
    C_Digest(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), &mut x.len);
    C_DigestUpdate(s, x) => (s, x.bytes.as_mut_ptr(), 16);
    C_DigestKey(s, x) => (s, x.handle);
    C_DigestFinal(s, x) => (s, x.bytes.as_mut_ptr(), &mut x.len);
    C_SignInit(s, x) => (s, &mut x.mech, x.handle);
    C_Sign(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), &mut x.len);
    C_SignUpdate(s, x) => (s, x.bytes.as_mut_ptr(), 16);
    C_SignFinal(s, x) => (s, x.bytes.as_mut_ptr(), &mut x.len);
    C_SignRecoverInit(s, x) => (s, &mut x.mech, x.handle);
    C_SignRecover(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), &mut x.len);
    C_VerifyInit(s, x) => (s, &mut x.mech, x.handle);
    C_Verify(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), 16);
    C_VerifyUpdate(s, x) => (s, x.bytes.as_mut_ptr(), 16);
    C_VerifyFinal(s, x) => (s, x.bytes.as_mut_ptr(), 16);
    C_VerifyRecoverInit(s, x) => (s, &mut x.mech, x.handle);
    C_VerifyRecover(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), &mut x.len);
    C_DigestEncryptUpdate(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), &mut x.len);
    C_DecryptDigestUpdate(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), &mut x.len);
    C_SignEncryptUpdate(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), &mut x.len);
    C_DecryptVerifyUpdate(s, x) => (s, x.bytes.as_mut_ptr(), 16, x.bytes.as_mut_ptr().wrapping_add(256), &mut x.len);
    C_GenerateKey(s, x) => (s, &mut x.mech, &mut x.attr, 1, &mut x.handle2);
    C_GenerateKeyPair(s, x) => (s, &mut x.mech, &mut x.attr, 1, null_mut(), 0, &mut x.handle2, &mut x.handle);
    C_WrapKey(s, x) => (s, &mut x.mech, x.handle, x.handle, x.bytes.as_mut_ptr(), &mut x.len);
    C_UnwrapKey(s, x) => (s, &mut x.mech, x.handle, x.bytes.as_mut_ptr(), 16, &mut x.attr, 1, &mut x.handle2);
    C_DeriveKey(s, x) => (s, &mut x.mech, x.handle, &mut x.attr, 1, &mut x.handle2);
    C_SeedRandom(s, x) => (s, x.bytes.as_mut_ptr(), 16);
    C_GenerateRandom(s, x) => (s, x.bytes.as_mut_ptr(), 16);
    }
}

calls! {
    /// Every function that takes a slot id, called with valid pointers.
    SLOT_CALLS: SlotCall {
    C_GetSlotInfo(s, x) => (s, x.bytes.as_mut_ptr().cast());
    C_GetTokenInfo(s, x) => (s, x.bytes.as_mut_ptr().cast());
    C_GetMechanismList(s, x) => (s, null_mut(), &mut x.len);
    C_GetMechanismInfo(s, x) => (s, ck::CKM_SHA256_RSA_PKCS, x.bytes.as_mut_ptr().cast());
    C_OpenSession(s, x) => (s, ck::CKF_SERIAL_SESSION, null_mut(), None, &mut x.handle2);
    C_CloseAllSessions(s, x) => (s);
    }
}

/// The scratch area is larger than every output struct it stands in for.
const _: () = assert!(
    std::mem::size_of::<[u8; 512]>() >= std::mem::size_of::<ck::CK_TOKEN_INFO>()
        && std::mem::size_of::<[u8; 512]>() >= std::mem::size_of::<ck::CK_SLOT_INFO>()
);

fn abi(id: String, clause: &str, run: impl Fn(&AbiCtx<'_>) -> CaseResult + Send + Sync + 'static) -> Case {
    Case { id, profile: Profile::Abi, clause: clause.to_string(), body: Body::Abi(Arc::new(run)) }
}

/// Every ABI-level case.
pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    // Before C_Initialize, every function but C_Initialize and C_GetFunctionList answers
    // CKR_CRYPTOKI_NOT_INITIALIZED (a module without the function: CKR_FUNCTION_NOT_SUPPORTED).
    const NOT_INIT: &str = "PKCS#11 base §5.1 (CKR_CRYPTOKI_NOT_INITIALIZED), §5.4 C_Initialize";
    for &(name, call) in SESSION_CALLS {
        out.push(abi(format!("abi-not-initialized-{name}"), NOT_INIT, move |ctx| {
            ctx.module.finalize();
            let rv = call(ctx.module.f(), 1, &mut Scratch::new());
            check_any(
                rv.unwrap_or(ck::CKR_FUNCTION_NOT_SUPPORTED),
                &[ck::CKR_CRYPTOKI_NOT_INITIALIZED, ck::CKR_FUNCTION_NOT_SUPPORTED],
                name,
            )
        }));
    }
    for &(name, call) in SLOT_CALLS {
        out.push(abi(format!("abi-not-initialized-{name}"), NOT_INIT, move |ctx| {
            ctx.module.finalize();
            let rv = call(ctx.module.f(), 0, &mut Scratch::new());
            check_any(
                rv.unwrap_or(ck::CKR_FUNCTION_NOT_SUPPORTED),
                &[ck::CKR_CRYPTOKI_NOT_INITIALIZED, ck::CKR_FUNCTION_NOT_SUPPORTED],
                name,
            )
        }));
    }
    // A session handle that was never opened.
    const BAD_HANDLE: &str = "PKCS#11 base §5.1 (CKR_SESSION_HANDLE_INVALID: the handle names no session)";
    for &(name, call) in SESSION_CALLS {
        out.push(abi(format!("abi-bad-session-{name}"), BAD_HANDLE, move |ctx| {
            let _init = ctx.init()?;
            let rv = call(ctx.module.f(), BAD_SESSION, &mut Scratch::new());
            check_any(
                rv.unwrap_or(ck::CKR_FUNCTION_NOT_SUPPORTED),
                &[ck::CKR_SESSION_HANDLE_INVALID, ck::CKR_FUNCTION_NOT_SUPPORTED],
                name,
            )
        }));
    }
    // A slot id the module does not have.
    const BAD_SLOT_CLAUSE: &str = "PKCS#11 base §5.1 (CKR_SLOT_ID_INVALID), §5.5 slot and token management";
    for &(name, call) in SLOT_CALLS {
        out.push(abi(format!("abi-bad-slot-{name}"), BAD_SLOT_CLAUSE, move |ctx| {
            let _init = ctx.init()?;
            let rv = call(ctx.module.f(), BAD_SLOT, &mut Scratch::new());
            check_any(
                rv.unwrap_or(ck::CKR_FUNCTION_NOT_SUPPORTED),
                &[ck::CKR_SLOT_ID_INVALID, ck::CKR_FUNCTION_NOT_SUPPORTED],
                name,
            )
        }));
    }
    out.extend(lifecycle());
    out.extend(sessions());
    out.extend(operations());
    out
}

/// `C_Initialize`, `C_Finalize`, `C_GetInfo`, the slot list and the token's strings.
fn lifecycle() -> Vec<Case> {
    vec![
        abi("abi-initialize-twice".into(), "PKCS#11 base §5.4 C_Initialize: CKR_CRYPTOKI_ALREADY_INITIALIZED", |ctx| {
            let _init = ctx.init()?;
            check(ctx.module.initialize(), ck::CKR_CRYPTOKI_ALREADY_INITIALIZED, "a second C_Initialize")
        }),
        abi(
            "abi-finalize-not-initialized".into(),
            "PKCS#11 base §5.4 C_Finalize: CKR_CRYPTOKI_NOT_INITIALIZED before C_Initialize",
            |ctx| {
                ctx.module.finalize();
                check(ctx.module.finalize(), ck::CKR_CRYPTOKI_NOT_INITIALIZED, "C_Finalize of a finalised module")
            },
        ),
        abi(
            "abi-finalize-reserved".into(),
            "PKCS#11 base §5.4 C_Finalize: pReserved must be NULL (CKR_ARGUMENTS_BAD)",
            |ctx| {
                let _init = ctx.init()?;
                let fin = ctx.module.f().C_Finalize.ok_or("C_Finalize is missing")?;
                let mut junk = [0u8; 8];
                // SAFETY: a valid pointer the module must refuse without reading.
                let rv = unsafe { fin(junk.as_mut_ptr().cast()) };
                check(rv, ck::CKR_ARGUMENTS_BAD, "C_Finalize(non-NULL)")
            },
        ),
        abi(
            "abi-initialize-mutex-inconsistent".into(),
            "PKCS#11 base §5.4 C_Initialize: some but not all mutex functions given is CKR_ARGUMENTS_BAD",
            |ctx| {
                ctx.module.finalize();
                unsafe extern "C" fn create(_m: *mut *mut std::ffi::c_void) -> ck::CK_RV {
                    ck::CKR_OK
                }
                let mut args = ctx.module.init_args();
                args.CreateMutex = Some(create);
                let init = ctx.module.f().C_Initialize.ok_or("C_Initialize is missing")?;
                // SAFETY: the arguments live through the call.
                let rv = unsafe { init((&raw mut args).cast()) };
                if rv == ck::CKR_OK {
                    ctx.module.finalize();
                }
                check(rv, ck::CKR_ARGUMENTS_BAD, "C_Initialize with CreateMutex alone")
            },
        ),
        abi("abi-get-info".into(), "PKCS#11 base §5.4 C_GetInfo: CK_INFO, blank-padded strings, no NUL", |ctx| {
            let _init = ctx.init()?;
            let get = ctx.module.f().C_GetInfo.ok_or("C_GetInfo is missing")?;
            let mut info = zeroed_info();
            // SAFETY: an output struct of the right type.
            check(unsafe { get(&mut info) }, ck::CKR_OK, "C_GetInfo")?;
            blank_padded("manufacturerID", &info.manufacturerID)?;
            blank_padded("libraryDescription", &info.libraryDescription)?;
            if !(2..=3).contains(&info.cryptokiVersion.major) {
                return Err(format!("cryptokiVersion {}.{}", info.cryptokiVersion.major, info.cryptokiVersion.minor));
            }
            if info.flags != 0 {
                return Err(format!("CK_INFO.flags is {:#x}; the specification reserves it (0)", info.flags));
            }
            Ok(())
        }),
        abi("abi-get-info-null".into(), "PKCS#11 base §5.4 C_GetInfo: pInfo NULL is CKR_ARGUMENTS_BAD", |ctx| {
            let _init = ctx.init()?;
            let get = ctx.module.f().C_GetInfo.ok_or("C_GetInfo is missing")?;
            // SAFETY: NULL is the argument the module must refuse.
            check(unsafe { get(null_mut()) }, ck::CKR_ARGUMENTS_BAD, "C_GetInfo(NULL)")
        }),
        abi(
            "abi-slot-list-size-query".into(),
            "PKCS#11 base §5.5 C_GetSlotList; §5.2 the size-query protocol (NULL, then CKR_BUFFER_TOO_SMALL)",
            |ctx| {
                let init = ctx.init()?;
                let get = ctx.module.f().C_GetSlotList.ok_or("C_GetSlotList is missing")?;
                let slots = init.slots()?;
                if slots.is_empty() {
                    return Err("no slot has a token".into());
                }
                // A buffer one short: CKR_BUFFER_TOO_SMALL, and the count says how many.
                let mut short = vec![0; slots.len() - 1];
                let mut n = short.len() as ck::CK_ULONG;
                let p = if short.is_empty() { null_mut() } else { short.as_mut_ptr() };
                // SAFETY: the buffer holds n entries (or is NULL: a size query).
                let rv = unsafe { get(ck::CK_TRUE, p, &mut n) };
                if p.is_null() {
                    check(rv, ck::CKR_OK, "C_GetSlotList(NULL)")?;
                } else {
                    check(rv, ck::CKR_BUFFER_TOO_SMALL, "C_GetSlotList with a short buffer")?;
                }
                if n as usize != slots.len() {
                    return Err(format!("the count came back as {n}, there are {}", slots.len()));
                }
                Ok(())
            },
        ),
        abi(
            "abi-slot-list-null-count".into(),
            "PKCS#11 base §5.5 C_GetSlotList: pulCount NULL is CKR_ARGUMENTS_BAD",
            |ctx| {
                let _init = ctx.init()?;
                let get = ctx.module.f().C_GetSlotList.ok_or("C_GetSlotList is missing")?;
                // SAFETY: NULL count pointer: the module must refuse it.
                let rv = unsafe { get(ck::CK_TRUE, null_mut(), null_mut()) };
                check(rv, ck::CKR_ARGUMENTS_BAD, "C_GetSlotList(NULL, NULL)")
            },
        ),
        abi(
            "abi-token-info".into(),
            "PKCS#11 base §5.5 C_GetTokenInfo: blank-padded strings, CKF_TOKEN_INITIALIZED",
            |ctx| {
                let init = ctx.init()?;
                let info = init.token_info(init.slot()?)?;
                blank_padded("label", &info.label)?;
                blank_padded("manufacturerID", &info.manufacturerID)?;
                blank_padded("model", &info.model)?;
                blank_padded("serialNumber", &info.serialNumber)?;
                if info.flags & ck::CKF_TOKEN_INITIALIZED == 0 {
                    return Err("the token under test is not CKF_TOKEN_INITIALIZED".into());
                }
                Ok(())
            },
        ),
        abi("abi-token-info-null".into(), "PKCS#11 base §5.5 C_GetTokenInfo: pInfo NULL is CKR_ARGUMENTS_BAD", |ctx| {
            let init = ctx.init()?;
            let get = ctx.module.f().C_GetTokenInfo.ok_or("C_GetTokenInfo is missing")?;
            // SAFETY: NULL is the argument the module must refuse.
            check(unsafe { get(init.slot()?, null_mut()) }, ck::CKR_ARGUMENTS_BAD, "C_GetTokenInfo(NULL)")
        }),
        abi(
            "abi-mechanism-list-size-query".into(),
            "PKCS#11 base §5.5 C_GetMechanismList; §5.2 the size-query protocol",
            |ctx| {
                let init = ctx.init()?;
                let slot = init.slot()?;
                let get = ctx.module.f().C_GetMechanismList.ok_or("C_GetMechanismList is missing")?;
                let mut n: ck::CK_ULONG = 0;
                // SAFETY: a size query, then buffers of the sizes given.
                check(unsafe { get(slot, null_mut(), &mut n) }, ck::CKR_OK, "C_GetMechanismList(NULL)")?;
                if n == 0 {
                    return Err("the token lists no mechanism".into());
                }
                let mut short = vec![0; n as usize - 1];
                let mut m = short.len() as ck::CK_ULONG;
                if m > 0 {
                    let rv = unsafe { get(slot, short.as_mut_ptr(), &mut m) };
                    check(rv, ck::CKR_BUFFER_TOO_SMALL, "C_GetMechanismList with a short buffer")?;
                    if m != n {
                        return Err(format!("after CKR_BUFFER_TOO_SMALL the count is {m}, not {n}"));
                    }
                }
                let mut all = vec![0; n as usize];
                let rv = unsafe { get(slot, all.as_mut_ptr(), &mut n) };
                check(rv, ck::CKR_OK, "C_GetMechanismList")?;
                let info = ctx.module.f().C_GetMechanismInfo.ok_or("C_GetMechanismInfo is missing")?;
                for &mech in &all[..n as usize] {
                    let mut mi = ck::CK_MECHANISM_INFO { ulMinKeySize: 0, ulMaxKeySize: 0, flags: 0 };
                    let rv = unsafe { info(slot, mech, &mut mi) };
                    check(rv, ck::CKR_OK, &format!("C_GetMechanismInfo of listed mechanism {mech:#x}"))?;
                    if mi.ulMinKeySize > mi.ulMaxKeySize {
                        return Err(format!(
                            "mechanism {mech:#x}: ulMinKeySize {} > ulMaxKeySize {}",
                            mi.ulMinKeySize, mi.ulMaxKeySize
                        ));
                    }
                }
                let mut mi = ck::CK_MECHANISM_INFO { ulMinKeySize: 0, ulMaxKeySize: 0, flags: 0 };
                check(
                    unsafe { info(slot, ck::CKM_VENDOR_DEFINED | 0x7e57, &mut mi) },
                    ck::CKR_MECHANISM_INVALID,
                    "C_GetMechanismInfo of an unlisted mechanism",
                )
            },
        ),
        abi(
            "abi-get-interface".into(),
            "PKCS#11 3.0 §5.4 C_GetInterfaceList, C_GetInterface: the \"PKCS 11\" interface",
            |ctx| get_interface(ctx.module),
        ),
    ]
}

/// A blank-padded string field: no NUL, and not empty where it names something.
fn blank_padded(what: &str, b: &[u8]) -> CaseResult {
    if b.contains(&0) {
        return Err(format!(
            "{what} holds a NUL byte: the specification pads with blanks ({:?})",
            String::from_utf8_lossy(b)
        ));
    }
    if std::str::from_utf8(b).is_err() {
        return Err(format!("{what} is not UTF-8"));
    }
    Ok(())
}

/// PKCS#11 3.0's interface discovery, where the module exports it.
fn get_interface(m: &Module) -> CaseResult {
    let (list, one) = (m.interfaces.map(|i| i.0), m.interfaces.map(|i| i.1));
    let (Some(list), Some(one)) = (list, one) else {
        return Err(crate::skipped("the module is a PKCS#11 2.x module (no C_GetInterfaceList)"));
    };
    let mut n: ck::CK_ULONG = 0;
    // SAFETY: a size query, then a buffer of that size; names are NUL-terminated static strings.
    check(unsafe { list(null_mut(), &mut n) }, ck::CKR_OK, "C_GetInterfaceList(NULL)")?;
    let mut items: Vec<ck::CK_INTERFACE> =
        (0..n).map(|_| ck::CK_INTERFACE { pInterfaceName: null_mut(), pFunctionList: null_mut(), flags: 0 }).collect();
    check(unsafe { list(items.as_mut_ptr(), &mut n) }, ck::CKR_OK, "C_GetInterfaceList")?;
    let mut pkcs11 = false;
    for i in &items[..n as usize] {
        if i.pInterfaceName.is_null() || i.pFunctionList.is_null() {
            return Err("an interface with a NULL name or function list".into());
        }
        let name = unsafe { std::ffi::CStr::from_ptr(i.pInterfaceName.cast()) };
        if name.to_bytes() == b"PKCS 11" {
            pkcs11 = true;
            let v = unsafe { &*(i.pFunctionList as *const ck::CK_VERSION) };
            if !(2..=3).contains(&v.major) {
                return Err(format!("the PKCS 11 interface's function list is version {}.{}", v.major, v.minor));
            }
        }
    }
    if !pkcs11 {
        return Err("C_GetInterfaceList has no \"PKCS 11\" interface".into());
    }
    let mut found: *mut ck::CK_INTERFACE = null_mut();
    // SAFETY: NULL name and version: the module's default interface.
    check(unsafe { one(null_mut(), null_mut(), &mut found, 0) }, ck::CKR_OK, "C_GetInterface(NULL)")?;
    if found.is_null() {
        return Err("C_GetInterface(NULL) returned no interface".into());
    }
    let mut name = *b"PKCS 11\0";
    let mut found2: *mut ck::CK_INTERFACE = null_mut();
    check(unsafe { one(name.as_mut_ptr(), null_mut(), &mut found2, 0) }, ck::CKR_OK, "C_GetInterface(\"PKCS 11\")")?;
    let mut nope = *b"No Such Interface\0";
    let mut found3: *mut ck::CK_INTERFACE = null_mut();
    let rv = unsafe { one(nope.as_mut_ptr(), null_mut(), &mut found3, 0) };
    check(rv, ck::CKR_ARGUMENTS_BAD, "C_GetInterface of an interface the module does not have")?;
    let _ = null::<u8>();
    Ok(())
}

/// The session and login state machine.
fn sessions() -> Vec<Case> {
    vec![
        abi(
            "abi-open-session-not-serial".into(),
            "PKCS#11 base §5.6 C_OpenSession: without CKF_SERIAL_SESSION, CKR_SESSION_PARALLEL_NOT_SUPPORTED",
            |ctx| {
                let init = ctx.init()?;
                let open = ctx.module.f().C_OpenSession.ok_or("C_OpenSession is missing")?;
                let mut h = 0;
                // SAFETY: no callback; the handle is an output.
                let rv = unsafe { open(init.slot()?, 0, null_mut(), None, &mut h) };
                check(rv, ck::CKR_SESSION_PARALLEL_NOT_SUPPORTED, "C_OpenSession(flags 0)")
            },
        ),
        abi(
            "abi-open-session-null".into(),
            "PKCS#11 base §5.6 C_OpenSession: phSession NULL is CKR_ARGUMENTS_BAD",
            |ctx| {
                let init = ctx.init()?;
                let open = ctx.module.f().C_OpenSession.ok_or("C_OpenSession is missing")?;
                // SAFETY: NULL is the argument the module must refuse.
                let rv = unsafe { open(init.slot()?, ck::CKF_SERIAL_SESSION, null_mut(), None, null_mut()) };
                check(rv, ck::CKR_ARGUMENTS_BAD, "C_OpenSession(phSession NULL)")
            },
        ),
        abi(
            "abi-session-states".into(),
            "PKCS#11 base §5.6 C_GetSessionInfo, C_Login, C_Logout; usage guide §2.6 (session states)",
            |ctx| {
                let init = ctx.init()?;
                let ro = init.open(false)?;
                let rw = init.open(true)?;
                let state = |s: &Sess<'_>| -> Result<ck::CK_STATE, String> {
                    let get = ctx.module.f().C_GetSessionInfo.ok_or("C_GetSessionInfo is missing")?;
                    let mut info = ck::CK_SESSION_INFO { slotID: 0, state: 0, flags: 0, ulDeviceError: 0 };
                    // SAFETY: an output struct of the right type.
                    check(unsafe { get(s.h, &mut info) }, ck::CKR_OK, "C_GetSessionInfo")?;
                    if info.flags & ck::CKF_SERIAL_SESSION == 0 {
                        return Err("CKF_SERIAL_SESSION is not set in the session's flags".into());
                    }
                    Ok(info.state)
                };
                check_state(state(&ro)?, ck::CKS_RO_PUBLIC_SESSION, "the read-only session")?;
                check_state(state(&rw)?, ck::CKS_RW_PUBLIC_SESSION, "the read-write session")?;
                if ctx.user_pin.is_none() {
                    return Ok(());
                }
                init.login(&rw, ck::CKU_USER)?;
                // Login state belongs to the application: both sessions change.
                check_state(state(&ro)?, ck::CKS_RO_USER_FUNCTIONS, "the read-only session after the user's login")?;
                check_state(state(&rw)?, ck::CKS_RW_USER_FUNCTIONS, "the read-write session after the user's login")?;
                let logout = ctx.module.f().C_Logout.ok_or("C_Logout is missing")?;
                // SAFETY: a session this case opened.
                check(unsafe { logout(ro.h) }, ck::CKR_OK, "C_Logout")?;
                check_state(state(&rw)?, ck::CKS_RW_PUBLIC_SESSION, "the read-write session after C_Logout")
            },
        ),
        abi(
            "abi-logout-not-logged-in".into(),
            "PKCS#11 base §5.6 C_Logout: CKR_USER_NOT_LOGGED_IN when nobody is logged in",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let logout = ctx.module.f().C_Logout.ok_or("C_Logout is missing")?;
                // SAFETY: a session this case opened.
                check(unsafe { logout(s.h) }, ck::CKR_USER_NOT_LOGGED_IN, "C_Logout with nobody logged in")
            },
        ),
        abi("abi-login-twice".into(), "PKCS#11 base §5.6 C_Login: CKR_USER_ALREADY_LOGGED_IN", |ctx| {
            let init = ctx.init()?;
            let s = init.open(true)?;
            init.login(&s, ck::CKU_USER)?;
            let login = ctx.module.f().C_Login.ok_or("C_Login is missing")?;
            let pin = ctx.user_pin.as_ref().map(|p| p.expose_secret().as_bytes().to_vec()).unwrap_or_default();
            // SAFETY: the PIN buffer lives through the call.
            let rv = unsafe { login(s.h, ck::CKU_USER, pin.as_ptr().cast_mut(), pin.len() as ck::CK_ULONG) };
            check(rv, ck::CKR_USER_ALREADY_LOGGED_IN, "a second C_Login")
        }),
        abi("abi-login-wrong-pin".into(), "PKCS#11 base §5.6 C_Login: CKR_PIN_INCORRECT", |ctx| {
            if ctx.user_pin.is_none() {
                return Err(crate::skipped("no user PIN was given (--login)"));
            }
            let init = ctx.init()?;
            let s = init.open(true)?;
            let login = ctx.module.f().C_Login.ok_or("C_Login is missing")?;
            let mut wrong = *b"not-the-pin-9";
            // SAFETY: the PIN buffer lives through the call.
            let rv = unsafe { login(s.h, ck::CKU_USER, wrong.as_mut_ptr(), wrong.len() as ck::CK_ULONG) };
            // One wrong PIN; the next, right one resets the count on every module we know.
            let result = check(rv, ck::CKR_PIN_INCORRECT, "C_Login with a wrong PIN");
            init.login(&s, ck::CKU_USER)?;
            result
        }),
        abi(
            "abi-login-bad-user-type".into(),
            "PKCS#11 base §5.6 C_Login: an unknown user type is CKR_USER_TYPE_INVALID",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let login = ctx.module.f().C_Login.ok_or("C_Login is missing")?;
                let mut pin = *b"1234";
                // SAFETY: the PIN buffer lives through the call.
                let rv = unsafe { login(s.h, 0x7e57, pin.as_mut_ptr(), 4) };
                check(rv, ck::CKR_USER_TYPE_INVALID, "C_Login(user type 0x7e57)")
            },
        ),
        abi(
            "abi-so-login-read-only-session".into(),
            "PKCS#11 base §5.6 C_Login: the SO with a read-only session open is CKR_SESSION_READ_ONLY_EXISTS",
            |ctx| {
                let init = ctx.init()?;
                let _ro = init.open(false)?;
                let rw = init.open(true)?;
                let Some(pin) = &ctx.so_pin else {
                    return Err(crate::skipped("no security officer PIN was given (--so-pin-file)"));
                };
                let login = ctx.module.f().C_Login.ok_or("C_Login is missing")?;
                let p = pin.expose_secret().as_bytes();
                // SAFETY: the PIN buffer lives through the call.
                let rv = unsafe { login(rw.h, ck::CKU_SO, p.as_ptr().cast_mut(), p.len() as ck::CK_ULONG) };
                check(rv, ck::CKR_SESSION_READ_ONLY_EXISTS, "C_Login(CKU_SO) with a read-only session open")
            },
        ),
        abi(
            "abi-close-session-twice".into(),
            "PKCS#11 base §5.6 C_CloseSession: a closed handle is CKR_SESSION_HANDLE_INVALID",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(false)?;
                let h = s.h;
                drop(s);
                let close = ctx.module.f().C_CloseSession.ok_or("C_CloseSession is missing")?;
                // SAFETY: a handle that was closed: the module must refuse it.
                check(unsafe { close(h) }, ck::CKR_SESSION_HANDLE_INVALID, "C_CloseSession of a closed session")
            },
        ),
        abi(
            "abi-close-all-sessions".into(),
            "PKCS#11 base §5.6 C_CloseAllSessions: every session of the slot ends",
            |ctx| {
                let init = ctx.init()?;
                let a = init.open(false)?;
                let b = init.open(true)?;
                let close_all = ctx.module.f().C_CloseAllSessions.ok_or("C_CloseAllSessions is missing")?;
                // SAFETY: the slot of the sessions.
                check(unsafe { close_all(init.slot()?) }, ck::CKR_OK, "C_CloseAllSessions")?;
                let get = ctx.module.f().C_GetSessionInfo.ok_or("C_GetSessionInfo is missing")?;
                for s in [&a, &b] {
                    let mut info = ck::CK_SESSION_INFO { slotID: 0, state: 0, flags: 0, ulDeviceError: 0 };
                    // SAFETY: an output struct of the right type.
                    let rv = unsafe { get(s.h, &mut info) };
                    check(rv, ck::CKR_SESSION_HANDLE_INVALID, "C_GetSessionInfo after C_CloseAllSessions")?;
                }
                // The guards' own C_CloseSession now fails harmlessly.
                Ok(())
            },
        ),
        abi(
            "abi-session-info-null".into(),
            "PKCS#11 base §5.6 C_GetSessionInfo: pInfo NULL is CKR_ARGUMENTS_BAD",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(false)?;
                let get = ctx.module.f().C_GetSessionInfo.ok_or("C_GetSessionInfo is missing")?;
                // SAFETY: NULL is the argument the module must refuse.
                check(unsafe { get(s.h, null_mut()) }, ck::CKR_ARGUMENTS_BAD, "C_GetSessionInfo(NULL)")
            },
        ),
        abi(
            "abi-generate-random-null".into(),
            "PKCS#11 base §5.16 C_GenerateRandom: a NULL buffer is CKR_ARGUMENTS_BAD",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(false)?;
                let get = ctx.module.f().C_GenerateRandom.ok_or("C_GenerateRandom is missing")?;
                let mut buf = [0u8; 32];
                // SAFETY: a buffer of the length given, then NULL, which the module must refuse.
                check(unsafe { get(s.h, buf.as_mut_ptr(), 32) }, ck::CKR_OK, "C_GenerateRandom")?;
                if buf == [0u8; 32] {
                    return Err("C_GenerateRandom left 32 bytes all zero".into());
                }
                check(unsafe { get(s.h, null_mut(), 32) }, ck::CKR_ARGUMENTS_BAD, "C_GenerateRandom(NULL, 32)")
            },
        ),
    ]
}

/// Attributes of a template, kept alive while the module reads them.
struct Template {
    attrs: Vec<ck::CK_ATTRIBUTE>,
    _values: Vec<Vec<u8>>,
}

impl Template {
    fn new(items: Vec<(ck::CK_ATTRIBUTE_TYPE, Vec<u8>)>) -> Template {
        let mut values: Vec<Vec<u8>> = items.iter().map(|(_, v)| v.clone()).collect();
        let attrs = items
            .iter()
            .zip(values.iter_mut())
            .map(|((t, _), v)| ck::CK_ATTRIBUTE {
                type_: *t,
                pValue: if v.is_empty() { null_mut() } else { v.as_mut_ptr().cast() },
                ulValueLen: v.len() as ck::CK_ULONG,
            })
            .collect();
        Template { attrs, _values: values }
    }
}

fn ulong(v: ck::CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

fn flag(b: bool) -> Vec<u8> {
    vec![if b { ck::CK_TRUE } else { ck::CK_FALSE }]
}

/// The kit's RSA-2048 test key, as a session object that signs (created with C_CreateObject from
/// its components, as any module takes it).
fn create_rsa(init: &Init<'_>, s: &Sess<'_>) -> Result<ck::CK_OBJECT_HANDLE, String> {
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
    let key = rsa::PrivateKey::from_pkcs8_der(include_bytes!("../keys/rsa-2048.pk8"))
        .map_err(|e| format!("test key: {e}"))?;
    let be = |n: &rsa::BoxedUint| n.to_be_bytes_trimmed_vartime().to_vec();
    let primes = key.primes();
    let (p, q) = (&primes[0], &primes[1]);
    let crt = |what: &str, v: Option<rsa::BoxedUint>| v.map(|v| be(&v)).ok_or_else(|| format!("test key: no {what}"));
    let t = Template::new(vec![
        (ck::CKA_CLASS, ulong(ck::CKO_PRIVATE_KEY)),
        (ck::CKA_KEY_TYPE, ulong(ck::CKK_RSA)),
        (ck::CKA_TOKEN, flag(false)),
        (ck::CKA_PRIVATE, flag(true)),
        (ck::CKA_SENSITIVE, flag(true)),
        (ck::CKA_SIGN, flag(true)),
        (ck::CKA_LABEL, b"hsmkit-conformance-abi".to_vec()),
        (ck::CKA_MODULUS, be(key.n())),
        (ck::CKA_PUBLIC_EXPONENT, be(key.e())),
        (ck::CKA_PRIVATE_EXPONENT, be(key.d())),
        (ck::CKA_PRIME_1, be(p)),
        (ck::CKA_PRIME_2, be(q)),
        (ck::CKA_EXPONENT_1, crt("dP", key.dp().cloned())?),
        (ck::CKA_EXPONENT_2, crt("dQ", key.dq().cloned())?),
        (ck::CKA_COEFFICIENT, crt("qInv", key.crt_coefficient())?),
    ]);
    init.login(s, ck::CKU_USER)?;
    let create = init.f().C_CreateObject.ok_or("C_CreateObject is missing")?;
    let mut h = 0;
    let mut attrs = t.attrs;
    // SAFETY: the template's values live in `t`'s buffers through the call.
    let rv = unsafe { create(s.h, attrs.as_mut_ptr(), attrs.len() as ck::CK_ULONG, &mut h) };
    check(rv, ck::CKR_OK, "C_CreateObject of an RSA-2048 private key")?;
    Ok(h)
}

fn sha256_rsa() -> ck::CK_MECHANISM {
    ck::CK_MECHANISM { mechanism: ck::CKM_SHA256_RSA_PKCS, pParameter: null_mut(), ulParameterLen: 0 }
}

fn sign_init(init: &Init<'_>, s: &Sess<'_>, mech: &mut ck::CK_MECHANISM, key: ck::CK_OBJECT_HANDLE) -> ck::CK_RV {
    match init.f().C_SignInit {
        // SAFETY: a mechanism struct that lives through the call.
        Some(f) => unsafe { f(s.h, mech, key) },
        None => ck::CKR_FUNCTION_NOT_SUPPORTED,
    }
}

/// `C_Sign` into `out` (NULL for a size query); returns the return value and the length.
fn sign_into(init: &Init<'_>, s: &Sess<'_>, data: &[u8], out: Option<&mut [u8]>) -> (ck::CK_RV, ck::CK_ULONG) {
    let Some(f) = init.f().C_Sign else { return (ck::CKR_FUNCTION_NOT_SUPPORTED, 0) };
    let (p, mut len) = match out {
        Some(b) => (b.as_mut_ptr(), b.len() as ck::CK_ULONG),
        None => (null_mut(), 0),
    };
    // SAFETY: `p` is NULL or a buffer of `len` bytes; the data is only read.
    let rv = unsafe { f(s.h, data.as_ptr().cast_mut(), data.len() as ck::CK_ULONG, p, &mut len) };
    (rv, len)
}

/// The operation state machine and attribute templates.
fn operations() -> Vec<Case> {
    const MSG: &[u8] = b"hsmkit conformance: the ABI signs this";
    vec![
        abi(
            "abi-sign-size-query".into(),
            "PKCS#11 base §5.2 (the size-query protocol) and §5.13 C_Sign: a NULL buffer and a short one keep the operation; the full call ends it",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let key = create_rsa(&init, &s)?;
                check(sign_init(&init, &s, &mut sha256_rsa(), key), ck::CKR_OK, "C_SignInit")?;
                let (rv, len) = sign_into(&init, &s, MSG, None);
                check(rv, ck::CKR_OK, "C_Sign(NULL) (the size query)")?;
                if len != 256 {
                    return Err(format!("the size query says {len} bytes; an RSA-2048 signature is 256"));
                }
                let mut short = [0u8; 16];
                let (rv, len) = sign_into(&init, &s, MSG, Some(&mut short));
                check(rv, ck::CKR_BUFFER_TOO_SMALL, "C_Sign into 16 bytes")?;
                if len != 256 {
                    return Err(format!("after CKR_BUFFER_TOO_SMALL the length is {len}, not 256"));
                }
                let mut sig = vec![0u8; 256];
                let (rv, len) = sign_into(&init, &s, MSG, Some(&mut sig));
                check(rv, ck::CKR_OK, "C_Sign after the size queries (the operation must still be active)")?;
                sig.truncate(len as usize);
                use rsa::pkcs8::DecodePrivateKey as _;
                use rsa::signature::Verifier as _;
                let key = rsa::PrivateKey::from_pkcs8_der(include_bytes!("../keys/rsa-2048.pk8"))
                    .map_err(|e| e.to_string())?;
                let parsed = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).map_err(|e| e.to_string())?;
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.to_public_key())
                    .verify(MSG, &parsed)
                    .map_err(|_| "RustCrypto refuses the signature".to_string())?;
                let (rv, _) = sign_into(&init, &s, MSG, Some(&mut sig));
                check(rv, ck::CKR_OPERATION_NOT_INITIALIZED, "C_Sign after the operation ended")
            },
        ),
        abi(
            "abi-sign-init-twice".into(),
            "PKCS#11 base §5.13 C_SignInit: an active signing operation is CKR_OPERATION_ACTIVE",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let key = create_rsa(&init, &s)?;
                check(sign_init(&init, &s, &mut sha256_rsa(), key), ck::CKR_OK, "C_SignInit")?;
                check(sign_init(&init, &s, &mut sha256_rsa(), key), ck::CKR_OPERATION_ACTIVE, "a second C_SignInit")
            },
        ),
        abi(
            "abi-sign-not-initialized".into(),
            "PKCS#11 base §5.13 C_Sign: without C_SignInit, CKR_OPERATION_NOT_INITIALIZED",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let mut sig = [0u8; 256];
                let (rv, _) = sign_into(&init, &s, MSG, Some(&mut sig));
                check(rv, ck::CKR_OPERATION_NOT_INITIALIZED, "C_Sign without C_SignInit")
            },
        ),
        abi(
            "abi-sign-ends-after-error".into(),
            "PKCS#11 base §5.13 C_Sign: a call that fails (other than CKR_BUFFER_TOO_SMALL) ends the operation",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let key = create_rsa(&init, &s)?;
                let mut raw =
                    ck::CK_MECHANISM { mechanism: ck::CKM_RSA_PKCS, pParameter: null_mut(), ulParameterLen: 0 };
                check(sign_init(&init, &s, &mut raw, key), ck::CKR_OK, "C_SignInit(CKM_RSA_PKCS)")?;
                let mut sig = [0u8; 256];
                // More than k - 11 bytes: CKM_RSA_PKCS cannot sign it.
                let (rv, _) = sign_into(&init, &s, &[0x42; 300], Some(&mut sig));
                if rv == ck::CKR_OK {
                    return Err("CKM_RSA_PKCS signed 300 bytes with a 2048-bit key".into());
                }
                let (rv, _) = sign_into(&init, &s, b"short", Some(&mut sig));
                check(rv, ck::CKR_OPERATION_NOT_INITIALIZED, "C_Sign after a failed C_Sign")
            },
        ),
        abi(
            "abi-attribute-sensitive-and-unknown".into(),
            "PKCS#11 base §5.7 C_GetAttributeValue: a sensitive or unknown attribute gets CK_UNAVAILABLE_INFORMATION, the others are filled",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let key = create_rsa(&init, &s)?;
                let get = init.f().C_GetAttributeValue.ok_or("C_GetAttributeValue is missing")?;
                let mut label = [0u8; 64];
                let mut d = [0u8; 512];
                let mut junk = [0u8; 16];
                let mut t = [
                    ck::CK_ATTRIBUTE { type_: ck::CKA_LABEL, pValue: label.as_mut_ptr().cast(), ulValueLen: 64 },
                    ck::CK_ATTRIBUTE {
                        type_: ck::CKA_PRIVATE_EXPONENT,
                        pValue: d.as_mut_ptr().cast(),
                        ulValueLen: 512,
                    },
                    ck::CK_ATTRIBUTE {
                        type_: ck::CKA_VENDOR_DEFINED | 0x7e57,
                        pValue: junk.as_mut_ptr().cast(),
                        ulValueLen: 16,
                    },
                ];
                // SAFETY: each attribute points at a buffer of the length it gives.
                let rv = unsafe { get(s.h, key, t.as_mut_ptr(), 3) };
                check_any(rv, &[ck::CKR_ATTRIBUTE_SENSITIVE, ck::CKR_ATTRIBUTE_TYPE_INVALID], "C_GetAttributeValue")?;
                if t[0].ulValueLen != 22 || &label[..22] != b"hsmkit-conformance-abi" {
                    return Err(format!(
                        "the label was not filled in beside the refused attributes (length {})",
                        t[0].ulValueLen
                    ));
                }
                if t[1].ulValueLen != ck::CK_UNAVAILABLE_INFORMATION {
                    return Err(format!(
                        "the sensitive CKA_PRIVATE_EXPONENT has length {}, not CK_UNAVAILABLE_INFORMATION",
                        t[1].ulValueLen
                    ));
                }
                if d.iter().any(|b| *b != 0) {
                    return Err("bytes of the sensitive CKA_PRIVATE_EXPONENT were written out".into());
                }
                if t[2].ulValueLen != ck::CK_UNAVAILABLE_INFORMATION {
                    return Err(format!(
                        "an unknown attribute has length {}, not CK_UNAVAILABLE_INFORMATION",
                        t[2].ulValueLen
                    ));
                }
                Ok(())
            },
        ),
        abi(
            "abi-attribute-buffer-too-small".into(),
            "PKCS#11 base §5.7 C_GetAttributeValue: a short buffer is CKR_BUFFER_TOO_SMALL with CK_UNAVAILABLE_INFORMATION; NULL asks the length",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let key = create_rsa(&init, &s)?;
                let get = init.f().C_GetAttributeValue.ok_or("C_GetAttributeValue is missing")?;
                let mut t = [ck::CK_ATTRIBUTE { type_: ck::CKA_MODULUS, pValue: null_mut(), ulValueLen: 0 }];
                // SAFETY: a NULL value asks the length; then a buffer of 8 bytes, too short.
                check(
                    unsafe { get(s.h, key, t.as_mut_ptr(), 1) },
                    ck::CKR_OK,
                    "C_GetAttributeValue(CKA_MODULUS, NULL)",
                )?;
                if t[0].ulValueLen != 256 {
                    return Err(format!("CKA_MODULUS of an RSA-2048 key has length {}", t[0].ulValueLen));
                }
                let mut small = [0u8; 8];
                t[0].pValue = small.as_mut_ptr().cast();
                t[0].ulValueLen = 8;
                let rv = unsafe { get(s.h, key, t.as_mut_ptr(), 1) };
                check(rv, ck::CKR_BUFFER_TOO_SMALL, "C_GetAttributeValue(CKA_MODULUS) into 8 bytes")?;
                if t[0].ulValueLen != ck::CK_UNAVAILABLE_INFORMATION {
                    return Err(format!(
                        "after CKR_BUFFER_TOO_SMALL the length is {}, not CK_UNAVAILABLE_INFORMATION",
                        t[0].ulValueLen
                    ));
                }
                Ok(())
            },
        ),
        abi(
            "abi-set-read-only-attribute".into(),
            "PKCS#11 base §4 (attribute tables: CKA_CLASS fixed, CKA_SENSITIVE only ever set true) and §5.7 C_SetAttributeValue: CKR_ATTRIBUTE_READ_ONLY",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let key = create_rsa(&init, &s)?;
                let set = init.f().C_SetAttributeValue.ok_or("C_SetAttributeValue is missing")?;
                for (what, t, v) in [
                    ("CKA_CLASS", ck::CKA_CLASS, ulong(ck::CKO_SECRET_KEY)),
                    ("CKA_SENSITIVE false", ck::CKA_SENSITIVE, flag(false)),
                ] {
                    let mut t = Template::new(vec![(t, v)]);
                    // SAFETY: the template's value lives in `t`.
                    let rv = unsafe { set(s.h, key, t.attrs.as_mut_ptr(), 1) };
                    check_any(rv, &[ck::CKR_ATTRIBUTE_READ_ONLY], &format!("C_SetAttributeValue({what})"))?;
                }
                Ok(())
            },
        ),
        abi(
            "abi-create-incomplete-template".into(),
            "PKCS#11 base §5.7 C_CreateObject: an AES key without CKA_VALUE is CKR_TEMPLATE_INCOMPLETE",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                init.login(&s, ck::CKU_USER)?;
                let mut t = Template::new(vec![
                    (ck::CKA_CLASS, ulong(ck::CKO_SECRET_KEY)),
                    (ck::CKA_KEY_TYPE, ulong(ck::CKK_AES)),
                    (ck::CKA_TOKEN, flag(false)),
                ]);
                let create = init.f().C_CreateObject.ok_or("C_CreateObject is missing")?;
                let mut h = 0;
                // SAFETY: the template's values live in `t`.
                let rv = unsafe { create(s.h, t.attrs.as_mut_ptr(), t.attrs.len() as ck::CK_ULONG, &mut h) };
                check(rv, ck::CKR_TEMPLATE_INCOMPLETE, "C_CreateObject of an AES key without CKA_VALUE")
            },
        ),
        abi(
            "abi-generate-inconsistent-template".into(),
            "PKCS#11 base §5.14 C_GenerateKey: a CKA_KEY_TYPE or CKA_CLASS inconsistent with the generation mechanism is CKR_TEMPLATE_INCONSISTENT",
            |ctx| {
                let init = ctx.init()?;
                let slot = init.slot()?;
                let info_fn = init.f().C_GetMechanismInfo.ok_or("C_GetMechanismInfo is missing")?;
                let mut info = ck::CK_MECHANISM_INFO { ulMinKeySize: 0, ulMaxKeySize: 0, flags: 0 };
                // SAFETY: `info` is a live, writable CK_MECHANISM_INFO.
                let rv = unsafe { info_fn(slot, ck::CKM_AES_KEY_GEN, &mut info) };
                if rv == ck::CKR_MECHANISM_INVALID || (rv == ck::CKR_OK && info.flags & ck::CKF_GENERATE == 0) {
                    return Err(crate::skipped("the module does not list CKM_AES_KEY_GEN for C_GenerateKey"));
                }
                check(rv, ck::CKR_OK, "C_GetMechanismInfo(CKM_AES_KEY_GEN)")?;
                let s = init.open(true)?;
                init.login(&s, ck::CKU_USER)?;
                let generate = init.f().C_GenerateKey.ok_or("C_GenerateKey is missing")?;
                let destroy = init.f().C_DestroyObject.ok_or("C_DestroyObject is missing")?;
                for (what, class, key_type) in [
                    ("CKA_KEY_TYPE CKK_GENERIC_SECRET", ck::CKO_SECRET_KEY, ck::CKK_GENERIC_SECRET),
                    ("CKA_CLASS CKO_PUBLIC_KEY", ck::CKO_PUBLIC_KEY, ck::CKK_AES),
                ] {
                    let mut t = Template::new(vec![
                        (ck::CKA_CLASS, ulong(class)),
                        (ck::CKA_KEY_TYPE, ulong(key_type)),
                        (ck::CKA_VALUE_LEN, ulong(32)),
                        (ck::CKA_TOKEN, flag(false)),
                    ]);
                    let mut mech =
                        ck::CK_MECHANISM { mechanism: ck::CKM_AES_KEY_GEN, pParameter: null_mut(), ulParameterLen: 0 };
                    let mut h = 0;
                    // SAFETY: the mechanism and the template's values live on this frame.
                    let rv = unsafe {
                        generate(s.h, &mut mech, t.attrs.as_mut_ptr(), t.attrs.len() as ck::CK_ULONG, &mut h)
                    };
                    if rv == ck::CKR_OK {
                        // The module made a key it should not have: the token is left as found.
                        // SAFETY: `h` is the handle the module just returned in this session.
                        unsafe { destroy(s.h, h) };
                    }
                    check(rv, ck::CKR_TEMPLATE_INCONSISTENT, &format!("C_GenerateKey(CKM_AES_KEY_GEN) with {what}"))?;
                }
                Ok(())
            },
        ),
        abi(
            "abi-create-unknown-attribute".into(),
            "PKCS#11 base §5.7 C_CreateObject: an attribute type the module does not know is CKR_ATTRIBUTE_TYPE_INVALID",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                init.login(&s, ck::CKU_USER)?;
                let mut t = Template::new(vec![
                    (ck::CKA_CLASS, ulong(ck::CKO_SECRET_KEY)),
                    (ck::CKA_KEY_TYPE, ulong(ck::CKK_AES)),
                    (ck::CKA_TOKEN, flag(false)),
                    (ck::CKA_VALUE, vec![0x24; 32]),
                    (ck::CKA_VENDOR_DEFINED | 0x7e57, vec![1]),
                ]);
                let create = init.f().C_CreateObject.ok_or("C_CreateObject is missing")?;
                let mut h = 0;
                // SAFETY: the template's values live in `t`.
                let rv = unsafe { create(s.h, t.attrs.as_mut_ptr(), t.attrs.len() as ck::CK_ULONG, &mut h) };
                check(rv, ck::CKR_ATTRIBUTE_TYPE_INVALID, "C_CreateObject with attribute type 0x80007e57")
            },
        ),
        abi(
            "abi-find-objects-protocol".into(),
            "PKCS#11 base §5.7 C_FindObjectsInit, C_FindObjects, C_FindObjectsFinal: the operation's states",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(false)?;
                let f = init.f();
                let (fi, fo, ff) = (
                    f.C_FindObjectsInit.ok_or("C_FindObjectsInit is missing")?,
                    f.C_FindObjects.ok_or("C_FindObjects is missing")?,
                    f.C_FindObjectsFinal.ok_or("C_FindObjectsFinal is missing")?,
                );
                let mut found = [0 as ck::CK_OBJECT_HANDLE; 4];
                let mut n: ck::CK_ULONG = 0;
                // SAFETY: an empty template (NULL, 0) finds everything; outputs are sized.
                unsafe {
                    check(
                        fo(s.h, found.as_mut_ptr(), 4, &mut n),
                        ck::CKR_OPERATION_NOT_INITIALIZED,
                        "C_FindObjects without C_FindObjectsInit",
                    )?;
                    check(fi(s.h, null_mut(), 0), ck::CKR_OK, "C_FindObjectsInit")?;
                    check(fi(s.h, null_mut(), 0), ck::CKR_OPERATION_ACTIVE, "a second C_FindObjectsInit")?;
                    check(fo(s.h, found.as_mut_ptr(), 4, &mut n), ck::CKR_OK, "C_FindObjects")?;
                    if n > 4 {
                        return Err(format!("C_FindObjects returned {n} handles into room for 4"));
                    }
                    check(ff(s.h), ck::CKR_OK, "C_FindObjectsFinal")?;
                    check(ff(s.h), ck::CKR_OPERATION_NOT_INITIALIZED, "a second C_FindObjectsFinal")
                }
            },
        ),
    ]
}

/// Reads boolean attributes of `h`: `None` where the module does not give one.
fn bools(
    init: &Init<'_>,
    s: &Sess<'_>,
    h: ck::CK_OBJECT_HANDLE,
    which: &[ck::CK_ATTRIBUTE_TYPE],
) -> Result<Vec<Option<bool>>, String> {
    let get = init.f().C_GetAttributeValue.ok_or("C_GetAttributeValue is missing")?;
    let mut vals = vec![0u8; which.len()];
    let mut t: Vec<ck::CK_ATTRIBUTE> = which
        .iter()
        .zip(vals.iter_mut())
        .map(|(t, v)| ck::CK_ATTRIBUTE { type_: *t, pValue: (v as *mut u8).cast(), ulValueLen: 1 })
        .collect();
    // SAFETY: each attribute points at one byte, the size of a CK_BBOOL.
    let rv = unsafe { get(s.h, h, t.as_mut_ptr(), t.len() as ck::CK_ULONG) };
    check_any(rv, &[ck::CKR_OK, ck::CKR_ATTRIBUTE_TYPE_INVALID, ck::CKR_ATTRIBUTE_SENSITIVE], "C_GetAttributeValue")?;
    Ok(t.iter().zip(&vals).map(|(a, v)| (a.ulValueLen == 1).then_some(*v != 0)).collect())
}

/// An AES-256 session key made by `C_GenerateKey` (sensitive, not extractable unless asked).
fn generate_aes(
    init: &Init<'_>,
    s: &Sess<'_>,
    extractable: bool,
    sensitive: bool,
) -> Result<ck::CK_OBJECT_HANDLE, String> {
    init.login(s, ck::CKU_USER)?;
    let mut t = Template::new(vec![
        (ck::CKA_CLASS, ulong(ck::CKO_SECRET_KEY)),
        (ck::CKA_KEY_TYPE, ulong(ck::CKK_AES)),
        (ck::CKA_TOKEN, flag(false)),
        (ck::CKA_VALUE_LEN, ulong(32)),
        (ck::CKA_ENCRYPT, flag(true)),
        (ck::CKA_SENSITIVE, flag(sensitive)),
        (ck::CKA_EXTRACTABLE, flag(extractable)),
    ]);
    let generate = init.f().C_GenerateKey.ok_or("C_GenerateKey is missing")?;
    let mut mech = ck::CK_MECHANISM { mechanism: ck::CKM_AES_KEY_GEN, pParameter: null_mut(), ulParameterLen: 0 };
    let mut h = 0;
    // SAFETY: the template's values live in `t`; the mechanism has no parameter.
    let rv = unsafe { generate(s.h, &mut mech, t.attrs.as_mut_ptr(), t.attrs.len() as ck::CK_ULONG, &mut h) };
    check(rv, ck::CKR_OK, "C_GenerateKey(CKM_AES_KEY_GEN)")?;
    Ok(h)
}

/// An AES-256 session key made by `C_CreateObject` from a known value.
fn create_aes(
    init: &Init<'_>,
    s: &Sess<'_>,
    extractable: bool,
    sensitive: bool,
) -> Result<ck::CK_OBJECT_HANDLE, String> {
    init.login(s, ck::CKU_USER)?;
    let mut t = Template::new(vec![
        (ck::CKA_CLASS, ulong(ck::CKO_SECRET_KEY)),
        (ck::CKA_KEY_TYPE, ulong(ck::CKK_AES)),
        (ck::CKA_TOKEN, flag(false)),
        (ck::CKA_VALUE, vec![0x5c; 32]),
        (ck::CKA_ENCRYPT, flag(true)),
        (ck::CKA_SENSITIVE, flag(sensitive)),
        (ck::CKA_EXTRACTABLE, flag(extractable)),
    ]);
    let create = init.f().C_CreateObject.ok_or("C_CreateObject is missing")?;
    let mut h = 0;
    // SAFETY: the template's values live in `t`.
    let rv = unsafe { create(s.h, t.attrs.as_mut_ptr(), t.attrs.len() as ck::CK_ULONG, &mut h) };
    check(rv, ck::CKR_OK, "C_CreateObject of an AES key")?;
    Ok(h)
}

fn set_bool(init: &Init<'_>, s: &Sess<'_>, h: ck::CK_OBJECT_HANDLE, t: ck::CK_ATTRIBUTE_TYPE, v: bool) -> ck::CK_RV {
    let Some(set) = init.f().C_SetAttributeValue else { return ck::CKR_FUNCTION_NOT_SUPPORTED };
    let mut t = Template::new(vec![(t, flag(v))]);
    // SAFETY: the template's value lives in `t`.
    unsafe { set(s.h, h, t.attrs.as_mut_ptr(), 1) }
}

/// The `objects` profile's ABI-level cases: derived attributes, and what may change.
pub fn objects() -> Vec<Case> {
    let case = |id: &str, clause: &str, run: fn(&AbiCtx<'_>) -> CaseResult| Case {
        id: id.to_string(),
        profile: Profile::Objects,
        clause: clause.to_string(),
        body: Body::Abi(Arc::new(run)),
    };
    vec![
        case(
            "objects-generated-key-derived-attributes",
            "PKCS#11 base §4.9 (secret keys): a key generated sensitive and unextractable has CKA_LOCAL, CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE true",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let h = generate_aes(&init, &s, false, true)?;
                let got = bools(&init, &s, h, &[ck::CKA_LOCAL, ck::CKA_ALWAYS_SENSITIVE, ck::CKA_NEVER_EXTRACTABLE])?;
                for (name, v) in ["CKA_LOCAL", "CKA_ALWAYS_SENSITIVE", "CKA_NEVER_EXTRACTABLE"].iter().zip(got) {
                    if v != Some(true) {
                        return Err(format!("{name} of a generated, sensitive, unextractable key is {v:?}, not true"));
                    }
                }
                Ok(())
            },
        ),
        case(
            "objects-created-key-is-not-local",
            "PKCS#11 base §4.9: a key made by C_CreateObject from a value has CKA_LOCAL false",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let h = create_aes(&init, &s, false, true)?;
                match bools(&init, &s, h, &[ck::CKA_LOCAL])?[0] {
                    Some(false) => Ok(()),
                    other => Err(format!("CKA_LOCAL of a created key is {other:?}, not false")),
                }
            },
        ),
        case(
            "objects-sensitive-only-tightens",
            "PKCS#11 base §4.9 CKA_SENSITIVE: may be set to true, never back; CKA_ALWAYS_SENSITIVE stays false for a key that was not",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let h = generate_aes(&init, &s, true, false)?;
                check(set_bool(&init, &s, h, ck::CKA_SENSITIVE, true), ck::CKR_OK, "setting CKA_SENSITIVE to true")?;
                check_any(
                    set_bool(&init, &s, h, ck::CKA_SENSITIVE, false),
                    &[ck::CKR_ATTRIBUTE_READ_ONLY],
                    "setting CKA_SENSITIVE back to false",
                )?;
                match bools(&init, &s, h, &[ck::CKA_SENSITIVE, ck::CKA_ALWAYS_SENSITIVE])?[..] {
                    [Some(true), Some(false)] => Ok(()),
                    ref other => Err(format!("CKA_SENSITIVE, CKA_ALWAYS_SENSITIVE read {other:?}, not [true, false]")),
                }
            },
        ),
        case(
            "objects-extractable-only-tightens",
            "PKCS#11 base §4.9 CKA_EXTRACTABLE: may be set to false, never back; CKA_NEVER_EXTRACTABLE stays false for a key that was",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let h = generate_aes(&init, &s, true, true)?;
                check(
                    set_bool(&init, &s, h, ck::CKA_EXTRACTABLE, false),
                    ck::CKR_OK,
                    "setting CKA_EXTRACTABLE to false",
                )?;
                check_any(
                    set_bool(&init, &s, h, ck::CKA_EXTRACTABLE, true),
                    &[ck::CKR_ATTRIBUTE_READ_ONLY],
                    "setting CKA_EXTRACTABLE back to true",
                )?;
                match bools(&init, &s, h, &[ck::CKA_EXTRACTABLE, ck::CKA_NEVER_EXTRACTABLE])?[..] {
                    [Some(false), Some(false)] => Ok(()),
                    ref other => {
                        Err(format!("CKA_EXTRACTABLE, CKA_NEVER_EXTRACTABLE read {other:?}, not [false, false]"))
                    }
                }
            },
        ),
        case(
            "objects-copy-cannot-loosen",
            "PKCS#11 base §5.7 C_CopyObject: a copy may not turn CKA_SENSITIVE off or CKA_EXTRACTABLE on",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let h = generate_aes(&init, &s, false, true)?;
                let copy = init.f().C_CopyObject.ok_or("C_CopyObject is missing")?;
                for (what, t) in
                    [("CKA_SENSITIVE false", ck::CKA_SENSITIVE), ("CKA_EXTRACTABLE true", ck::CKA_EXTRACTABLE)]
                {
                    let v = t == ck::CKA_EXTRACTABLE;
                    let mut tpl = Template::new(vec![(t, flag(v))]);
                    let mut out = 0;
                    // SAFETY: the template's value lives in `tpl`.
                    let rv = unsafe { copy(s.h, h, tpl.attrs.as_mut_ptr(), 1, &mut out) };
                    if rv == ck::CKR_OK {
                        return Err(format!("C_CopyObject with {what} made a copy"));
                    }
                    check_any(
                        rv,
                        &[ck::CKR_ATTRIBUTE_READ_ONLY, ck::CKR_TEMPLATE_INCONSISTENT, ck::CKR_ATTRIBUTE_VALUE_INVALID],
                        &format!("C_CopyObject with {what}"),
                    )?;
                }
                Ok(())
            },
        ),
        case(
            "objects-private-hidden-from-public-session",
            "PKCS#11 base §4.4 CKA_PRIVATE and §5.7 C_FindObjects: a private object is invisible without the user's login",
            |ctx| {
                let init = ctx.init()?;
                let s = init.open(true)?;
                let h = generate_aes(&init, &s, false, true)?;
                let logout = init.f().C_Logout.ok_or("C_Logout is missing")?;
                // SAFETY: a session this case opened.
                check(unsafe { logout(s.h) }, ck::CKR_OK, "C_Logout")?;
                let (fi, fo, ff) = (
                    init.f().C_FindObjectsInit.ok_or("C_FindObjectsInit is missing")?,
                    init.f().C_FindObjects.ok_or("C_FindObjects is missing")?,
                    init.f().C_FindObjectsFinal.ok_or("C_FindObjectsFinal is missing")?,
                );
                let mut found = [0 as ck::CK_OBJECT_HANDLE; 64];
                let mut n: ck::CK_ULONG = 0;
                // SAFETY: an empty template; outputs are sized.
                unsafe {
                    check(fi(s.h, null_mut(), 0), ck::CKR_OK, "C_FindObjectsInit")?;
                    check(fo(s.h, found.as_mut_ptr(), 64, &mut n), ck::CKR_OK, "C_FindObjects")?;
                    check(ff(s.h), ck::CKR_OK, "C_FindObjectsFinal")?;
                }
                if found[..n as usize].contains(&h) {
                    return Err("a private key is found by a session that is not logged in".into());
                }
                Ok(())
            },
        ),
    ]
}
