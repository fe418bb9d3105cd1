//! Entry points for fuzzing what the module reads from outside: the `HSMKIT_CONF` file and the
//! attribute templates applications pass. The cargo-fuzz targets in `fuzz/` call these;
//! `pkcs11-module/tests/fuzz_smoke.rs` runs them over seed inputs and their mutants.

use std::ffi::c_void;
use std::sync::OnceLock;

use cryptoki_sys as ck;
use cryptoki_sys::{CK_ATTRIBUTE, CK_OBJECT_HANDLE, CK_SESSION_HANDLE, CK_ULONG};

use crate::config::ModuleConfig;
use crate::entry::*;

/// An `HSMKIT_CONF` file's text.
pub fn config(data: &[u8]) -> bool {
    ModuleConfig::parse(&String::from_utf8_lossy(data), "fuzz.conf").is_ok()
}

/// The attribute types a template is drawn from (an index past the table is taken as a raw
/// type, vendor-defined included).
const TYPES: &[ck::CK_ATTRIBUTE_TYPE] = &[
    ck::CKA_CLASS,
    ck::CKA_TOKEN,
    ck::CKA_PRIVATE,
    ck::CKA_LABEL,
    ck::CKA_APPLICATION,
    ck::CKA_VALUE,
    ck::CKA_OBJECT_ID,
    ck::CKA_CERTIFICATE_TYPE,
    ck::CKA_ISSUER,
    ck::CKA_SERIAL_NUMBER,
    ck::CKA_KEY_TYPE,
    ck::CKA_SUBJECT,
    ck::CKA_ID,
    ck::CKA_SENSITIVE,
    ck::CKA_ENCRYPT,
    ck::CKA_DECRYPT,
    ck::CKA_WRAP,
    ck::CKA_UNWRAP,
    ck::CKA_SIGN,
    ck::CKA_VERIFY,
    ck::CKA_DERIVE,
    ck::CKA_MODULUS,
    ck::CKA_MODULUS_BITS,
    ck::CKA_PUBLIC_EXPONENT,
    ck::CKA_PRIVATE_EXPONENT,
    ck::CKA_VALUE_LEN,
    ck::CKA_EXTRACTABLE,
    ck::CKA_MODIFIABLE,
    ck::CKA_COPYABLE,
    ck::CKA_DESTROYABLE,
    ck::CKA_EC_PARAMS,
    ck::CKA_EC_POINT,
    ck::CKA_ALWAYS_AUTHENTICATE,
    ck::CKA_WRAP_WITH_TRUSTED,
    ck::CKA_TRUSTED,
    ck::CKA_ALLOWED_MECHANISMS,
    ck::CKA_WRAP_TEMPLATE,
    ck::CKA_UNWRAP_TEMPLATE,
    ck::CKA_LOCAL,
    ck::CKA_NEVER_EXTRACTABLE,
    ck::CKA_ALWAYS_SENSITIVE,
    ck::CKA_PUBLIC_KEY_INFO,
];

/// The most attributes one fuzzed template holds.
const MAX_ATTRIBUTES: usize = 32;

/// Decodes a template: repeated `[type index][value length][value]` (one byte each for the index
/// and the length); a short value ends the template.
fn decode(data: &[u8]) -> Vec<(ck::CK_ATTRIBUTE_TYPE, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = data;
    while let [t, len, tail @ ..] = rest {
        let len = usize::from(*len);
        if tail.len() < len || out.len() == MAX_ATTRIBUTES {
            break;
        }
        let ty = TYPES.get(usize::from(*t)).copied().unwrap_or(0x8000_0000 | CK_ULONG::from(*t));
        out.push((ty, tail[..len].to_vec()));
        rest = &tail[len..];
    }
    out
}

/// A session of slot 0 with the user logged in, on the token `HSMKIT_CONF` names (initialised
/// here the first time; the caller points `HSMKIT_CONF` at a throwaway configuration).
fn session() -> Option<CK_SESSION_HANDLE> {
    static SESSION: OnceLock<Option<CK_SESSION_HANDLE>> = OnceLock::new();
    *SESSION.get_or_init(|| {
        let (so, user, label) = (b"fuzz-so".to_vec(), b"fuzz-user".to_vec(), [b' '; 32]);
        let mut h: CK_SESSION_HANDLE = 0;
        let flags = ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION;
        // SAFETY: every pointer is to a live local of the length passed; the calls follow the
        // PKCS#11 sequence (initialise, make the token, open, log in).
        let ok = unsafe {
            C_Initialize(std::ptr::null_mut()) == ck::CKR_OK
                && C_InitToken(0, so.as_ptr().cast_mut(), so.len() as CK_ULONG, label.as_ptr().cast_mut()) == ck::CKR_OK
                && C_OpenSession(0, flags, std::ptr::null_mut::<c_void>(), None, &mut h) == ck::CKR_OK
                && C_Login(h, ck::CKU_SO, so.as_ptr().cast_mut(), so.len() as CK_ULONG) == ck::CKR_OK
                && C_InitPIN(h, user.as_ptr().cast_mut(), user.len() as CK_ULONG) == ck::CKR_OK
                && C_Logout(h) == ck::CKR_OK
                && C_Login(h, ck::CKU_USER, user.as_ptr().cast_mut(), user.len() as CK_ULONG) == ck::CKR_OK
        };
        ok.then_some(h)
    })
}

/// An attribute template given to `C_CreateObject`, `C_GenerateKey` (AES), `C_FindObjectsInit`
/// and, for an object made, `C_GetAttributeValue` and `C_SetAttributeValue`; whatever is made
/// is destroyed again; says whether an object was made. Needs `HSMKIT_CONF` set (see
/// the private `session`); returns at once without it.
pub fn template(data: &[u8]) -> bool {
    if std::env::var_os("HSMKIT_CONF").is_none() {
        return false;
    }
    let Some(h) = session() else { return false };
    let attrs = decode(data);
    let mut t: Vec<CK_ATTRIBUTE> = attrs
        .iter()
        .map(|(ty, v)| CK_ATTRIBUTE {
            type_: *ty,
            pValue: v.as_ptr().cast_mut().cast(),
            ulValueLen: v.len() as CK_ULONG,
        })
        .collect();
    let n = t.len() as CK_ULONG;
    let mut made: Vec<CK_OBJECT_HANDLE> = Vec::new();
    let mut o: CK_OBJECT_HANDLE = 0;
    let mut mech =
        ck::CK_MECHANISM { mechanism: ck::CKM_AES_KEY_GEN, pParameter: std::ptr::null_mut(), ulParameterLen: 0 };
    // SAFETY: `t` holds `n` attributes whose value pointers and lengths point into `attrs`, which
    // outlives every call; the module writes only through `o` and the found-handle buffer.
    unsafe {
        if C_CreateObject(h, t.as_mut_ptr(), n, &mut o) == ck::CKR_OK {
            made.push(o);
        }
        if C_GenerateKey(h, &mut mech, t.as_mut_ptr(), n, &mut o) == ck::CKR_OK {
            made.push(o);
        }
        if C_FindObjectsInit(h, t.as_mut_ptr(), n) == ck::CKR_OK {
            let mut found = [0 as CK_OBJECT_HANDLE; 8];
            let mut count: CK_ULONG = 0;
            let _ = C_FindObjects(h, found.as_mut_ptr(), found.len() as CK_ULONG, &mut count);
            let _ = C_FindObjectsFinal(h);
        }
    }
    for &obj in &made {
        // Reads the same types back into buffers of the lengths given (short ones included).
        let mut bufs: Vec<Vec<u8>> = attrs.iter().map(|(_, v)| vec![0u8; v.len()]).collect();
        let mut out: Vec<CK_ATTRIBUTE> = attrs
            .iter()
            .zip(bufs.iter_mut())
            .map(|((ty, _), b)| CK_ATTRIBUTE {
                type_: *ty,
                pValue: b.as_mut_ptr().cast(),
                ulValueLen: b.len() as CK_ULONG,
            })
            .collect();
        // SAFETY: each output attribute points at a buffer of the length it states, alive for
        // the call; `t` as above.
        unsafe {
            let _ = C_GetAttributeValue(h, obj, out.as_mut_ptr(), n);
            let _ = C_SetAttributeValue(h, obj, t.as_mut_ptr(), n);
            let _ = C_DestroyObject(h, obj);
        }
    }
    !made.is_empty()
}

/// A fuzz entry point: reads arbitrary bytes, says whether they were read.
pub type Target = fn(&[u8]) -> bool;

/// Every entry point by name, for the smoke test and the fuzz script.
pub const TARGETS: &[(&str, Target)] = &[("config", config), ("template", template)];
