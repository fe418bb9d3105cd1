//! The C boundary: return codes, the shim every entry point goes through, and the only code that
//! reads or writes the caller's memory.
//!
//! Every pointer the caller passes is checked for null here and turned into a Rust reference or
//! slice before any logic sees it. The shim catches panics, so none crosses the C boundary.
#![allow(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use cryptoki_sys as ck;
use cryptoki_sys::{CK_RV, CK_ULONG};

/// A PKCS#11 return code other than `CKR_OK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rv(pub CK_RV);

/// The result of an inner function.
pub type Result<T> = std::result::Result<T, Rv>;

impl From<hsmkit_backend::Error> for Rv {
    fn from(e: hsmkit_backend::Error) -> Rv {
        Rv(e.kind().ckr())
    }
}

/// Shorthands for the codes the module returns by name.
pub mod rv {
    use super::Rv;
    use cryptoki_sys as ck;

    /// `CKR_ARGUMENTS_BAD`.
    pub const ARGUMENTS_BAD: Rv = Rv(ck::CKR_ARGUMENTS_BAD);
    /// `CKR_BUFFER_TOO_SMALL`.
    pub const BUFFER_TOO_SMALL: Rv = Rv(ck::CKR_BUFFER_TOO_SMALL);
    /// `CKR_CRYPTOKI_NOT_INITIALIZED`.
    pub const NOT_INITIALIZED: Rv = Rv(ck::CKR_CRYPTOKI_NOT_INITIALIZED);
    /// `CKR_FUNCTION_NOT_SUPPORTED`.
    pub const FUNCTION_NOT_SUPPORTED: Rv = Rv(ck::CKR_FUNCTION_NOT_SUPPORTED);
    /// `CKR_GENERAL_ERROR`.
    pub const GENERAL_ERROR: Rv = Rv(ck::CKR_GENERAL_ERROR);
    /// `CKR_SESSION_HANDLE_INVALID`.
    pub const SESSION_HANDLE_INVALID: Rv = Rv(ck::CKR_SESSION_HANDLE_INVALID);
    /// `CKR_SLOT_ID_INVALID`.
    pub const SLOT_ID_INVALID: Rv = Rv(ck::CKR_SLOT_ID_INVALID);
    /// `CKR_OBJECT_HANDLE_INVALID`.
    pub const OBJECT_HANDLE_INVALID: Rv = Rv(ck::CKR_OBJECT_HANDLE_INVALID);
    /// `CKR_OPERATION_ACTIVE`.
    pub const OPERATION_ACTIVE: Rv = Rv(ck::CKR_OPERATION_ACTIVE);
    /// `CKR_OPERATION_NOT_INITIALIZED`.
    pub const OPERATION_NOT_INITIALIZED: Rv = Rv(ck::CKR_OPERATION_NOT_INITIALIZED);
    /// `CKR_MECHANISM_INVALID`.
    pub const MECHANISM_INVALID: Rv = Rv(ck::CKR_MECHANISM_INVALID);
    /// `CKR_MECHANISM_PARAM_INVALID`.
    pub const MECHANISM_PARAM_INVALID: Rv = Rv(ck::CKR_MECHANISM_PARAM_INVALID);
    /// `CKR_TEMPLATE_INCOMPLETE`.
    pub const TEMPLATE_INCOMPLETE: Rv = Rv(ck::CKR_TEMPLATE_INCOMPLETE);
    /// `CKR_TEMPLATE_INCONSISTENT`.
    pub const TEMPLATE_INCONSISTENT: Rv = Rv(ck::CKR_TEMPLATE_INCONSISTENT);
    /// `CKR_ATTRIBUTE_VALUE_INVALID`.
    pub const ATTRIBUTE_VALUE_INVALID: Rv = Rv(ck::CKR_ATTRIBUTE_VALUE_INVALID);
    /// `CKR_ATTRIBUTE_TYPE_INVALID`.
    pub const ATTRIBUTE_TYPE_INVALID: Rv = Rv(ck::CKR_ATTRIBUTE_TYPE_INVALID);
    /// `CKR_ATTRIBUTE_READ_ONLY`.
    pub const ATTRIBUTE_READ_ONLY: Rv = Rv(ck::CKR_ATTRIBUTE_READ_ONLY);
    /// `CKR_ACTION_PROHIBITED`.
    pub const ACTION_PROHIBITED: Rv = Rv(ck::CKR_ACTION_PROHIBITED);
    /// `CKR_USER_NOT_LOGGED_IN`.
    pub const USER_NOT_LOGGED_IN: Rv = Rv(ck::CKR_USER_NOT_LOGGED_IN);
    /// `CKR_SESSION_READ_ONLY`.
    pub const SESSION_READ_ONLY: Rv = Rv(ck::CKR_SESSION_READ_ONLY);
    /// `CKR_DATA_LEN_RANGE`.
    pub const DATA_LEN_RANGE: Rv = Rv(ck::CKR_DATA_LEN_RANGE);
    /// `CKR_KEY_TYPE_INCONSISTENT`.
    pub const KEY_TYPE_INCONSISTENT: Rv = Rv(ck::CKR_KEY_TYPE_INCONSISTENT);
    /// `CKR_KEY_HANDLE_INVALID`.
    pub const KEY_HANDLE_INVALID: Rv = Rv(ck::CKR_KEY_HANDLE_INVALID);
    /// `CKR_PIN_INCORRECT`.
    pub const PIN_INCORRECT: Rv = Rv(ck::CKR_PIN_INCORRECT);
    /// `CKR_PIN_LEN_RANGE`.
    pub const PIN_LEN_RANGE: Rv = Rv(ck::CKR_PIN_LEN_RANGE);
}

/// Runs an entry point's inner function: `Ok` becomes `CKR_OK`, an error its code, a panic
/// `CKR_GENERAL_ERROR`.
pub fn shim(f: impl FnOnce() -> Result<()>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => ck::CKR_OK,
        Ok(Err(Rv(code))) => code,
        Err(_) => ck::CKR_GENERAL_ERROR,
    }
}

/// A caller's output structure (`CK_INFO *`, `CK_SESSION_INFO *`, …): null is `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// A non-null `p` must point to a writable `T`, as the PKCS#11 function's contract says.
pub unsafe fn out_struct<'a, T>(p: *mut T) -> Result<&'a mut T> {
    // SAFETY: non-null checked; validity is the caller's contract.
    unsafe { p.as_mut() }.ok_or(rv::ARGUMENTS_BAD)
}

/// A caller's input structure: null is `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// A non-null `p` must point to a readable `T`.
pub unsafe fn in_struct<'a, T>(p: *const T) -> Result<&'a T> {
    // SAFETY: as above.
    unsafe { p.as_ref() }.ok_or(rv::ARGUMENTS_BAD)
}

/// The most bytes one call takes as input (data to digest, sign, encrypt or unwrap): 256 MiB. A
/// claimed length above it is refused before anything is read, copied or allocated, so a garbage
/// length costs nothing.
pub const MAX_INPUT: usize = 256 << 20;
/// The most attributes one template may hold.
pub const MAX_TEMPLATE: usize = 4096;
/// The longest attribute value accepted (a certificate fits many times over): 1 MiB.
pub const MAX_ATTRIBUTE: usize = 1 << 20;
/// The longest mechanism parameter, and OAEP label: 64 KiB.
pub const MAX_PARAMETER: usize = 64 << 10;

/// A caller's input bytes: null with a length is `CKR_ARGUMENTS_BAD`; null with length 0 is empty;
/// more than [`MAX_INPUT`] bytes is `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// A non-null `p` must point to `len` readable bytes.
pub unsafe fn in_bytes<'a, T>(p: *const T, len: CK_ULONG) -> Result<&'a [T]> {
    // SAFETY: as documented.
    unsafe { in_bytes_at_most(p, len, MAX_INPUT, rv::ARGUMENTS_BAD) }
}

/// [`in_bytes`] with a bound of `max` bytes, answered with `too_long` above it.
///
/// # Safety
/// As for [`in_bytes`].
pub unsafe fn in_bytes_at_most<'a, T>(p: *const T, len: CK_ULONG, max: usize, too_long: Rv) -> Result<&'a [T]> {
    if p.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(rv::ARGUMENTS_BAD) };
    }
    let len = checked_len::<T>(len)?;
    if len.saturating_mul(size_of::<T>()) > max {
        return Err(too_long);
    }
    // SAFETY: non-null; the caller promises `len` elements, and `len` passed the size bound.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A caller's element count as `usize`, refused (`CKR_ARGUMENTS_BAD`) when no real buffer could
/// hold it (more than `isize::MAX` bytes), so a garbage length never reaches `from_raw_parts`.
pub fn checked_len<T>(len: CK_ULONG) -> Result<usize> {
    let len = usize::try_from(len).map_err(|_| rv::ARGUMENTS_BAD)?;
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(rv::ARGUMENTS_BAD);
    }
    Ok(len)
}

/// Copies a caller's input bytes, so that no Rust reference to caller memory is alive while the
/// module writes the caller's output (PKCS#11 lets the two buffers be the same memory).
///
/// # Safety
/// As for [`in_bytes`].
pub unsafe fn in_bytes_owned(p: *const u8, len: CK_ULONG) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    // SAFETY: as documented.
    Ok(zeroize::Zeroizing::new(unsafe { in_bytes(p, len) }?.to_vec()))
}

/// An output buffer with the size-query protocol of PKCS#11 section 5.2.
pub struct OutBuf<'a> {
    buf: *mut u8,
    len: &'a mut CK_ULONG,
}

/// What writing to an [`OutBuf`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrote {
    /// The buffer pointer was null: only the length was returned; an operation stays active.
    LengthOnly,
    /// The bytes were copied; a single-part operation ends.
    Copied,
}

impl<'a> OutBuf<'a> {
    /// The caller's `(pBuf, pulBufLen)` pair; `pulBufLen` must not be null.
    ///
    /// # Safety
    /// `len` must be null or point to a writable `CK_ULONG`; a non-null `buf` must point to at
    /// least `*len` writable bytes.
    pub unsafe fn new(buf: *mut u8, len: *mut CK_ULONG) -> Result<OutBuf<'a>> {
        // SAFETY: as documented.
        let len = unsafe { len.as_mut() }.ok_or(rv::ARGUMENTS_BAD)?;
        Ok(OutBuf { buf, len })
    }

    /// The space the caller says it has (meaningless for a length query).
    pub fn is_query(&self) -> bool {
        self.buf.is_null()
    }

    /// Returns `bytes` to the caller: the length alone for a null buffer, `CKR_BUFFER_TOO_SMALL`
    /// (with the length needed) for a short one, else a copy.
    pub fn put(self, bytes: &[u8]) -> Result<Wrote> {
        let need = bytes.len() as CK_ULONG;
        if self.buf.is_null() {
            *self.len = need;
            return Ok(Wrote::LengthOnly);
        }
        if *self.len < need {
            *self.len = need;
            return Err(rv::BUFFER_TOO_SMALL);
        }
        // SAFETY: the caller promised `*len` writable bytes at `buf`, and `need <= *len`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.buf, bytes.len()) };
        *self.len = need;
        Ok(Wrote::Copied)
    }
}

/// A `CK_ULONG` array output with the size-query protocol (slot and mechanism lists, handles).
///
/// # Safety
/// As for [`OutBuf::new`], counted in elements.
pub unsafe fn put_list<T: Copy>(buf: *mut T, count: *mut CK_ULONG, items: &[T]) -> Result<()> {
    // SAFETY: as documented.
    let count = unsafe { count.as_mut() }.ok_or(rv::ARGUMENTS_BAD)?;
    let need = items.len() as CK_ULONG;
    if buf.is_null() {
        *count = need;
        return Ok(());
    }
    if *count < need {
        *count = need;
        return Err(rv::BUFFER_TOO_SMALL);
    }
    // SAFETY: room for `*count >= need` elements.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), buf, items.len()) };
    *count = need;
    Ok(())
}

/// One attribute of a caller's template, read. Its value may be key material: `Debug` shows its
/// type and length only.
#[derive(Clone, Copy)]
pub struct InAttr<'a> {
    /// `CKA_*`.
    pub kind: ck::CK_ATTRIBUTE_TYPE,
    /// The value's bytes.
    pub value: &'a [u8],
}

impl std::fmt::Debug for InAttr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InAttr(0x{:x}, {} bytes)", self.kind, self.value.len())
    }
}

/// Reads a caller's template.
///
/// # Safety
/// A non-null `p` must point to `count` attributes whose non-null values point to `ulValueLen` bytes.
pub unsafe fn in_template<'a>(p: *const ck::CK_ATTRIBUTE, count: CK_ULONG) -> Result<Vec<InAttr<'a>>> {
    if usize::try_from(count).map_or(true, |n| n > MAX_TEMPLATE) {
        return Err(rv::ARGUMENTS_BAD);
    }
    // SAFETY: as documented; the count is bounded.
    let attrs = unsafe { in_bytes(p, count) }?;
    attrs
        .iter()
        .map(|a| {
            // SAFETY: the attribute's own pointer and length, as documented.
            let value = unsafe {
                in_bytes_at_most(a.pValue as *const u8, a.ulValueLen, MAX_ATTRIBUTE, rv::ATTRIBUTE_VALUE_INVALID)
            }?;
            Ok(InAttr { kind: a.type_, value })
        })
        .collect()
}

/// What to answer for one attribute of `C_GetAttributeValue`. A value may be key material: it is
/// zeroized when dropped and `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub enum Answer {
    /// The value.
    Value(zeroize::Zeroizing<Vec<u8>>),
    /// Sensitive or unextractable (`CKR_ATTRIBUTE_SENSITIVE`).
    Sensitive,
    /// Not an attribute of this object (`CKR_ATTRIBUTE_TYPE_INVALID`).
    Invalid,
}

impl Answer {
    /// A value.
    pub fn value(v: Vec<u8>) -> Answer {
        Answer::Value(zeroize::Zeroizing::new(v))
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Value(v) => write!(f, "Value({} bytes)", v.len()),
            Answer::Sensitive => f.write_str("Sensitive"),
            Answer::Invalid => f.write_str("Invalid"),
        }
    }
}

/// Fills a caller's `C_GetAttributeValue` template per section 5.7: each attribute answered on its
/// own; the call's code is that of the last failing attribute kind, with the spec's precedence.
///
/// # Safety
/// `p` must point to `count` writable attributes whose non-null values have `ulValueLen` bytes.
pub unsafe fn answer_template(
    p: *mut ck::CK_ATTRIBUTE,
    count: CK_ULONG,
    mut answer: impl FnMut(ck::CK_ATTRIBUTE_TYPE) -> Answer,
) -> Result<()> {
    if p.is_null() {
        return Err(rv::ARGUMENTS_BAD);
    }
    let n = checked_len::<ck::CK_ATTRIBUTE>(count)?;
    if n > MAX_TEMPLATE {
        return Err(rv::ARGUMENTS_BAD);
    }
    // SAFETY: as documented; `n` passed the size bound.
    let attrs = unsafe { std::slice::from_raw_parts_mut(p, n) };
    let mut result = Ok(());
    for a in attrs {
        match answer(a.type_) {
            Answer::Value(v) => {
                if a.pValue.is_null() {
                    a.ulValueLen = v.len() as CK_ULONG;
                } else if a.ulValueLen < v.len() as CK_ULONG {
                    a.ulValueLen = ck::CK_UNAVAILABLE_INFORMATION;
                    result = Err(rv::BUFFER_TOO_SMALL);
                } else {
                    // SAFETY: the caller gave `ulValueLen >= v.len()` bytes at `pValue`.
                    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), a.pValue as *mut u8, v.len()) };
                    a.ulValueLen = v.len() as CK_ULONG;
                }
            }
            Answer::Sensitive => {
                a.ulValueLen = ck::CK_UNAVAILABLE_INFORMATION;
                result = Err(Rv(ck::CKR_ATTRIBUTE_SENSITIVE));
            }
            Answer::Invalid => {
                a.ulValueLen = ck::CK_UNAVAILABLE_INFORMATION;
                result = Err(rv::ATTRIBUTE_TYPE_INVALID);
            }
        }
    }
    result
}

/// Copies `s` into a blank-padded fixed field (`CK_INFO.manufacturerID`, token label, …).
pub fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [b' '; N];
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&s.as_bytes()[..end]);
    out
}

/// Reads a structure parameter of exactly `size_of::<T>()` bytes (`CKR_MECHANISM_PARAM_INVALID`
/// otherwise).
///
/// # Safety
/// A non-null `p` must point to `len` readable bytes.
unsafe fn param_struct<T: Copy>(p: *const std::ffi::c_void, len: CK_ULONG) -> Result<T> {
    if p.is_null() || len as usize != size_of::<T>() {
        return Err(rv::MECHANISM_PARAM_INVALID);
    }
    // SAFETY: `len` bytes are readable and `len` is the size of `T`; the read is unaligned-safe.
    Ok(unsafe { std::ptr::read_unaligned(p as *const T) })
}

/// Reads OAEP parameters, with their label.
///
/// # Safety
/// The parameters' `pSourceData` must point to `ulSourceDataLen` readable bytes.
unsafe fn oaep_in(p: &ck::CK_RSA_PKCS_OAEP_PARAMS) -> Result<crate::ops::OaepIn> {
    // SAFETY: as documented.
    let label = unsafe {
        in_bytes_at_most(p.pSourceData as *const u8, p.ulSourceDataLen, MAX_PARAMETER, rv::MECHANISM_PARAM_INVALID)
    }
    .map_err(|_| rv::MECHANISM_PARAM_INVALID)?;
    Ok(crate::ops::OaepIn { hash: p.hashAlg, mgf: p.mgf, source: p.source, label: label.to_vec() })
}

/// Bytes a parameter points to, bounded; a bad pointer or length is
/// `CKR_MECHANISM_PARAM_INVALID`.
///
/// # Safety
/// `p` points to `len` readable bytes, or is null with `len` 0.
unsafe fn param_bytes(p: *const u8, len: CK_ULONG) -> Result<Vec<u8>> {
    // SAFETY: as documented.
    let b = unsafe { in_bytes_at_most(p, len, MAX_PARAMETER, rv::MECHANISM_PARAM_INVALID) }
        .map_err(|_| rv::MECHANISM_PARAM_INVALID)?;
    Ok(b.to_vec())
}

fn param_err(why: &str) -> Rv {
    crate::log(why);
    rv::MECHANISM_PARAM_INVALID
}

/// The hash a KDF's hash or HMAC mechanism names.
fn kdf_hash(ckm: CK_ULONG) -> Option<hsmkit_backend::HashAlg> {
    use hsmkit_backend::HashAlg;
    match ckm {
        ck::CKM_SHA_1 | ck::CKM_SHA_1_HMAC => Some(HashAlg::Sha1),
        ck::CKM_SHA224 | ck::CKM_SHA224_HMAC => Some(HashAlg::Sha224),
        ck::CKM_SHA256 | ck::CKM_SHA256_HMAC => Some(HashAlg::Sha256),
        ck::CKM_SHA384 | ck::CKM_SHA384_HMAC => Some(HashAlg::Sha384),
        ck::CKM_SHA512 | ck::CKM_SHA512_HMAC => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// The seam's mechanism for a derivation mechanism's parameter structure.
///
/// # Safety
/// `ptr` points to `len` readable bytes holding the mechanism's parameter structure, whose own
/// pointers are valid for the lengths beside them, as PKCS#11 requires.
unsafe fn derive_param(ty: CK_ULONG, ptr: *const std::ffi::c_void, len: CK_ULONG) -> Result<hsmkit_backend::Mechanism> {
    use hsmkit_backend::{HashAlg, KdfParam, KdfPrf, Mechanism};
    Ok(match ty {
        ck::CKM_ECDH1_DERIVE => {
            // SAFETY: as documented.
            let p: ck::CK_ECDH1_DERIVE_PARAMS = unsafe { param_struct(ptr, len) }?;
            let kdf = match p.kdf {
                ck::CKD_NULL => None,
                ck::CKD_SHA1_KDF => Some(HashAlg::Sha1),
                ck::CKD_SHA224_KDF => Some(HashAlg::Sha224),
                ck::CKD_SHA256_KDF => Some(HashAlg::Sha256),
                ck::CKD_SHA384_KDF => Some(HashAlg::Sha384),
                ck::CKD_SHA512_KDF => Some(HashAlg::Sha512),
                other => {
                    return Err(param_err(&format!("ECDH's KDF 0x{other:x} is not offered (CKD_NULL, CKD_SHA*_KDF)")));
                }
            };
            // SAFETY: the shared and public data the parameters point to, as documented.
            let shared_data = unsafe { param_bytes(p.pSharedData, p.ulSharedDataLen) }?;
            // SAFETY: as above.
            let public = unsafe { param_bytes(p.pPublicData, p.ulPublicDataLen) }?;
            Mechanism::Ecdh1Derive { kdf, shared_data, public }
        }
        ck::CKM_HKDF_DERIVE => {
            // SAFETY: as documented.
            let p: ck::CK_HKDF_PARAMS = unsafe { param_struct(ptr, len) }?;
            let hash = kdf_hash(p.prfHashMechanism)
                .ok_or_else(|| param_err("HKDF's hash is SHA-1, SHA-256, SHA-384 or SHA-512"))?;
            let salt = match p.ulSaltType {
                ck::CKF_HKDF_SALT_NULL => Vec::new(),
                // SAFETY: the salt the parameters point to, as documented.
                ck::CKF_HKDF_SALT_DATA => unsafe { param_bytes(p.pSalt, p.ulSaltLen) }?,
                _ => return Err(param_err("HKDF takes its salt as data (CKF_HKDF_SALT_DATA) or none, not a key")),
            };
            // SAFETY: the info the parameters point to, as documented.
            let info = unsafe { param_bytes(p.pInfo, p.ulInfoLen) }?;
            Mechanism::HkdfDerive { hash, extract: p.bExtract != 0, expand: p.bExpand != 0, salt, info }
        }
        ck::CKM_SP800_108_COUNTER_KDF => {
            // SAFETY: as documented.
            let p: ck::CK_SP800_108_KDF_PARAMS = unsafe { param_struct(ptr, len) }?;
            let prf =
                match p.prfType {
                    ck::CKM_AES_CMAC => KdfPrf::AesCmac,
                    other => KdfPrf::Hmac(kdf_hash(other).ok_or_else(|| {
                        param_err("the SP 800-108 KDF's PRF is HMAC with SHA-1 or SHA-2, or AES-CMAC")
                    })?),
                };
            if p.ulAdditionalDerivedKeys != 0 {
                return Err(param_err("the SP 800-108 KDF derives one key here (no additional derived keys)"));
            }
            if p.ulNumberOfDataParams > 64 {
                return Err(param_err("more than 64 SP 800-108 data parameters"));
            }
            // SAFETY: the data parameter array the parameters point to, as documented; bounded.
            let list = unsafe { in_bytes(p.pDataParams as *const ck::CK_PRF_DATA_PARAM, p.ulNumberOfDataParams) }
                .map_err(|_| rv::MECHANISM_PARAM_INVALID)?;
            let mut params = Vec::new();
            for d in list {
                params.push(match d.type_ {
                    ck::CK_SP800_108_ITERATION_VARIABLE => {
                        // SAFETY: the counter format this element points to, as documented.
                        let f: ck::CK_SP800_108_COUNTER_FORMAT = unsafe { param_struct(d.pValue, d.ulValueLen) }?;
                        let bits = u8::try_from(f.ulWidthInBits).map_err(|_| param_err("a counter over 255 bits"))?;
                        KdfParam::Counter { little_endian: f.bLittleEndian != 0, bits }
                    }
                    ck::CK_SP800_108_DKM_LENGTH => {
                        // SAFETY: the length format this element points to, as documented.
                        let f: ck::CK_SP800_108_DKM_LENGTH_FORMAT = unsafe { param_struct(d.pValue, d.ulValueLen) }?;
                        if f.dkmLengthMethod != ck::CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS {
                            return Err(param_err(
                                "the KDF's length is the sum of the keys' (CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS)",
                            ));
                        }
                        let bits = u8::try_from(f.ulWidthInBits).map_err(|_| param_err("a length over 255 bits"))?;
                        KdfParam::DkmLength { little_endian: f.bLittleEndian != 0, bits }
                    }
                    ck::CK_SP800_108_BYTE_ARRAY => {
                        // SAFETY: the bytes this element points to, as documented.
                        KdfParam::Bytes(unsafe { param_bytes(d.pValue as *const u8, d.ulValueLen) }?)
                    }
                    other => {
                        return Err(param_err(&format!(
                            "SP 800-108 data parameter type {other} is not one counter mode takes"
                        )));
                    }
                });
            }
            Mechanism::Sp800108Counter { prf, params }
        }
        _ => {
            // SAFETY: as documented.
            let p: ck::CK_AES_CBC_ENCRYPT_DATA_PARAMS = unsafe { param_struct(ptr, len) }?;
            // SAFETY: the data the parameters point to, as documented.
            let data = unsafe { param_bytes(p.pData, p.length) }?;
            Mechanism::AesCbcEncryptData { iv: p.iv, data }
        }
    })
}

/// Reads a caller's `CK_MECHANISM` and, for the mechanisms the module knows, its parameter.
///
/// # Safety
/// `p` must be null or point to a `CK_MECHANISM` whose parameter pointer and length are valid.
pub unsafe fn in_mechanism(p: *const ck::CK_MECHANISM) -> Result<crate::ops::MechIn> {
    use crate::ops::{MechIn, Param};
    // SAFETY: as documented.
    let m = unsafe { in_struct(p) }?;
    let (ptr, len) = (m.pParameter as *const std::ffi::c_void, m.ulParameterLen);
    let param = match m.mechanism {
        _ if ptr.is_null() && len == 0 => Param::None,
        ck::CKM_RSA_PKCS_OAEP => {
            // SAFETY: as documented.
            let o: ck::CK_RSA_PKCS_OAEP_PARAMS = unsafe { param_struct(ptr, len) }?;
            // SAFETY: the pointers come from the caller, who keeps them valid for the call, as PKCS#11 requires.
            Param::Oaep(unsafe { oaep_in(&o) }?)
        }
        ck::CKM_RSA_PKCS_PSS
        | ck::CKM_SHA1_RSA_PKCS_PSS
        | ck::CKM_SHA256_RSA_PKCS_PSS
        | ck::CKM_SHA384_RSA_PKCS_PSS
        | ck::CKM_SHA512_RSA_PKCS_PSS => {
            // SAFETY: as documented.
            let s: ck::CK_RSA_PKCS_PSS_PARAMS = unsafe { param_struct(ptr, len) }?;
            Param::Pss(s.hashAlg, s.mgf, s.sLen)
        }
        ck::CKM_AES_CTR => {
            // SAFETY: as documented.
            let c: ck::CK_AES_CTR_PARAMS = unsafe { param_struct(ptr, len) }?;
            Param::Ctr(c.ulCounterBits, c.cb)
        }
        ck::CKM_AES_GCM => {
            // SAFETY: as documented.
            let g: ck::CK_GCM_PARAMS = unsafe { param_struct(ptr, len) }?;
            // SAFETY: the IV and AAD the parameters point to, as documented; bounded.
            let iv =
                unsafe { in_bytes_at_most(g.pIv as *const u8, g.ulIvLen, MAX_PARAMETER, rv::MECHANISM_PARAM_INVALID) }
                    .map_err(|_| rv::MECHANISM_PARAM_INVALID)?;
            // SAFETY: as above.
            let aad = unsafe {
                in_bytes_at_most(g.pAAD as *const u8, g.ulAADLen, MAX_PARAMETER, rv::MECHANISM_PARAM_INVALID)
            }
            .map_err(|_| rv::MECHANISM_PARAM_INVALID)?;
            Param::Gcm(iv.to_vec(), aad.to_vec(), g.ulTagBits)
        }
        ck::CKM_ECDH1_DERIVE | ck::CKM_HKDF_DERIVE | ck::CKM_SP800_108_COUNTER_KDF | ck::CKM_AES_CBC_ENCRYPT_DATA => {
            // SAFETY: as documented.
            Param::Ready(unsafe { derive_param(m.mechanism, ptr, len) }?)
        }
        ck::CKM_EDDSA => {
            // SAFETY: as documented.
            let e: ck::CK_EDDSA_PARAMS = unsafe { param_struct(ptr, len) }?;
            // SAFETY: the context data the parameters point to, as documented; bounded.
            let context = unsafe {
                in_bytes_at_most(
                    e.pContextData as *const u8,
                    e.ulContextDataLen,
                    MAX_PARAMETER,
                    rv::MECHANISM_PARAM_INVALID,
                )
            }
            .map_err(|_| rv::MECHANISM_PARAM_INVALID)?;
            Param::Eddsa(e.phFlag != 0, context.to_vec())
        }
        ck::CKM_RSA_AES_KEY_WRAP => {
            // SAFETY: as documented.
            let w: ck::CK_RSA_AES_KEY_WRAP_PARAMS = unsafe { param_struct(ptr, len) }?;
            // SAFETY: the OAEP parameters the wrap parameters point to, as documented; read
            // unaligned, like the outer structure.
            let o: ck::CK_RSA_PKCS_OAEP_PARAMS = unsafe {
                param_struct(
                    w.pOAEPParams as *const std::ffi::c_void,
                    size_of::<ck::CK_RSA_PKCS_OAEP_PARAMS>() as CK_ULONG,
                )
            }?;
            // SAFETY: the pointers come from the caller, who keeps them valid for the call, as PKCS#11 requires.
            Param::RsaAes(w.ulAESKeyBits, unsafe { oaep_in(&o) }?)
        }
        _ => {
            // SAFETY: as documented.
            let bytes = unsafe { in_bytes_at_most(ptr as *const u8, len, MAX_PARAMETER, rv::MECHANISM_PARAM_INVALID) }
                .map_err(|_| rv::MECHANISM_PARAM_INVALID)?;
            Param::Bytes(bytes.to_vec())
        }
    };
    Ok(MechIn { ty: m.mechanism, param })
}
