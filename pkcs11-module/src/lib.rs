//! The hsmkit emulator as a loadable PKCS#11 module: `libhsmkit_pkcs11.so`.
//!
//! Any PKCS#11 application (OpenSC's `pkcs11-tool`, OpenSSL through a PKCS#11 provider, Java's
//! SunPKCS11, p11-kit) loads it like any other module. Each slot is an emulated nShield-style module
//! over a kmdata folder ([`config`]): keys made by the `hsmkit` CLI appear as objects, keys made
//! through PKCS#11 are stored as emulator key blobs the CLI sees, and every operation goes through
//! the key's ACL.
//!
//! The library exports `C_GetFunctionList` (the v2.40 table) and `C_GetInterfaceList` /
//! `C_GetInterface` (v3.0). Each entry point is a thin shim ([`entry`]) over an inner function that
//! returns a `Result`; the shim converts the error to its `CKR_*` and catches panics. The only
//! global state of the workspace lives in [`state`].
//!
//! Set `HSMKIT_PKCS11_LOG=1` to have the module explain its errors on standard error (never with
//! secrets: PINs and key material appear in no message).
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod config;
mod crypto;
pub mod entry;
pub mod ffi;
pub mod fuzz;
mod general;
mod objects;
pub mod ops;
pub mod state;
mod storage;
pub mod token;

use std::sync::OnceLock;

use cryptoki_sys as ck;
use cryptoki_sys::{CK_FLAGS, CK_RV, CK_ULONG};

use crate::entry::unsupported as u;
use crate::entry::*;
use crate::ffi::{Rv, rv, shim};

fn logging() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HSMKIT_PKCS11_LOG").is_some_and(|v| !v.is_empty() && v != "0"))
}

/// Explains an error on standard error when `HSMKIT_PKCS11_LOG` is set.
pub(crate) fn log(message: &str) {
    if logging() {
        eprintln!("hsmkit-pkcs11: {message}");
    }
}

/// Explains an emulator error (its text never holds secrets).
pub(crate) fn log_error(e: &hsmkit_backend::Error) {
    if logging() {
        eprintln!("hsmkit-pkcs11: {e}");
    }
}

/// An emulator error as a return code, explained when logging is on.
pub(crate) fn emu_err(e: hsmkit_backend::Error) -> Rv {
    log_error(&e);
    Rv::from(e)
}

macro_rules! function_list {
    ($ty:ident, $version:expr, $get_info:ident, { $($v3:tt)* }) => {
        ck::$ty {
            version: $version,
            C_Initialize: Some(C_Initialize),
            C_Finalize: Some(C_Finalize),
            C_GetInfo: Some($get_info),
            C_GetFunctionList: Some(C_GetFunctionList),
            C_GetSlotList: Some(C_GetSlotList),
            C_GetSlotInfo: Some(C_GetSlotInfo),
            C_GetTokenInfo: Some(C_GetTokenInfo),
            C_GetMechanismList: Some(C_GetMechanismList),
            C_GetMechanismInfo: Some(C_GetMechanismInfo),
            C_InitToken: Some(C_InitToken),
            C_InitPIN: Some(C_InitPIN),
            C_SetPIN: Some(C_SetPIN),
            C_OpenSession: Some(C_OpenSession),
            C_CloseSession: Some(C_CloseSession),
            C_CloseAllSessions: Some(C_CloseAllSessions),
            C_GetSessionInfo: Some(C_GetSessionInfo),
            C_GetOperationState: Some(u::C_GetOperationState),
            C_SetOperationState: Some(u::C_SetOperationState),
            C_Login: Some(C_Login),
            C_Logout: Some(C_Logout),
            C_CreateObject: Some(C_CreateObject),
            C_CopyObject: Some(C_CopyObject),
            C_DestroyObject: Some(C_DestroyObject),
            C_GetObjectSize: Some(u::C_GetObjectSize),
            C_GetAttributeValue: Some(C_GetAttributeValue),
            C_SetAttributeValue: Some(C_SetAttributeValue),
            C_FindObjectsInit: Some(C_FindObjectsInit),
            C_FindObjects: Some(C_FindObjects),
            C_FindObjectsFinal: Some(C_FindObjectsFinal),
            C_EncryptInit: Some(C_EncryptInit),
            C_Encrypt: Some(C_Encrypt),
            C_EncryptUpdate: Some(C_EncryptUpdate),
            C_EncryptFinal: Some(C_EncryptFinal),
            C_DecryptInit: Some(C_DecryptInit),
            C_Decrypt: Some(C_Decrypt),
            C_DecryptUpdate: Some(C_DecryptUpdate),
            C_DecryptFinal: Some(C_DecryptFinal),
            C_DigestInit: Some(C_DigestInit),
            C_Digest: Some(C_Digest),
            C_DigestUpdate: Some(C_DigestUpdate),
            C_DigestKey: Some(C_DigestKey),
            C_DigestFinal: Some(C_DigestFinal),
            C_SignInit: Some(C_SignInit),
            C_Sign: Some(C_Sign),
            C_SignUpdate: Some(C_SignUpdate),
            C_SignFinal: Some(C_SignFinal),
            C_SignRecoverInit: Some(u::C_SignRecoverInit),
            C_SignRecover: Some(u::C_SignRecover),
            C_VerifyInit: Some(C_VerifyInit),
            C_Verify: Some(C_Verify),
            C_VerifyUpdate: Some(C_VerifyUpdate),
            C_VerifyFinal: Some(C_VerifyFinal),
            C_VerifyRecoverInit: Some(u::C_VerifyRecoverInit),
            C_VerifyRecover: Some(u::C_VerifyRecover),
            C_DigestEncryptUpdate: Some(u::C_DigestEncryptUpdate),
            C_DecryptDigestUpdate: Some(u::C_DecryptDigestUpdate),
            C_SignEncryptUpdate: Some(u::C_SignEncryptUpdate),
            C_DecryptVerifyUpdate: Some(u::C_DecryptVerifyUpdate),
            C_GenerateKey: Some(C_GenerateKey),
            C_GenerateKeyPair: Some(C_GenerateKeyPair),
            C_WrapKey: Some(C_WrapKey),
            C_UnwrapKey: Some(C_UnwrapKey),
            C_DeriveKey: Some(C_DeriveKey),
            C_SeedRandom: Some(C_SeedRandom),
            C_GenerateRandom: Some(C_GenerateRandom),
            C_GetFunctionStatus: Some(C_GetFunctionStatus),
            C_CancelFunction: Some(C_CancelFunction),
            C_WaitForSlotEvent: Some(u::C_WaitForSlotEvent),
            $($v3)*
        }
    };
}

/// The v2.40 function list.
pub static FUNCTION_LIST: ck::CK_FUNCTION_LIST =
    function_list!(CK_FUNCTION_LIST, ck::CK_VERSION { major: 2, minor: 40 }, C_GetInfo, {});

/// The v2.40 function list for a process that links the module rather than loading the `.so`,
/// over the emulator `config` describes (kmdata, NVRAM, cards, seed, clock) as slot 0: from the
/// next `C_Initialize` the module reads this configuration instead of `HSMKIT_CONF`. The
/// conformance kit drives the in-process emulator's C ABI through it.
pub fn in_process(config: &hsmkit_emulator::Config) -> &'static ck::CK_FUNCTION_LIST {
    config::ModuleConfig::set_in_process(Some(config::ModuleConfig::in_process(config)));
    &FUNCTION_LIST
}

/// The v3.0 function list.
pub static FUNCTION_LIST_3_0: ck::CK_FUNCTION_LIST_3_0 = function_list!(CK_FUNCTION_LIST_3_0, ck::CK_VERSION { major: 3, minor: 0 }, C_GetInfo_3_0, {
    C_GetInterfaceList: Some(C_GetInterfaceList),
    C_GetInterface: Some(C_GetInterface),
    C_LoginUser: Some(C_LoginUser),
    C_SessionCancel: Some(u::C_SessionCancel),
    C_MessageEncryptInit: Some(u::C_MessageEncryptInit),
    C_EncryptMessage: Some(u::C_EncryptMessage),
    C_EncryptMessageBegin: Some(u::C_EncryptMessageBegin),
    C_EncryptMessageNext: Some(u::C_EncryptMessageNext),
    C_MessageEncryptFinal: Some(u::C_MessageEncryptFinal),
    C_MessageDecryptInit: Some(u::C_MessageDecryptInit),
    C_DecryptMessage: Some(u::C_DecryptMessage),
    C_DecryptMessageBegin: Some(u::C_DecryptMessageBegin),
    C_DecryptMessageNext: Some(u::C_DecryptMessageNext),
    C_MessageDecryptFinal: Some(u::C_MessageDecryptFinal),
    C_MessageSignInit: Some(u::C_MessageSignInit),
    C_SignMessage: Some(u::C_SignMessage),
    C_SignMessageBegin: Some(u::C_SignMessageBegin),
    C_SignMessageNext: Some(u::C_SignMessageNext),
    C_MessageSignFinal: Some(u::C_MessageSignFinal),
    C_MessageVerifyInit: Some(u::C_MessageVerifyInit),
    C_VerifyMessage: Some(u::C_VerifyMessage),
    C_VerifyMessageBegin: Some(u::C_VerifyMessageBegin),
    C_VerifyMessageNext: Some(u::C_VerifyMessageNext),
    C_MessageVerifyFinal: Some(u::C_MessageVerifyFinal),
});

/// The interface name both interfaces carry.
static INTERFACE_NAME: &[u8; 16] = b"PKCS 11\0\0\0\0\0\0\0\0\0";

/// A `CK_INTERFACE` table that may live in a static: it points only at statics.
struct Interfaces([ck::CK_INTERFACE; 2]);

// SAFETY: the table is never written; its pointers name immutable statics.
unsafe impl Sync for Interfaces {}

static INTERFACES: Interfaces = Interfaces([
    ck::CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut u8,
        pFunctionList: &FUNCTION_LIST_3_0 as *const ck::CK_FUNCTION_LIST_3_0 as *mut std::ffi::c_void,
        flags: 0,
    },
    ck::CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut u8,
        pFunctionList: &FUNCTION_LIST as *const ck::CK_FUNCTION_LIST as *mut std::ffi::c_void,
        flags: 0,
    },
]);

fn interface_version(i: &ck::CK_INTERFACE) -> ck::CK_VERSION {
    // SAFETY: every interface's function list starts with its CK_VERSION.
    unsafe { *(i.pFunctionList as *const ck::CK_VERSION) }
}

/// `C_GetFunctionList`: the v2.40 table.
///
/// # Safety
/// `list` must be null or point to writable memory for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut ck::CK_FUNCTION_LIST) -> CK_RV {
    // SAFETY: the caller's arguments go on unchanged to the entry point, which checks them.
    unsafe { entry::C_GetFunctionList(list) }
}

/// `C_GetInterfaceList` (v3.0): the v3.0 and v2.40 interfaces, named "PKCS 11".
///
/// # Safety
/// As for any PKCS#11 list function: `count` must be writable, `list` null or room for `*count`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInterfaceList(list: *mut ck::CK_INTERFACE, count: *mut CK_ULONG) -> CK_RV {
    // SAFETY: the caller gives a writable count and room for `*count` entries (or null, to ask the count); `put_list` writes no more.
    shim(|| unsafe { ffi::put_list(list, count, &INTERFACES.0) })
}

/// `C_GetInterface` (v3.0): by name ("PKCS 11" or null) and version (or null: the newest).
///
/// # Safety
/// `name` null or a NUL-terminated string; `version` null or readable; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetInterface(
    name: *mut u8,
    version: *mut ck::CK_VERSION,
    out: *mut *mut ck::CK_INTERFACE,
    flags: CK_FLAGS,
) -> CK_RV {
    shim(|| {
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        let out = unsafe { ffi::out_struct(out) }?;
        if !name.is_null() {
            // SAFETY: a non-null name is NUL-terminated, per the specification.
            let name = unsafe { std::ffi::CStr::from_ptr(name as *const std::ffi::c_char) };
            if name.to_bytes() != b"PKCS 11" {
                return Err(Rv(ck::CKR_ARGUMENTS_BAD));
            }
        }
        // SAFETY: a non-null version is readable.
        let want = unsafe { version.as_ref() };
        let found = INTERFACES.0.iter().find(|i| {
            let v = interface_version(i);
            want.is_none_or(|w| w.major == v.major && w.minor == v.minor) && i.flags & flags == flags
        });
        match found {
            Some(i) => {
                *out = i as *const ck::CK_INTERFACE as *mut ck::CK_INTERFACE;
                Ok(())
            }
            None => Err(rv::ARGUMENTS_BAD),
        }
    })
}
