//! Raw calls through the module's own function list, for what the `cryptoki` wrapper hides:
//! mechanisms it has no type for (`CKM_RSA_AES_KEY_WRAP`, `CKM_AES_KEY_WRAP_KWP` are dropped from
//! its mechanism list) and `C_WrapKey` / `C_UnwrapKey` with `CK_RSA_AES_KEY_WRAP_PARAMS`.
//!
//! The library is opened a second time with `dlopen`, which returns the instance `cryptoki`
//! already loaded (same function list, same sessions), so raw calls use `cryptoki`'s session
//! handles directly.
#![allow(unsafe_code)]

use std::path::Path;
use std::ptr::null_mut;

use cryptoki::object::Attribute;
use cryptoki_sys::{
    CK_ATTRIBUTE, CK_FUNCTION_LIST, CK_MECHANISM, CK_MECHANISM_INFO, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE,
    CK_RSA_AES_KEY_WRAP_PARAMS, CK_RSA_PKCS_OAEP_PARAMS, CK_RV, CK_SESSION_HANDLE, CK_SLOT_ID, CK_ULONG,
};
use hsmkit_backend::{Error, ErrorKind, HashAlg, Op, Result};

/// The module's function list, held with the library that owns it.
pub struct Raw {
    _lib: libloading::Library,
    list: &'static CK_FUNCTION_LIST,
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Raw")
    }
}

fn check(rv: CK_RV, function: &str, op: Op) -> Result<()> {
    if rv == cryptoki_sys::CKR_OK {
        return Ok(());
    }
    let kind = ErrorKind::from_ckr(rv);
    let name = kind.ckr_name();
    Err(Error::new(kind, op).detail(format!("C_{function} returned {name}")))
}

fn missing(function: &str, op: Op) -> Error {
    Error::new(ErrorKind::Unsupported, op).detail(format!("the module's function list has no C_{function}"))
}

/// Opens the library at `path` that is already loaded. On Linux `RTLD_NOLOAD` makes this refuse
/// rather than load a second copy (a file replaced on disk since `cryptoki` opened it would
/// otherwise give an uninitialised instance with its own state).
///
/// # Safety
/// As for any `dlopen`: the library's initialisers run (they already ran when it was loaded).
unsafe fn open_loaded(path: &Path) -> std::result::Result<libloading::Library, libloading::Error> {
    #[cfg(target_os = "linux")]
    {
        /// glibc's and musl's `RTLD_NOLOAD`.
        const RTLD_NOLOAD: std::ffi::c_int = 4;
        let flags = libloading::os::unix::RTLD_NOW | RTLD_NOLOAD;
        // SAFETY: as documented.
        unsafe { libloading::os::unix::Library::open(Some(path), flags) }.map(libloading::Library::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: as documented.
        unsafe { libloading::Library::new(path) }
    }
}

impl Raw {
    /// Opens the module at `path` (already loaded by `cryptoki`) and reads its function list.
    pub fn open(path: &Path) -> Result<Raw> {
        let op = Op::Initialize;
        // SAFETY: the same library `cryptoki` loaded successfully; dlopen returns that instance.
        let lib = unsafe { open_loaded(path) }.map_err(|e| {
            Error::new(ErrorKind::ArgumentsBad, op).detail(format!("cannot open the loaded module again: {e}"))
        })?;
        let mut list: *mut CK_FUNCTION_LIST = null_mut();
        // SAFETY: C_GetFunctionList has this signature in every PKCS#11 module; the out pointer
        // is a valid local.
        let rv = unsafe {
            let get: libloading::Symbol<'_, unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> = lib
                .get(b"C_GetFunctionList")
                .map_err(|e| Error::new(ErrorKind::ArgumentsBad, op).detail(format!("no C_GetFunctionList: {e}")))?;
            get(&mut list)
        };
        check(rv, "GetFunctionList", op)?;
        // SAFETY: the module returned its function list, which lives as long as the library,
        // and `Raw` keeps the library loaded.
        let list = unsafe { list.as_ref() }
            .ok_or_else(|| Error::new(ErrorKind::Device, op).detail("C_GetFunctionList returned no list"))?;
        // SAFETY: extending the lifetime is sound because `_lib` is dropped with `list`'s only user.
        let list: &'static CK_FUNCTION_LIST = unsafe { &*(list as *const CK_FUNCTION_LIST) };
        Ok(Raw { _lib: lib, list })
    }

    /// `C_GetMechanismList`, every type the module lists.
    pub fn mechanism_list(&self, slot: CK_SLOT_ID) -> Result<Vec<CK_MECHANISM_TYPE>> {
        let op = Op::Info;
        let f = self.list.C_GetMechanismList.ok_or_else(|| missing("GetMechanismList", op))?;
        let mut n: CK_ULONG = 0;
        // SAFETY: a null list with a valid count pointer is the length query.
        check(unsafe { f(slot, null_mut(), &mut n) }, "GetMechanismList", op)?;
        let mut types = vec![0 as CK_MECHANISM_TYPE; n as usize];
        // SAFETY: room for `n` types.
        check(unsafe { f(slot, types.as_mut_ptr(), &mut n) }, "GetMechanismList", op)?;
        types.truncate(n as usize);
        Ok(types)
    }

    /// `C_GetMechanismInfo`.
    pub fn mechanism_info(&self, slot: CK_SLOT_ID, ty: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO> {
        let op = Op::Info;
        let f = self.list.C_GetMechanismInfo.ok_or_else(|| missing("GetMechanismInfo", op))?;
        let mut info = CK_MECHANISM_INFO { ulMinKeySize: 0, ulMaxKeySize: 0, flags: 0 };
        // SAFETY: a valid out structure.
        check(unsafe { f(slot, ty, &mut info) }, "GetMechanismInfo", op)?;
        Ok(info)
    }

    /// `C_WrapKey` with `CKM_RSA_AES_KEY_WRAP`: the size query, then the wrap.
    pub fn rsa_aes_wrap(
        &self,
        session: CK_SESSION_HANDLE,
        aes_bits: u16,
        hash: HashAlg,
        wrapping: CK_OBJECT_HANDLE,
        target: CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>> {
        let mut params = RsaAesParams::new(aes_bits, hash);
        let mut mech = params.mechanism();
        self.wrap(session, &mut mech, wrapping, target)
    }

    /// `C_WrapKey` with any mechanism: the size query, then the wrap, and the output cut to the
    /// length the module returns with it. (The size query may give an upper bound: NSS softokn
    /// asks room for a block or two more than it writes. `cryptoki` 0.12's `wrap_key` returns
    /// the whole buffer, trailing zeros and all, so the client wraps through here.)
    pub fn wrap(
        &self,
        session: CK_SESSION_HANDLE,
        mech: &mut CK_MECHANISM,
        wrapping: CK_OBJECT_HANDLE,
        target: CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>> {
        let op = Op::WrapKey;
        let f = self.list.C_WrapKey.ok_or_else(|| missing("WrapKey", op))?;
        let mech: *mut CK_MECHANISM = mech;
        let mut len: CK_ULONG = 0;
        // SAFETY: the mechanism and its parameters outlive the call; a null output asks the length.
        check(unsafe { f(session, mech, wrapping, target, null_mut(), &mut len) }, "WrapKey", op)?;
        // A wrapped key is at most a large RSA key's PKCS#8 and a few blocks: a module asking for
        // more is not believed (CK_UNAVAILABLE_INFORMATION would be a buffer of all memory).
        const MOST: CK_ULONG = 1 << 16;
        if len > MOST {
            return Err(Error::new(ErrorKind::GeneralError, op)
                .detail(format!("the module asks {len} bytes of room for a wrapped key (at most {MOST} are given)")));
        }
        let room = len;
        let mut out = vec![0u8; len as usize];
        // SAFETY: room for `len` bytes.
        check(unsafe { f(session, mech, wrapping, target, out.as_mut_ptr(), &mut len) }, "WrapKey", op)?;
        if len > room {
            return Err(Error::new(ErrorKind::GeneralError, op)
                .detail(format!("the module wrote {len} bytes into room for the {room} it asked")));
        }
        out.truncate(len as usize);
        Ok(out)
    }

    /// `C_EncryptInit` + `C_Encrypt` (or the decryption pair) with AES-CTR or AES-GCM, whose
    /// parameters `cryptoki` has no type for (CTR) or borrows mutably (GCM): the size query, then
    /// the call.
    pub fn aes_crypt(
        &self,
        session: CK_SESSION_HANDLE,
        mech: &hsmkit_backend::Mechanism,
        key: CK_OBJECT_HANDLE,
        input: &[u8],
        encrypt: bool,
    ) -> Result<Vec<u8>> {
        use hsmkit_backend::Mechanism as M;
        let op = if encrypt { Op::Encrypt } else { Op::Decrypt };
        let (name, init, call) = if encrypt {
            ("Encrypt", self.list.C_EncryptInit, self.list.C_Encrypt)
        } else {
            ("Decrypt", self.list.C_DecryptInit, self.list.C_Decrypt)
        };
        let init = init.ok_or_else(|| missing(name, op))?;
        let call = call.ok_or_else(|| missing(name, op))?;
        let mut ctr;
        let mut gcm;
        let (mut iv, mut aad);
        let mut ck_mech = match mech {
            M::AesCtr { counter, counter_bits } => {
                ctr = cryptoki_sys::CK_AES_CTR_PARAMS { ulCounterBits: CK_ULONG::from(*counter_bits), cb: *counter };
                CK_MECHANISM {
                    mechanism: cryptoki_sys::CKM_AES_CTR,
                    pParameter: &mut ctr as *mut _ as *mut std::ffi::c_void,
                    ulParameterLen: size_of::<cryptoki_sys::CK_AES_CTR_PARAMS>() as CK_ULONG,
                }
            }
            M::AesGcm { iv: v, aad: a, tag_bits } => {
                iv = v.clone();
                aad = a.clone();
                gcm = cryptoki_sys::CK_GCM_PARAMS {
                    pIv: iv.as_mut_ptr(),
                    ulIvLen: iv.len() as CK_ULONG,
                    ulIvBits: (iv.len() * 8) as CK_ULONG,
                    pAAD: aad.as_mut_ptr(),
                    ulAADLen: aad.len() as CK_ULONG,
                    ulTagBits: CK_ULONG::from(*tag_bits),
                };
                CK_MECHANISM {
                    mechanism: cryptoki_sys::CKM_AES_GCM,
                    pParameter: &mut gcm as *mut _ as *mut std::ffi::c_void,
                    ulParameterLen: size_of::<cryptoki_sys::CK_GCM_PARAMS>() as CK_ULONG,
                }
            }
            other => {
                return Err(Error::new(ErrorKind::MechanismInvalid, op)
                    .detail(format!("{} is not an AES mode with parameters", other.describe())));
            }
        };
        // SAFETY: the mechanism and the parameters it points to (`ctr` or `gcm`, `iv`, `aad`) live
        // until the end of this function; the module reads them during the calls.
        check(unsafe { init(session, &mut ck_mech, key) }, name, op)?;
        let mut len: CK_ULONG = 0;
        let data = input.as_ptr() as *mut u8;
        // SAFETY: a null output buffer asks the length; the input is `input.len()` readable bytes.
        check(unsafe { call(session, data, input.len() as CK_ULONG, null_mut(), &mut len) }, name, op)?;
        // These modes add at most a block or a tag: a module claiming more is not believed.
        if len as usize > input.len() + 32 {
            return Err(Error::new(ErrorKind::GeneralError, op)
                .detail(format!("the module asks {len} bytes of output for {} bytes of input", input.len())));
        }
        let mut out = vec![0u8; len as usize];
        // SAFETY: room for `len` bytes.
        check(unsafe { call(session, data, input.len() as CK_ULONG, out.as_mut_ptr(), &mut len) }, name, op)?;
        out.truncate(len as usize);
        Ok(out)
    }

    /// `C_UnwrapKey` with `CKM_RSA_AES_KEY_WRAP`.
    pub fn rsa_aes_unwrap(
        &self,
        session: CK_SESSION_HANDLE,
        aes_bits: u16,
        hash: HashAlg,
        unwrapping: CK_OBJECT_HANDLE,
        wrapped: &[u8],
        template: &[Attribute],
    ) -> Result<CK_OBJECT_HANDLE> {
        let mut params = RsaAesParams::new(aes_bits, hash);
        let mut mech = params.mechanism();
        self.unwrap(session, &mut mech, unwrapping, wrapped, template)
    }

    /// `C_UnwrapKey` with any mechanism (for those `cryptoki` has no type for).
    pub fn unwrap(
        &self,
        session: CK_SESSION_HANDLE,
        mech: &mut CK_MECHANISM,
        unwrapping: CK_OBJECT_HANDLE,
        wrapped: &[u8],
        template: &[Attribute],
    ) -> Result<CK_OBJECT_HANDLE> {
        let op = Op::UnwrapKey;
        let f = self.list.C_UnwrapKey.ok_or_else(|| missing("UnwrapKey", op))?;
        let mech: *mut CK_MECHANISM = mech;
        let mut raw: Vec<CK_ATTRIBUTE> = template.iter().map(CK_ATTRIBUTE::from).collect();
        let mut h: CK_OBJECT_HANDLE = 0;
        // SAFETY: every pointer (mechanism, wrapped bytes, template values owned by `template`)
        // outlives the call; the module only reads them.
        let rv = unsafe {
            f(
                session,
                mech,
                unwrapping,
                wrapped.as_ptr() as *mut u8,
                wrapped.len() as CK_ULONG,
                raw.as_mut_ptr(),
                raw.len() as CK_ULONG,
                &mut h,
            )
        };
        check(rv, "UnwrapKey", op)?;
        Ok(h)
    }
}

/// `CK_RSA_AES_KEY_WRAP_PARAMS` with its OAEP parameters (MGF1 with the same hash, no label).
struct RsaAesParams {
    oaep: Box<CK_RSA_PKCS_OAEP_PARAMS>,
    wrap: CK_RSA_AES_KEY_WRAP_PARAMS,
}

impl RsaAesParams {
    fn new(aes_bits: u16, hash: HashAlg) -> Self {
        let mgf = match hash {
            HashAlg::Sha1 => cryptoki_sys::CKG_MGF1_SHA1,
            HashAlg::Sha224 => cryptoki_sys::CKG_MGF1_SHA224,
            HashAlg::Sha256 => cryptoki_sys::CKG_MGF1_SHA256,
            HashAlg::Sha384 => cryptoki_sys::CKG_MGF1_SHA384,
            HashAlg::Sha512 => cryptoki_sys::CKG_MGF1_SHA512,
        };
        let mut oaep = Box::new(CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: hash.ckm(),
            mgf,
            source: cryptoki_sys::CKZ_DATA_SPECIFIED,
            pSourceData: null_mut(),
            ulSourceDataLen: 0,
        });
        let wrap = CK_RSA_AES_KEY_WRAP_PARAMS { ulAESKeyBits: CK_ULONG::from(aes_bits), pOAEPParams: &mut *oaep };
        RsaAesParams { oaep, wrap }
    }

    fn mechanism(&mut self) -> CK_MECHANISM {
        self.wrap.pOAEPParams = &mut *self.oaep;
        CK_MECHANISM {
            mechanism: cryptoki_sys::CKM_RSA_AES_KEY_WRAP,
            pParameter: &mut self.wrap as *mut CK_RSA_AES_KEY_WRAP_PARAMS as *mut std::ffi::c_void,
            ulParameterLen: size_of::<CK_RSA_AES_KEY_WRAP_PARAMS>() as CK_ULONG,
        }
    }
}
