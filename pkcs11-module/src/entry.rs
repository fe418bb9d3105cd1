//! The C entry points: one thin shim per PKCS#11 function, which checks and converts the caller's
//! pointers, calls the inner function and turns its result into a `CK_RV`. The shims hold no logic.
#![allow(unsafe_code, non_snake_case, clippy::missing_safety_doc)]

use std::ffi::c_void;

use cryptoki_sys as ck;
use cryptoki_sys::{
    CK_ATTRIBUTE_PTR, CK_BBOOL, CK_BYTE_PTR, CK_FLAGS, CK_MECHANISM_PTR, CK_MECHANISM_TYPE, CK_NOTIFY,
    CK_OBJECT_HANDLE, CK_OBJECT_HANDLE_PTR, CK_RV, CK_SESSION_HANDLE, CK_SLOT_ID, CK_ULONG, CK_ULONG_PTR, CK_USER_TYPE,
    CK_UTF8CHAR_PTR,
};

use crate::crypto::Which;
use crate::ffi::{
    Answer, OutBuf, Rv, answer_template, checked_len, in_bytes, in_bytes_owned, in_mechanism, in_struct, in_template,
    out_struct, put_list, rv, shim,
};
use crate::objects::Template;
use crate::{crypto, general, objects, state};

/// `C_Initialize`: the locking arguments are checked; the module always uses its own locks, so
/// callers that supply mutex functions must also allow OS locking (`CKF_OS_LOCKING_OK`).
pub unsafe extern "C" fn C_Initialize(args: *mut c_void) -> CK_RV {
    shim(|| {
        // SAFETY: a non-null argument is a CK_C_INITIALIZE_ARGS, per the specification.
        if let Some(a) = unsafe { (args as *const ck::CK_C_INITIALIZE_ARGS).as_ref() } {
            if !a.pReserved.is_null() {
                return Err(rv::ARGUMENTS_BAD);
            }
            let given =
                [a.CreateMutex.is_some(), a.DestroyMutex.is_some(), a.LockMutex.is_some(), a.UnlockMutex.is_some()];
            if given.iter().any(|g| *g) && !given.iter().all(|g| *g) {
                return Err(rv::ARGUMENTS_BAD);
            }
            if given[0] && a.flags & ck::CKF_OS_LOCKING_OK == 0 {
                return Err(Rv(ck::CKR_CANT_LOCK));
            }
        }
        state::initialize()
    })
}

/// `C_Finalize`.
pub unsafe extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    shim(|| if reserved.is_null() { state::finalize() } else { Err(rv::ARGUMENTS_BAD) })
}

/// `C_GetInfo` of the v2.40 interface: `cryptokiVersion` 2.40.
pub unsafe extern "C" fn C_GetInfo(info: *mut ck::CK_INFO) -> CK_RV {
    // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
    shim(|| general::get_info(unsafe { out_struct(info) }?, ck::CK_VERSION { major: 2, minor: 40 }))
}

/// `C_GetInfo` of the v3.0 interface: `cryptokiVersion` 3.0, the version of the interface the
/// caller chose.
pub unsafe extern "C" fn C_GetInfo_3_0(info: *mut ck::CK_INFO) -> CK_RV {
    // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
    shim(|| general::get_info(unsafe { out_struct(info) }?, ck::CK_VERSION { major: 3, minor: 0 }))
}

/// `C_GetFunctionList`.
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut ck::CK_FUNCTION_LIST) -> CK_RV {
    shim(|| {
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        let out = unsafe { out_struct(list) }?;
        *out = &crate::FUNCTION_LIST as *const ck::CK_FUNCTION_LIST as *mut ck::CK_FUNCTION_LIST;
        Ok(())
    })
}

/// `C_GetSlotList`.
pub unsafe extern "C" fn C_GetSlotList(_present: CK_BBOOL, list: *mut CK_SLOT_ID, count: CK_ULONG_PTR) -> CK_RV {
    shim(|| {
        let lib = state::library()?;
        // SAFETY: the caller gives a writable count and room for `*count` entries (or null, to ask the count); `put_list` writes no more.
        unsafe { put_list(list, count, &general::slot_list(&lib)) }
    })
}

/// `C_GetSlotInfo`.
pub unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut ck::CK_SLOT_INFO) -> CK_RV {
    shim(|| {
        state::library()?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        general::get_slot_info(slot, unsafe { out_struct(info) }?)
    })
}

/// `C_GetTokenInfo`.
pub unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut ck::CK_TOKEN_INFO) -> CK_RV {
    shim(|| {
        state::library()?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        general::get_token_info(slot, unsafe { out_struct(info) }?)
    })
}

/// `C_GetMechanismList`.
pub unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: CK_ULONG_PTR,
) -> CK_RV {
    // SAFETY: the caller gives a writable count and room for `*count` entries (or null, to ask the count); `put_list` writes no more.
    shim(|| unsafe { put_list(list, count, &general::mechanism_list(slot)?) })
}

/// `C_GetMechanismInfo`.
pub unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    ty: CK_MECHANISM_TYPE,
    info: *mut ck::CK_MECHANISM_INFO,
) -> CK_RV {
    shim(|| {
        state::library()?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        general::mechanism_info(slot, ty, unsafe { out_struct(info) }?)
    })
}

/// `C_InitToken`.
pub unsafe extern "C" fn C_InitToken(
    slot: CK_SLOT_ID,
    pin: CK_UTF8CHAR_PTR,
    len: CK_ULONG,
    label: CK_UTF8CHAR_PTR,
) -> CK_RV {
    shim(|| {
        state::library()?;
        // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
        let pin = unsafe { in_bytes(pin, len) }?;
        // SAFETY: the caller gives a readable structure of this type or null; `in_struct` refuses null.
        let label = unsafe { in_struct(label as *const [u8; 32]) }?;
        general::init_token(slot, pin, label)
    })
}

/// `C_InitPIN`.
pub unsafe extern "C" fn C_InitPIN(h: CK_SESSION_HANDLE, pin: CK_UTF8CHAR_PTR, len: CK_ULONG) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
        general::init_pin(h, unsafe { in_bytes(pin, len) }?)
    })
}

/// `C_SetPIN`.
pub unsafe extern "C" fn C_SetPIN(
    h: CK_SESSION_HANDLE,
    old: CK_UTF8CHAR_PTR,
    old_len: CK_ULONG,
    new: CK_UTF8CHAR_PTR,
    new_len: CK_ULONG,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
        general::set_pin(h, unsafe { in_bytes(old, old_len) }?, unsafe { in_bytes(new, new_len) }?)
    })
}

/// `C_OpenSession`: the notification callback is not used (the module has no events to report).
pub unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _app: *mut c_void,
    _notify: CK_NOTIFY,
    out: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    shim(|| {
        state::library()?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        let out = unsafe { out_struct(out) }?;
        *out = general::open_session(slot, flags)?;
        Ok(())
    })
}

/// `C_CloseSession`.
pub unsafe extern "C" fn C_CloseSession(h: CK_SESSION_HANDLE) -> CK_RV {
    shim(|| general::close_session(h))
}

/// `C_CloseAllSessions`.
pub unsafe extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    shim(|| general::close_all_sessions(slot))
}

/// `C_GetSessionInfo`.
pub unsafe extern "C" fn C_GetSessionInfo(h: CK_SESSION_HANDLE, info: *mut ck::CK_SESSION_INFO) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        general::get_session_info(h, unsafe { out_struct(info) }?)
    })
}

/// `C_Login`.
pub unsafe extern "C" fn C_Login(
    h: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: CK_UTF8CHAR_PTR,
    len: CK_ULONG,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
        general::login(h, user, unsafe { in_bytes(pin, len) }?)
    })
}

/// `C_Logout`.
pub unsafe extern "C" fn C_Logout(h: CK_SESSION_HANDLE) -> CK_RV {
    shim(|| general::logout(h))
}

/// `C_CreateObject`.
pub unsafe extern "C" fn C_CreateObject(
    h: CK_SESSION_HANDLE,
    t: CK_ATTRIBUTE_PTR,
    n: CK_ULONG,
    out: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives `n` CK_ATTRIBUTEs at `t` whose value pointers and lengths are valid; `in_template` bounds the count and each value.
        let t = Template::new(unsafe { in_template(t, n) }?)?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        let out = unsafe { out_struct(out) }?;
        *out = objects::create_object(h, &t)?;
        Ok(())
    })
}

/// `C_CopyObject`.
pub unsafe extern "C" fn C_CopyObject(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    t: CK_ATTRIBUTE_PTR,
    n: CK_ULONG,
    out: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives `n` CK_ATTRIBUTEs at `t` whose value pointers and lengths are valid; `in_template` bounds the count and each value.
        let t = Template::new(unsafe { in_template(t, n) }?)?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        let out = unsafe { out_struct(out) }?;
        *out = objects::copy_object(h, obj, &t)?;
        Ok(())
    })
}

/// `C_DestroyObject`.
pub unsafe extern "C" fn C_DestroyObject(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) -> CK_RV {
    shim(|| objects::destroy_object(h, obj))
}

/// `C_GetAttributeValue`.
pub unsafe extern "C" fn C_GetAttributeValue(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    t: CK_ATTRIBUTE_PTR,
    n: CK_ULONG,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
        let types: Vec<ck::CK_ATTRIBUTE_TYPE> = unsafe { in_bytes(t, n) }?.iter().map(|a| a.type_).collect();
        if t.is_null() {
            return Err(rv::ARGUMENTS_BAD);
        }
        let answers = objects::get_attribute_values(h, obj, &types)?;
        let mut it = answers.into_iter();
        // SAFETY: the pointers come from the caller, who keeps them valid for the call, as PKCS#11 requires.
        unsafe { answer_template(t, n, |_| it.next().unwrap_or(Answer::Invalid)) }
    })
}

/// `C_SetAttributeValue`.
pub unsafe extern "C" fn C_SetAttributeValue(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    t: CK_ATTRIBUTE_PTR,
    n: CK_ULONG,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives `n` CK_ATTRIBUTEs at `t` whose value pointers and lengths are valid; `in_template` bounds the count and each value.
        let t = Template::new(unsafe { in_template(t, n) }?)?;
        objects::set_attribute_value(h, obj, &t)
    })
}

/// `C_FindObjectsInit`.
pub unsafe extern "C" fn C_FindObjectsInit(h: CK_SESSION_HANDLE, t: CK_ATTRIBUTE_PTR, n: CK_ULONG) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives `n` CK_ATTRIBUTEs at `t` whose value pointers and lengths are valid; `in_template` bounds the count and each value.
        let t = Template::new(unsafe { in_template(t, n) }?)?;
        objects::find_init(h, &t)
    })
}

/// `C_FindObjects`.
pub unsafe extern "C" fn C_FindObjects(
    h: CK_SESSION_HANDLE,
    out: CK_OBJECT_HANDLE_PTR,
    max: CK_ULONG,
    count: CK_ULONG_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        let count = unsafe { out_struct(count) }?;
        if out.is_null() {
            return Err(rv::ARGUMENTS_BAD);
        }
        let found = objects::find(h, usize::try_from(max).unwrap_or(usize::MAX))?;
        // SAFETY: the caller gave room for `max` handles at `out`, and `found.len() <= max`.
        unsafe { std::ptr::copy_nonoverlapping(found.as_ptr(), out, found.len()) };
        *count = found.len() as CK_ULONG;
        Ok(())
    })
}

/// `C_FindObjectsFinal`.
pub unsafe extern "C" fn C_FindObjectsFinal(h: CK_SESSION_HANDLE) -> CK_RV {
    shim(|| objects::find_final(h))
}

/// `C_EncryptInit`.
pub unsafe extern "C" fn C_EncryptInit(h: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, key: CK_OBJECT_HANDLE) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives a CK_MECHANISM whose parameter pointer and length are valid, or null; `in_mechanism` refuses null and bounds the parameter.
        crypto::encrypt_init(h, &unsafe { in_mechanism(m) }?, key)
    })
}

/// `C_Encrypt`.
pub unsafe extern "C" fn C_Encrypt(
    h: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        crypto::ending_on_error(h, Which::Encrypt, || {
            // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
            let input = unsafe { in_bytes_owned(data, len) }?;
            // SAFETY: the caller gives an output buffer of `*len` bytes (or null, to ask the length) and a writable length, as PKCS#11 requires.
            crypto::crypt(h, &input, unsafe { OutBuf::new(out, out_len) }?, false)
        })
    })
}

/// `C_EncryptUpdate` (AES modes; RSA is single-part).
pub unsafe extern "C" fn C_EncryptUpdate(
    h: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        crypto::ending_on_error(h, Which::Encrypt, || {
            // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
            let input = unsafe { in_bytes_owned(data, len) }?;
            // SAFETY: the caller gives an output buffer of `*len` bytes (or null, to ask the length) and a writable length, as PKCS#11 requires.
            crypto::crypt_update(h, &input, unsafe { OutBuf::new(out, out_len) }?, false)
        })
    })
}

/// `C_EncryptFinal` (AES modes).
pub unsafe extern "C" fn C_EncryptFinal(h: CK_SESSION_HANDLE, out: CK_BYTE_PTR, out_len: CK_ULONG_PTR) -> CK_RV {
    shim(|| {
        state::session(h)?;
        crypto::ending_on_error(h, Which::Encrypt, || {
            // SAFETY: the caller gives an output buffer of `*len` bytes (or null, to ask the length) and a writable length, as PKCS#11 requires.
            crypto::crypt_final(h, unsafe { OutBuf::new(out, out_len) }?, false)
        })
    })
}

/// `C_DecryptInit`.
pub unsafe extern "C" fn C_DecryptInit(h: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, key: CK_OBJECT_HANDLE) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives a CK_MECHANISM whose parameter pointer and length are valid, or null; `in_mechanism` refuses null and bounds the parameter.
        crypto::decrypt_init(h, &unsafe { in_mechanism(m) }?, key)
    })
}

/// `C_Decrypt`.
pub unsafe extern "C" fn C_Decrypt(
    h: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        crypto::ending_on_error(h, Which::Decrypt, || {
            // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
            let input = unsafe { in_bytes_owned(data, len) }?;
            // SAFETY: the caller gives an output buffer of `*len` bytes (or null, to ask the length) and a writable length, as PKCS#11 requires.
            crypto::crypt(h, &input, unsafe { OutBuf::new(out, out_len) }?, true)
        })
    })
}

/// `C_DecryptUpdate` (AES modes; RSA is single-part).
pub unsafe extern "C" fn C_DecryptUpdate(
    h: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        crypto::ending_on_error(h, Which::Decrypt, || {
            // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
            let input = unsafe { in_bytes_owned(data, len) }?;
            // SAFETY: the caller gives an output buffer of `*len` bytes (or null, to ask the length) and a writable length, as PKCS#11 requires.
            crypto::crypt_update(h, &input, unsafe { OutBuf::new(out, out_len) }?, true)
        })
    })
}

/// `C_DecryptFinal` (AES modes).
pub unsafe extern "C" fn C_DecryptFinal(h: CK_SESSION_HANDLE, out: CK_BYTE_PTR, out_len: CK_ULONG_PTR) -> CK_RV {
    shim(|| {
        state::session(h)?;
        crypto::ending_on_error(h, Which::Decrypt, || {
            // SAFETY: the caller gives an output buffer of `*len` bytes (or null, to ask the length) and a writable length, as PKCS#11 requires.
            crypto::crypt_final(h, unsafe { OutBuf::new(out, out_len) }?, true)
        })
    })
}

/// `C_DigestInit`.
pub unsafe extern "C" fn C_DigestInit(h: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives a CK_MECHANISM whose parameter pointer and length are valid, or null; `in_mechanism` refuses null and bounds the parameter.
        crypto::digest_init(h, &unsafe { in_mechanism(m) }?)
    })
}

/// `C_Digest`.
pub unsafe extern "C" fn C_Digest(
    h: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        crypto::ending_on_error(h, Which::Digest, || {
            // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
            let input = unsafe { in_bytes_owned(data, len) }?;
            // SAFETY: the caller gives an output buffer of `*len` bytes (or null, to ask the length) and a writable length, as PKCS#11 requires.
            crypto::digest(h, &input, unsafe { OutBuf::new(out, out_len) }?, false)
        })
    })
}

/// `C_DigestUpdate`.
pub unsafe extern "C" fn C_DigestUpdate(h: CK_SESSION_HANDLE, data: CK_BYTE_PTR, len: CK_ULONG) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
        crypto::ending_on_error(h, Which::Digest, || crypto::digest_update(h, unsafe { in_bytes(data, len) }?))
    })
}

/// `C_DigestFinal`.
pub unsafe extern "C" fn C_DigestFinal(h: CK_SESSION_HANDLE, out: CK_BYTE_PTR, out_len: CK_ULONG_PTR) -> CK_RV {
    shim(|| {
        state::session(h)?;
        crypto::ending_on_error(h, Which::Digest, || {
            // SAFETY: the caller gives an output buffer of `*len` bytes (or null, to ask the length) and a writable length, as PKCS#11 requires.
            crypto::digest(h, &[], unsafe { OutBuf::new(out, out_len) }?, true)
        })
    })
}

/// `C_SignInit`.
pub unsafe extern "C" fn C_SignInit(h: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, key: CK_OBJECT_HANDLE) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives a CK_MECHANISM whose parameter pointer and length are valid, or null; `in_mechanism` refuses null and bounds the parameter.
        crypto::sign_init(h, &unsafe { in_mechanism(m) }?, key)
    })
}

/// `C_Sign`.
pub unsafe extern "C" fn C_Sign(
    h: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        crypto::ending_on_error(h, Which::Sign, || {
            // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
            let input = unsafe { in_bytes_owned(data, len) }?;
            // SAFETY: the caller gives an output buffer of `*len` bytes (or null, to ask the length) and a writable length, as PKCS#11 requires.
            crypto::sign(h, &input, unsafe { OutBuf::new(out, out_len) }?, false)
        })
    })
}

/// `C_SignUpdate`.
pub unsafe extern "C" fn C_SignUpdate(h: CK_SESSION_HANDLE, data: CK_BYTE_PTR, len: CK_ULONG) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
        crypto::ending_on_error(h, Which::Sign, || crypto::update(h, unsafe { in_bytes(data, len) }?, false))
    })
}

/// `C_SignFinal`.
pub unsafe extern "C" fn C_SignFinal(h: CK_SESSION_HANDLE, out: CK_BYTE_PTR, out_len: CK_ULONG_PTR) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives an output buffer of `*len` bytes (or null, to ask the length) and a writable length, as PKCS#11 requires.
        crypto::ending_on_error(h, Which::Sign, || crypto::sign(h, &[], unsafe { OutBuf::new(out, out_len) }?, true))
    })
}

/// `C_VerifyInit`.
pub unsafe extern "C" fn C_VerifyInit(h: CK_SESSION_HANDLE, m: CK_MECHANISM_PTR, key: CK_OBJECT_HANDLE) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives a CK_MECHANISM whose parameter pointer and length are valid, or null; `in_mechanism` refuses null and bounds the parameter.
        crypto::verify_init(h, &unsafe { in_mechanism(m) }?, key)
    })
}

/// `C_Verify`.
pub unsafe extern "C" fn C_Verify(
    h: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    len: CK_ULONG,
    sig: CK_BYTE_PTR,
    sig_len: CK_ULONG,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        crypto::ending_on_error(h, Which::Verify, || {
            // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
            crypto::verify(h, unsafe { in_bytes(data, len) }?, unsafe { in_bytes(sig, sig_len) }?, false)
        })
    })
}

/// `C_VerifyUpdate`.
pub unsafe extern "C" fn C_VerifyUpdate(h: CK_SESSION_HANDLE, data: CK_BYTE_PTR, len: CK_ULONG) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
        crypto::ending_on_error(h, Which::Verify, || crypto::update(h, unsafe { in_bytes(data, len) }?, true))
    })
}

/// `C_VerifyFinal`.
pub unsafe extern "C" fn C_VerifyFinal(h: CK_SESSION_HANDLE, sig: CK_BYTE_PTR, sig_len: CK_ULONG) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
        crypto::ending_on_error(h, Which::Verify, || crypto::verify(h, &[], unsafe { in_bytes(sig, sig_len) }?, true))
    })
}

/// `C_GenerateKey`.
pub unsafe extern "C" fn C_GenerateKey(
    h: CK_SESSION_HANDLE,
    m: CK_MECHANISM_PTR,
    t: CK_ATTRIBUTE_PTR,
    n: CK_ULONG,
    out: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives a CK_MECHANISM whose parameter pointer and length are valid, or null; `in_mechanism` refuses null and bounds the parameter.
        let m = unsafe { in_mechanism(m) }?;
        // SAFETY: the caller gives `n` CK_ATTRIBUTEs at `t` whose value pointers and lengths are valid; `in_template` bounds the count and each value.
        let t = Template::new(unsafe { in_template(t, n) }?)?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        let out = unsafe { out_struct(out) }?;
        *out = objects::generate_key(h, &m, &t)?;
        Ok(())
    })
}

/// `C_GenerateKeyPair`.
pub unsafe extern "C" fn C_GenerateKeyPair(
    h: CK_SESSION_HANDLE,
    m: CK_MECHANISM_PTR,
    pt: CK_ATTRIBUTE_PTR,
    pn: CK_ULONG,
    st: CK_ATTRIBUTE_PTR,
    sn: CK_ULONG,
    public: CK_OBJECT_HANDLE_PTR,
    private: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives a CK_MECHANISM whose parameter pointer and length are valid, or null; `in_mechanism` refuses null and bounds the parameter.
        let m = unsafe { in_mechanism(m) }?;
        // SAFETY: the caller gives `n` CK_ATTRIBUTEs at `t` whose value pointers and lengths are valid; `in_template` bounds the count and each value.
        let pt = Template::new(unsafe { in_template(pt, pn) }?)?;
        // SAFETY: the caller gives `n` CK_ATTRIBUTEs at `t` whose value pointers and lengths are valid; `in_template` bounds the count and each value.
        let st = Template::new(unsafe { in_template(st, sn) }?)?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        let public = unsafe { out_struct(public) }?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        let private = unsafe { out_struct(private) }?;
        (*public, *private) = objects::generate_key_pair(h, &m, &pt, &st)?;
        Ok(())
    })
}

/// `C_WrapKey`.
pub unsafe extern "C" fn C_WrapKey(
    h: CK_SESSION_HANDLE,
    m: CK_MECHANISM_PTR,
    wrapping: CK_OBJECT_HANDLE,
    key: CK_OBJECT_HANDLE,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives a CK_MECHANISM whose parameter pointer and length are valid, or null; `in_mechanism` refuses null and bounds the parameter.
        let m = unsafe { in_mechanism(m) }?;
        // SAFETY: the caller gives an output buffer of `*len` bytes (or null, to ask the length) and a writable length, as PKCS#11 requires.
        crypto::wrap_key(h, &m, wrapping, key, unsafe { OutBuf::new(out, out_len) }?)
    })
}

/// `C_UnwrapKey`.
pub unsafe extern "C" fn C_UnwrapKey(
    h: CK_SESSION_HANDLE,
    m: CK_MECHANISM_PTR,
    unwrapping: CK_OBJECT_HANDLE,
    wrapped: CK_BYTE_PTR,
    wrapped_len: CK_ULONG,
    t: CK_ATTRIBUTE_PTR,
    n: CK_ULONG,
    out: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives a CK_MECHANISM whose parameter pointer and length are valid, or null; `in_mechanism` refuses null and bounds the parameter.
        let m = unsafe { in_mechanism(m) }?;
        // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
        let wrapped = unsafe { in_bytes(wrapped, wrapped_len) }?;
        // SAFETY: the caller gives `n` CK_ATTRIBUTEs at `t` whose value pointers and lengths are valid; `in_template` bounds the count and each value.
        let t = Template::new(unsafe { in_template(t, n) }?)?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        let out = unsafe { out_struct(out) }?;
        *out = crypto::unwrap_key(h, &m, unwrapping, wrapped, &t)?;
        Ok(())
    })
}

/// `C_DeriveKey`.
pub unsafe extern "C" fn C_DeriveKey(
    h: CK_SESSION_HANDLE,
    m: CK_MECHANISM_PTR,
    base: CK_OBJECT_HANDLE,
    t: CK_ATTRIBUTE_PTR,
    n: CK_ULONG,
    out: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives a CK_MECHANISM whose parameter pointer and length are valid, or null; `in_mechanism` refuses null and bounds the parameter.
        let m = unsafe { in_mechanism(m) }?;
        // SAFETY: the caller gives `n` CK_ATTRIBUTEs at `t` whose value pointers and lengths are valid; `in_template` bounds the count and each value.
        let t = Template::new(unsafe { in_template(t, n) }?)?;
        // SAFETY: the caller gives a writable out parameter or null, as PKCS#11 requires; `out_struct` refuses null.
        let out = unsafe { out_struct(out) }?;
        *out = crypto::derive_key(h, &m, base, &t)?;
        Ok(())
    })
}

/// `C_SeedRandom`: the seed is mixed into the module's generator.
pub unsafe extern "C" fn C_SeedRandom(h: CK_SESSION_HANDLE, seed: CK_BYTE_PTR, len: CK_ULONG) -> CK_RV {
    shim(|| {
        state::session(h)?;
        // SAFETY: the caller gives that many readable bytes at that pointer (or null with 0), as PKCS#11 requires; the length is bounded first.
        general::seed_random(h, unsafe { in_bytes(seed, len) }?)
    })
}

/// `C_DigestKey`.
pub unsafe extern "C" fn C_DigestKey(h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> CK_RV {
    shim(|| {
        state::session(h)?;
        crypto::ending_on_error(h, Which::Digest, || crypto::digest_key(h, key))
    })
}

/// `C_GetFunctionStatus`: a legacy function; every call of this module runs to its end
/// (`CKR_FUNCTION_NOT_PARALLEL`).
pub unsafe extern "C" fn C_GetFunctionStatus(h: CK_SESSION_HANDLE) -> CK_RV {
    shim(|| {
        state::session(h)?;
        Err(Rv(ck::CKR_FUNCTION_NOT_PARALLEL))
    })
}

/// `C_CancelFunction`: as [`C_GetFunctionStatus`].
pub unsafe extern "C" fn C_CancelFunction(h: CK_SESSION_HANDLE) -> CK_RV {
    shim(|| {
        state::session(h)?;
        Err(Rv(ck::CKR_FUNCTION_NOT_PARALLEL))
    })
}

/// `C_GenerateRandom`.
pub unsafe extern "C" fn C_GenerateRandom(h: CK_SESSION_HANDLE, out: CK_BYTE_PTR, len: CK_ULONG) -> CK_RV {
    shim(|| {
        state::session(h)?;
        if out.is_null() {
            return Err(rv::ARGUMENTS_BAD);
        }
        let n = checked_len::<u8>(len)?;
        // The caller's buffer may be uninitialised memory, which no Rust slice may cover: the
        // bytes are made in a buffer of the module's own and copied out through the pointer.
        let mut buf = zeroize::Zeroizing::new(vec![0u8; n]);
        general::generate_random(h, &mut buf)?;
        // SAFETY: the caller gave `len` writable bytes at `out` (not null, checked above); `n`
        // passed the size bound; the module's buffer does not overlap the caller's.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), out, n) };
        Ok(())
    })
}

/// `C_LoginUser` (v3.0): the module has no user names; the name is ignored.
pub unsafe extern "C" fn C_LoginUser(
    h: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: CK_UTF8CHAR_PTR,
    len: CK_ULONG,
    _name: CK_UTF8CHAR_PTR,
    _name_len: CK_ULONG,
) -> CK_RV {
    // SAFETY: the caller's arguments go on unchanged to the entry point, which checks them.
    unsafe { C_Login(h, user, pin, len) }
}

/// Whether the library is initialised (for functions the module does not implement, which must
/// still say `CKR_CRYPTOKI_NOT_INITIALIZED` first).
fn not_supported() -> CK_RV {
    shim(|| {
        state::library()?;
        Err(rv::FUNCTION_NOT_SUPPORTED)
    })
}

/// Functions the module does not implement: each returns `CKR_FUNCTION_NOT_SUPPORTED` (after
/// `CKR_CRYPTOKI_NOT_INITIALIZED` when the library is not initialised).
pub mod unsupported {
    #![allow(missing_docs)]
    use super::*;

    macro_rules! unsupported {
        ($($name:ident($($arg:ty),*);)*) => {
            $( pub unsafe extern "C" fn $name($(_: $arg),*) -> CK_RV { not_supported() } )*
        };
    }

    unsupported! {
        C_GetOperationState(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR);
        C_SetOperationState(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE);
        C_GetObjectSize(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ULONG_PTR);
        C_SignRecoverInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
        C_SignRecover(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
        C_VerifyRecoverInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
        C_VerifyRecover(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
        C_DigestEncryptUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
        C_DecryptDigestUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
        C_SignEncryptUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
        C_DecryptVerifyUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
        C_WaitForSlotEvent(CK_FLAGS, *mut CK_SLOT_ID, *mut c_void);
        C_SessionCancel(CK_SESSION_HANDLE, CK_FLAGS);
        C_MessageEncryptInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
        C_EncryptMessage(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
        C_EncryptMessageBegin(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, CK_BYTE_PTR, CK_ULONG);
        C_EncryptMessageNext(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR, CK_FLAGS);
        C_MessageEncryptFinal(CK_SESSION_HANDLE);
        C_MessageDecryptInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
        C_DecryptMessage(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
        C_DecryptMessageBegin(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, CK_BYTE_PTR, CK_ULONG);
        C_DecryptMessageNext(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR, CK_FLAGS);
        C_MessageDecryptFinal(CK_SESSION_HANDLE);
        C_MessageSignInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
        C_SignMessage(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
        C_SignMessageBegin(CK_SESSION_HANDLE, *mut c_void, CK_ULONG);
        C_SignMessageNext(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
        C_MessageSignFinal(CK_SESSION_HANDLE);
        C_MessageVerifyInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
        C_VerifyMessage(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG);
        C_VerifyMessageBegin(CK_SESSION_HANDLE, *mut c_void, CK_ULONG);
        C_VerifyMessageNext(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG);
        C_MessageVerifyFinal(CK_SESSION_HANDLE);
    }
}
