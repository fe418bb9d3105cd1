//! Raw ABI tests: `libhsmkit_pkcs11.so` loaded with `dlopen` and called through its function
//! list with `cryptoki-sys` types, the way a C application calls it. Each check asserts the
//! specification's return codes for calls made in the wrong order, with null or bad arguments,
//! with short buffers, and after errors; results are checked with RustCrypto, not the module.
#![allow(unsafe_code, clippy::missing_safety_doc)]

mod common;

use std::ffi::c_void;
use std::process::ExitCode;
use std::ptr::null_mut;

use cryptoki_sys::*;
use rsa::BoxedUint;
use sha2::Digest as _;

struct P11 {
    _lib: libloading::Library,
    f: &'static CK_FUNCTION_LIST,
}

macro_rules! call {
    ($p:expr, $f:ident ( $($a:expr),* $(,)? )) => {
        unsafe { ($p.f.$f.expect(stringify!($f)))($($a),*) }
    };
}

fn load() -> P11 {
    // SAFETY: loading the module built by this package; its initialisers are Rust statics.
    let lib = unsafe { libloading::Library::new(common::module_path()) }.expect("dlopen libhsmkit_pkcs11.so");
    let mut list: *mut CK_FUNCTION_LIST = null_mut();
    // SAFETY: the exported symbol has the C_GetFunctionList signature.
    let rv = unsafe {
        let get: libloading::Symbol<'_, unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
            lib.get(b"C_GetFunctionList").expect("C_GetFunctionList");
        get(&mut list)
    };
    assert_eq!(rv, CKR_OK);
    // SAFETY: the list is a static of the library, which `P11` keeps loaded.
    let f = unsafe { &*list };
    P11 { _lib: lib, f }
}

fn b(v: bool) -> CK_BBOOL {
    CK_BBOOL::from(v)
}

fn attr<T>(ty: CK_ATTRIBUTE_TYPE, v: &T) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE { type_: ty, pValue: v as *const T as *mut c_void, ulValueLen: size_of::<T>() as CK_ULONG }
}

fn bytes_attr(ty: CK_ATTRIBUTE_TYPE, v: &[u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE { type_: ty, pValue: v.as_ptr() as *mut c_void, ulValueLen: v.len() as CK_ULONG }
}

fn mech(ty: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM { mechanism: ty, pParameter: null_mut(), ulParameterLen: 0 }
}

impl P11 {
    fn init(&self) {
        assert_eq!(call!(self, C_Initialize(null_mut())), CKR_OK);
    }

    fn fin(&self) {
        assert_eq!(call!(self, C_Finalize(null_mut())), CKR_OK);
    }

    fn open(&self, rw: bool) -> CK_SESSION_HANDLE {
        let mut h = 0;
        let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
        assert_eq!(call!(self, C_OpenSession(0, flags, null_mut(), None, &mut h)), CKR_OK);
        h
    }

    fn login(&self, h: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &str) -> CK_RV {
        call!(self, C_Login(h, user, pin.as_ptr() as *mut u8, pin.len() as CK_ULONG))
    }

    fn state(&self, h: CK_SESSION_HANDLE) -> CK_STATE {
        let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
        assert_eq!(call!(self, C_GetSessionInfo(h, &mut info)), CKR_OK);
        info.state
    }

    /// `C_GenerateKeyPair` (RSA) with these templates: (public, private), or the return code.
    fn pair_with(
        &self,
        h: CK_SESSION_HANDLE,
        public: &[CK_ATTRIBUTE],
        private: &[CK_ATTRIBUTE],
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), CK_RV> {
        let (mut pubh, mut privh) = (0, 0);
        let mut m = mech(CKM_RSA_PKCS_KEY_PAIR_GEN);
        let rv = call!(
            self,
            C_GenerateKeyPair(
                h,
                &mut m,
                public.as_ptr() as *mut _,
                public.len() as CK_ULONG,
                private.as_ptr() as *mut _,
                private.len() as CK_ULONG,
                &mut pubh,
                &mut privh
            )
        );
        if rv == CKR_OK { Ok((pubh, privh)) } else { Err(rv) }
    }

    /// An RSA-2048 pair (sign/verify, decrypt/encrypt), session objects. (public, private)
    fn rsa_pair(&self, h: CK_SESSION_HANDLE) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
        let bits: CK_ULONG = 2048;
        let yes = b(true);
        let public = [attr(CKA_MODULUS_BITS, &bits), attr(CKA_VERIFY, &yes), attr(CKA_ENCRYPT, &yes)];
        let private = [attr(CKA_SIGN, &yes), attr(CKA_DECRYPT, &yes)];
        self.pair_with(h, &public, &private).expect("C_GenerateKeyPair")
    }

    fn get(&self, h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE, ty: CK_ATTRIBUTE_TYPE) -> (CK_RV, Vec<u8>) {
        let mut buf = vec![0u8; 1024];
        let mut a = [CK_ATTRIBUTE { type_: ty, pValue: buf.as_mut_ptr() as *mut c_void, ulValueLen: 1024 }];
        let rv = call!(self, C_GetAttributeValue(h, o, a.as_mut_ptr(), 1));
        if a[0].ulValueLen <= 1024 {
            buf.truncate(a[0].ulValueLen as usize);
        }
        (rv, buf)
    }

    fn public_key(&self, h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> rsa::PublicKey {
        let n = self.get(h, o, CKA_MODULUS).1;
        let e = self.get(h, o, CKA_PUBLIC_EXPONENT).1;
        rsa::PublicKey::new(BoxedUint::from_be_slice_vartime(&n), BoxedUint::from_be_slice_vartime(&e))
            .expect("RSA key")
    }
}

fn check_rv(what: &str, got: CK_RV, want: CK_RV) {
    assert_eq!(got, want, "{what}: got 0x{got:x}, want 0x{want:x}");
}

fn before_initialize(p: &P11) {
    let mut info: CK_INFO = unsafe { std::mem::zeroed() };
    check_rv("C_GetInfo", call!(p, C_GetInfo(&mut info)), CKR_CRYPTOKI_NOT_INITIALIZED);
    let mut n: CK_ULONG = 0;
    check_rv("C_GetSlotList", call!(p, C_GetSlotList(0, null_mut(), &mut n)), CKR_CRYPTOKI_NOT_INITIALIZED);
    let mut h = 0;
    let rv = call!(p, C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, &mut h));
    check_rv("C_OpenSession", rv, CKR_CRYPTOKI_NOT_INITIALIZED);
    check_rv("C_CloseSession", call!(p, C_CloseSession(1)), CKR_CRYPTOKI_NOT_INITIALIZED);
    check_rv("C_DigestKey", call!(p, C_DigestKey(1, 1)), CKR_CRYPTOKI_NOT_INITIALIZED);
    check_rv("C_Finalize", call!(p, C_Finalize(null_mut())), CKR_CRYPTOKI_NOT_INITIALIZED);
}

fn initialize_arguments(p: &P11) {
    p.init();
    check_rv("second C_Initialize", call!(p, C_Initialize(null_mut())), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    let mut x = 0u8;
    check_rv("C_Finalize(non-null)", call!(p, C_Finalize(&mut x as *mut u8 as *mut c_void)), CKR_ARGUMENTS_BAD);
    p.fin();
    unsafe extern "C" fn create(_: *mut *mut c_void) -> CK_RV {
        CKR_OK
    }
    unsafe extern "C" fn other(_: *mut c_void) -> CK_RV {
        CKR_OK
    }
    let try_init = |reserved: *mut c_void, all: bool, some: bool, flags: CK_FLAGS| {
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: if some || all { Some(create) } else { None },
            DestroyMutex: if all { Some(other) } else { None },
            LockMutex: if all { Some(other) } else { None },
            UnlockMutex: if all { Some(other) } else { None },
            flags,
            pReserved: reserved,
        };
        call!(p, C_Initialize(&mut args as *mut CK_C_INITIALIZE_ARGS as *mut c_void))
    };
    let reserved = &mut x as *mut u8 as *mut c_void;
    check_rv("pReserved set", try_init(reserved, false, false, CKF_OS_LOCKING_OK), CKR_ARGUMENTS_BAD);
    check_rv("some mutex functions", try_init(null_mut(), false, true, CKF_OS_LOCKING_OK), CKR_ARGUMENTS_BAD);
    check_rv("caller's mutexes only", try_init(null_mut(), true, true, 0), CKR_CANT_LOCK);
    check_rv("caller's mutexes or OS locking", try_init(null_mut(), true, true, CKF_OS_LOCKING_OK), CKR_OK);
    p.fin();
    check_rv("C_Finalize twice", call!(p, C_Finalize(null_mut())), CKR_CRYPTOKI_NOT_INITIALIZED);
}

fn null_arguments(p: &P11) {
    p.init();
    check_rv("C_GetInfo(NULL)", call!(p, C_GetInfo(null_mut())), CKR_ARGUMENTS_BAD);
    check_rv("C_GetFunctionList(NULL)", call!(p, C_GetFunctionList(null_mut())), CKR_ARGUMENTS_BAD);
    check_rv("C_GetSlotList(NULL count)", call!(p, C_GetSlotList(0, null_mut(), null_mut())), CKR_ARGUMENTS_BAD);
    check_rv("C_GetSlotInfo(NULL)", call!(p, C_GetSlotInfo(0, null_mut())), CKR_ARGUMENTS_BAD);
    check_rv("C_GetTokenInfo(NULL)", call!(p, C_GetTokenInfo(0, null_mut())), CKR_ARGUMENTS_BAD);
    check_rv("C_GetMechanismList(NULL)", call!(p, C_GetMechanismList(0, null_mut(), null_mut())), CKR_ARGUMENTS_BAD);
    check_rv(
        "C_GetMechanismInfo(NULL)",
        call!(p, C_GetMechanismInfo(0, CKM_AES_KEY_WRAP, null_mut())),
        CKR_ARGUMENTS_BAD,
    );
    let rv = call!(p, C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, null_mut()));
    check_rv("C_OpenSession(NULL)", rv, CKR_ARGUMENTS_BAD);
    let h = p.open(true);
    check_rv("C_GetSessionInfo(NULL)", call!(p, C_GetSessionInfo(h, null_mut())), CKR_ARGUMENTS_BAD);
    check_rv("C_Login(NULL PIN)", call!(p, C_Login(h, CKU_USER, null_mut(), 4)), CKR_ARGUMENTS_BAD);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    check_rv("C_FindObjectsInit(NULL, 1)", call!(p, C_FindObjectsInit(h, null_mut(), 1)), CKR_ARGUMENTS_BAD);
    check_rv("C_FindObjectsInit(NULL, 0)", call!(p, C_FindObjectsInit(h, null_mut(), 0)), CKR_OK);
    let mut n: CK_ULONG = 0;
    check_rv("C_FindObjects(NULL)", call!(p, C_FindObjects(h, null_mut(), 1, &mut n)), CKR_ARGUMENTS_BAD);
    let mut o = 0;
    check_rv("C_FindObjects(NULL count)", call!(p, C_FindObjects(h, &mut o, 1, null_mut())), CKR_ARGUMENTS_BAD);
    assert_eq!(call!(p, C_FindObjectsFinal(h)), CKR_OK);
    check_rv("C_SignInit(NULL)", call!(p, C_SignInit(h, null_mut(), 1)), CKR_ARGUMENTS_BAD);
    check_rv("C_GenerateRandom(NULL)", call!(p, C_GenerateRandom(h, null_mut(), 4)), CKR_ARGUMENTS_BAD);
    check_rv("C_GetAttributeValue(NULL)", call!(p, C_GetAttributeValue(h, 1, null_mut(), 1)), CKR_ARGUMENTS_BAD);
    let (pubh, privh) = p.rsa_pair(h);
    let mut m = mech(CKM_SHA256_RSA_PKCS);
    assert_eq!(call!(p, C_SignInit(h, &mut m, privh)), CKR_OK);
    let data = *b"abc";
    let rv = call!(p, C_Sign(h, data.as_ptr() as *mut u8, 3, null_mut(), null_mut()));
    check_rv("C_Sign(NULL length)", rv, CKR_ARGUMENTS_BAD);
    check_rv("C_Sign(NULL data, length 3)", call!(p, C_Sign(h, null_mut(), 3, null_mut(), &mut n)), CKR_ARGUMENTS_BAD);
    let mut wrapped = [0u8; 512];
    let mut len = 512;
    let rv = call!(p, C_WrapKey(h, null_mut(), pubh, privh, wrapped.as_mut_ptr(), &mut len));
    check_rv("C_WrapKey(NULL mechanism)", rv, CKR_ARGUMENTS_BAD);
    let rv = call!(p, C_GenerateKeyPair(h, null_mut(), null_mut(), 0, null_mut(), 0, null_mut(), null_mut()));
    check_rv("C_GenerateKeyPair(NULL)", rv, CKR_ARGUMENTS_BAD);
    p.fin();
}

fn bad_handles(p: &P11) {
    p.init();
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    check_rv("unknown session", call!(p, C_GetSessionInfo(999_999, &mut info)), CKR_SESSION_HANDLE_INVALID);
    let mut si: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
    check_rv("unknown slot", call!(p, C_GetSlotInfo(77, &mut si)), CKR_SLOT_ID_INVALID);
    let mut mi: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
    check_rv("unknown mechanism", call!(p, C_GetMechanismInfo(0, CKM_MD5, &mut mi)), CKR_MECHANISM_INVALID);
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    let mut m = mech(CKM_SHA256_RSA_PKCS);
    check_rv("unknown key", call!(p, C_SignInit(h, &mut m, 424_242)), CKR_KEY_HANDLE_INVALID);
    check_rv("unknown object", p.get(h, 424_242, CKA_CLASS).0, CKR_OBJECT_HANDLE_INVALID);
    // Session objects belong to the application: every session of it may use them, until the
    // session that made them closes (PKCS#11 §4.4).
    let other = p.open(true);
    let (_, privh) = p.rsa_pair(other);
    assert_eq!(call!(p, C_SignInit(h, &mut m, privh)), CKR_OK, "another session's session key");
    let mut sig = [0u8; 256];
    let mut len: CK_ULONG = 256;
    assert_eq!(call!(p, C_Sign(h, b"x".as_ptr() as *mut u8, 1, sig.as_mut_ptr(), &mut len)), CKR_OK);
    assert_eq!(call!(p, C_CloseSession(other)), CKR_OK);
    check_rv("closed session", call!(p, C_CloseSession(other)), CKR_SESSION_HANDLE_INVALID);
    check_rv("key of a closed session", call!(p, C_SignInit(h, &mut m, privh)), CKR_KEY_HANDLE_INVALID);
    // Garbage lengths are refused, never used to size a slice.
    let mut byte = 0u8;
    check_rv("huge random length", call!(p, C_GenerateRandom(h, &mut byte, CK_ULONG::MAX)), CKR_ARGUMENTS_BAD);
    let one = attr(CKA_TOKEN, &byte);
    check_rv(
        "huge template count",
        call!(p, C_FindObjectsInit(h, &one as *const _ as *mut _, CK_ULONG::MAX)),
        CKR_ARGUMENTS_BAD,
    );
    // Sessions of a finalized library are gone, and stay gone after a new C_Initialize.
    p.fin();
    p.init();
    check_rv("session of a finalized library", call!(p, C_GetSessionInfo(h, &mut info)), CKR_SESSION_HANDLE_INVALID);
    let fresh = p.open(false);
    assert_ne!(fresh, h, "session handles are not reused across C_Initialize");
    check_rv("old session after reopen", call!(p, C_GetSessionInfo(h, &mut info)), CKR_SESSION_HANDLE_INVALID);
    p.fin();
}

fn short_buffers(p: &P11) {
    p.init();
    // Lists: a zero-length buffer says how long it must be.
    let mut n: CK_ULONG = 0;
    let mut slots = [0 as CK_SLOT_ID; 4];
    check_rv("slot list, no room", call!(p, C_GetSlotList(0, slots.as_mut_ptr(), &mut n)), CKR_BUFFER_TOO_SMALL);
    assert_eq!(n, 2);
    assert_eq!(call!(p, C_GetSlotList(0, slots.as_mut_ptr(), &mut n)), CKR_OK);
    assert_eq!(&slots[..2], &[0, 7], "the slots of the configuration, in its order");
    let mut count: CK_ULONG = 0;
    assert_eq!(call!(p, C_GetMechanismList(0, null_mut(), &mut count)), CKR_OK);
    let mut mechs = vec![0 as CK_MECHANISM_TYPE; count as usize];
    let mut short = 2;
    check_rv(
        "mechanism list, short",
        call!(p, C_GetMechanismList(0, mechs.as_mut_ptr(), &mut short)),
        CKR_BUFFER_TOO_SMALL,
    );
    assert_eq!(short, count);
    assert_eq!(call!(p, C_GetMechanismList(0, mechs.as_mut_ptr(), &mut count)), CKR_OK);
    assert!(mechs.contains(&CKM_RSA_AES_KEY_WRAP) && mechs.contains(&CKM_AES_KEY_WRAP_KWP));

    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    let (pubh, privh) = p.rsa_pair(h);
    // C_Sign: length query, short buffer, right buffer; the operation lives until the copy.
    let data = b"the size-query protocol".to_vec();
    let mut m = mech(CKM_SHA256_RSA_PKCS);
    assert_eq!(call!(p, C_SignInit(h, &mut m, privh)), CKR_OK);
    let mut len: CK_ULONG = 0;
    assert_eq!(call!(p, C_Sign(h, data.as_ptr() as *mut u8, data.len() as CK_ULONG, null_mut(), &mut len)), CKR_OK);
    assert_eq!(len, 256);
    let mut sig = vec![0u8; 256];
    let mut small: CK_ULONG = 10;
    let rv = call!(p, C_Sign(h, data.as_ptr() as *mut u8, data.len() as CK_ULONG, sig.as_mut_ptr(), &mut small));
    check_rv("C_Sign, short buffer", rv, CKR_BUFFER_TOO_SMALL);
    assert_eq!(small, 256);
    let rv = call!(p, C_Sign(h, data.as_ptr() as *mut u8, data.len() as CK_ULONG, sig.as_mut_ptr(), &mut len));
    assert_eq!(rv, CKR_OK);
    let rv = call!(p, C_Sign(h, data.as_ptr() as *mut u8, data.len() as CK_ULONG, sig.as_mut_ptr(), &mut len));
    check_rv("C_Sign after the signature was handed out", rv, CKR_OPERATION_NOT_INITIALIZED);
    // RustCrypto verifies the signature the module made.
    use rsa::signature::Verifier as _;
    let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(p.public_key(h, pubh));
    let parsed = rsa::pkcs1v15::Signature::try_from(&sig[..]).expect("signature");
    vk.verify(&data, &parsed).expect("the module's signature verifies with RustCrypto");

    // C_DigestFinal: short, then right; the digest matches RustCrypto's.
    let mut m = mech(CKM_SHA384);
    assert_eq!(call!(p, C_DigestInit(h, &mut m)), CKR_OK);
    assert_eq!(call!(p, C_DigestUpdate(h, data.as_ptr() as *mut u8, 5)), CKR_OK);
    assert_eq!(call!(p, C_DigestUpdate(h, data[5..].as_ptr() as *mut u8, (data.len() - 5) as CK_ULONG)), CKR_OK);
    let mut out = [0u8; 64];
    let mut olen: CK_ULONG = 8;
    check_rv("C_DigestFinal, short", call!(p, C_DigestFinal(h, out.as_mut_ptr(), &mut olen)), CKR_BUFFER_TOO_SMALL);
    assert_eq!(olen, 48);
    assert_eq!(call!(p, C_DigestFinal(h, out.as_mut_ptr(), &mut olen)), CKR_OK);
    assert_eq!(&out[..48], &sha2::Sha384::digest(&data)[..]);

    // C_GetAttributeValue: length first, then a short buffer marks the attribute unavailable.
    let mut a = [CK_ATTRIBUTE { type_: CKA_MODULUS, pValue: null_mut(), ulValueLen: 0 }];
    assert_eq!(call!(p, C_GetAttributeValue(h, pubh, a.as_mut_ptr(), 1)), CKR_OK);
    assert_eq!(a[0].ulValueLen, 256);
    let mut buf = [0u8; 8];
    a[0].pValue = buf.as_mut_ptr() as *mut c_void;
    a[0].ulValueLen = 8;
    check_rv("attribute, short", call!(p, C_GetAttributeValue(h, pubh, a.as_mut_ptr(), 1)), CKR_BUFFER_TOO_SMALL);
    assert_eq!(a[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);

    // C_WrapKey: length query, then the wrap; RustCrypto's AES-KWP unwraps it.
    let kek_bytes: Vec<u8> = (1..=32).collect();
    let kek = aes_key(p, h, &kek_bytes, false, true);
    let target_bytes: Vec<u8> = (40..56).collect();
    let target = aes_key(p, h, &target_bytes, true, false);
    let mut m = mech(CKM_AES_KEY_WRAP_KWP);
    let mut wlen: CK_ULONG = 0;
    assert_eq!(call!(p, C_WrapKey(h, &mut m, kek, target, null_mut(), &mut wlen)), CKR_OK);
    assert_eq!(wlen, 24);
    let mut wrapped = vec![0u8; wlen as usize];
    let mut tiny: CK_ULONG = 4;
    check_rv(
        "wrap, short",
        call!(p, C_WrapKey(h, &mut m, kek, target, wrapped.as_mut_ptr(), &mut tiny)),
        CKR_BUFFER_TOO_SMALL,
    );
    assert_eq!(call!(p, C_WrapKey(h, &mut m, kek, target, wrapped.as_mut_ptr(), &mut wlen)), CKR_OK);
    let kw = <aes_kw::KwpAes256 as aes_kw::KeyInit>::new_from_slice(&kek_bytes).expect("32 bytes");
    let mut plain = [0u8; 24];
    let unwrapped = kw.unwrap_key(&wrapped, &mut plain).expect("RustCrypto unwraps the module's KWP");
    assert_eq!(unwrapped, &target_bytes[..]);
    p.fin();
}

/// Imports an AES key with a known value.
fn aes_key(p: &P11, h: CK_SESSION_HANDLE, value: &[u8], extractable: bool, wrap: bool) -> CK_OBJECT_HANDLE {
    let class: CK_OBJECT_CLASS = CKO_SECRET_KEY;
    let kt: CK_KEY_TYPE = CKK_AES;
    let (x, w, s) = (b(extractable), b(wrap), b(!extractable));
    let t = [
        attr(CKA_CLASS, &class),
        attr(CKA_KEY_TYPE, &kt),
        bytes_attr(CKA_VALUE, value),
        attr(CKA_EXTRACTABLE, &x),
        attr(CKA_SENSITIVE, &s),
        attr(CKA_WRAP, &w),
        attr(CKA_UNWRAP, &w),
    ];
    let mut o = 0;
    assert_eq!(call!(p, C_CreateObject(h, t.as_ptr() as *mut _, t.len() as CK_ULONG, &mut o)), CKR_OK);
    o
}

fn operation_state(p: &P11) {
    p.init();
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    let (pubh, privh) = p.rsa_pair(h);
    let data = *b"operation state";
    let mut sig = [0u8; 256];
    let mut len: CK_ULONG = 256;
    let dp = data.as_ptr() as *mut u8;
    // A failed C_SignInit starts nothing.
    let mut bad = mech(CKM_MD5_RSA_PKCS);
    check_rv("unsupported mechanism", call!(p, C_SignInit(h, &mut bad, privh)), CKR_MECHANISM_INVALID);
    check_rv(
        "sign without init",
        call!(p, C_Sign(h, dp, 15, sig.as_mut_ptr(), &mut len)),
        CKR_OPERATION_NOT_INITIALIZED,
    );
    let mut m = mech(CKM_SHA256_RSA_PKCS);
    check_rv("wrong key class", call!(p, C_SignInit(h, &mut m, pubh)), CKR_KEY_TYPE_INCONSISTENT);
    assert_eq!(call!(p, C_SignInit(h, &mut m, privh)), CKR_OK);
    check_rv("second C_SignInit", call!(p, C_SignInit(h, &mut m, privh)), CKR_OPERATION_ACTIVE);
    // Multi-part signing matches single-part (PKCS #1 v1.5 is deterministic).
    assert_eq!(call!(p, C_SignUpdate(h, dp, 5)), CKR_OK);
    assert_eq!(call!(p, C_SignUpdate(h, data[5..].as_ptr() as *mut u8, 10)), CKR_OK);
    let mut multi = [0u8; 256];
    let mut mlen: CK_ULONG = 256;
    assert_eq!(call!(p, C_SignFinal(h, multi.as_mut_ptr(), &mut mlen)), CKR_OK);
    assert_eq!(call!(p, C_SignInit(h, &mut m, privh)), CKR_OK);
    assert_eq!(call!(p, C_Sign(h, dp, 15, sig.as_mut_ptr(), &mut len)), CKR_OK);
    assert_eq!(sig, multi, "multi-part and single-part signatures agree");
    // An argument error ends the operation too.
    assert_eq!(call!(p, C_SignInit(h, &mut m, privh)), CKR_OK);
    check_rv(
        "C_Sign with no length pointer",
        call!(p, C_Sign(h, dp, 15, sig.as_mut_ptr(), null_mut())),
        CKR_ARGUMENTS_BAD,
    );
    assert_eq!(call!(p, C_SignInit(h, &mut m, privh)), CKR_OK, "the failed call ended the operation");
    // C_SignFinal straight after C_SignInit signs the empty message; C_DigestFinal likewise.
    let mut empty_sig = [0u8; 256];
    let mut elen: CK_ULONG = 256;
    assert_eq!(call!(p, C_SignFinal(h, empty_sig.as_mut_ptr(), &mut elen)), CKR_OK);
    {
        use rsa::signature::Verifier as _;
        let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(p.public_key(h, pubh));
        let parsed = rsa::pkcs1v15::Signature::try_from(&empty_sig[..]).expect("signature");
        vk.verify(b"", &parsed).expect("the empty message's signature verifies with RustCrypto");
    }
    let mut d = mech(CKM_SHA256);
    assert_eq!(call!(p, C_DigestInit(h, &mut d)), CKR_OK);
    let mut digest = [0u8; 32];
    let mut dlen: CK_ULONG = 32;
    assert_eq!(call!(p, C_DigestFinal(h, digest.as_mut_ptr(), &mut dlen)), CKR_OK);
    assert_eq!(&digest[..], &sha2::Sha256::digest(b"")[..]);
    // A failed verification ends the operation.
    assert_eq!(call!(p, C_VerifyInit(h, &mut m, pubh)), CKR_OK);
    sig[0] ^= 1;
    let rv = call!(p, C_Verify(h, dp, 15, sig.as_mut_ptr(), 256));
    check_rv("damaged signature", rv, CKR_SIGNATURE_INVALID);
    check_rv(
        "verify after failure",
        call!(p, C_Verify(h, dp, 15, sig.as_mut_ptr(), 256)),
        CKR_OPERATION_NOT_INITIALIZED,
    );
    sig[0] ^= 1;
    assert_eq!(call!(p, C_VerifyInit(h, &mut m, pubh)), CKR_OK);
    assert_eq!(call!(p, C_VerifyUpdate(h, dp, 15)), CKR_OK);
    assert_eq!(call!(p, C_VerifyFinal(h, sig.as_mut_ptr(), 256)), CKR_OK);
    // A failed decryption ends the operation, and says nothing about why.
    let mut params = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: null_mut(),
        ulSourceDataLen: 0,
    };
    let mut oaep = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: &mut params as *mut _ as *mut c_void,
        ulParameterLen: size_of::<CK_RSA_PKCS_OAEP_PARAMS>() as CK_ULONG,
    };
    assert_eq!(call!(p, C_DecryptInit(h, &mut oaep, privh)), CKR_OK);
    let mut junk = [7u8; 256];
    let mut out = [0u8; 256];
    let mut olen: CK_ULONG = 256;
    let rv = call!(p, C_Decrypt(h, junk.as_mut_ptr(), 256, out.as_mut_ptr(), &mut olen));
    check_rv("undecryptable", rv, CKR_ENCRYPTED_DATA_INVALID);
    let rv = call!(p, C_Decrypt(h, junk.as_mut_ptr(), 256, out.as_mut_ptr(), &mut olen));
    check_rv("decrypt after failure", rv, CKR_OPERATION_NOT_INITIALIZED);
    // In-place encryption and decryption (the same buffer for input and output), which the
    // specification allows.
    let mut buf = [0u8; 256];
    buf[..11].copy_from_slice(b"in one room");
    let mut blen: CK_ULONG = 256;
    oaep.ulParameterLen = size_of::<CK_RSA_PKCS_OAEP_PARAMS>() as CK_ULONG;
    assert_eq!(call!(p, C_EncryptInit(h, &mut oaep, pubh)), CKR_OK);
    assert_eq!(call!(p, C_Encrypt(h, buf.as_mut_ptr(), 11, buf.as_mut_ptr(), &mut blen)), CKR_OK);
    assert_eq!(blen, 256);
    assert_eq!(call!(p, C_DecryptInit(h, &mut oaep, privh)), CKR_OK);
    assert_eq!(call!(p, C_Decrypt(h, buf.as_mut_ptr(), 256, buf.as_mut_ptr(), &mut blen)), CKR_OK);
    assert_eq!(&buf[..blen as usize], b"in one room");
    // A mismatched OAEP parameter length is the caller's mistake.
    oaep.ulParameterLen = 3;
    check_rv("short OAEP parameters", call!(p, C_DecryptInit(h, &mut oaep, privh)), CKR_MECHANISM_PARAM_INVALID);
    p.fin();
}

fn login_state_machine(p: &P11) {
    p.init();
    let ro = p.open(false);
    assert_eq!(p.state(ro), CKS_RO_PUBLIC_SESSION);
    check_rv("SO with a read-only session open", p.login(ro, CKU_SO, common::SO_PIN), CKR_SESSION_READ_ONLY_EXISTS);
    check_rv("wrong user PIN", p.login(ro, CKU_USER, "0000"), CKR_PIN_INCORRECT);
    check_rv("bad user type", p.login(ro, 7, common::USER_PIN), CKR_USER_TYPE_INVALID);
    check_rv("logout, nobody in", call!(p, C_Logout(ro)), CKR_USER_NOT_LOGGED_IN);
    // Private objects are not visible before the user logs in.
    let rw = p.open(true);
    assert_eq!(p.login(rw, CKU_USER, common::USER_PIN), CKR_OK);
    assert_eq!(p.state(ro), CKS_RO_USER_FUNCTIONS, "login is per token: every session sees it");
    assert_eq!(p.state(rw), CKS_RW_USER_FUNCTIONS);
    check_rv("user twice", p.login(rw, CKU_USER, common::USER_PIN), CKR_USER_ALREADY_LOGGED_IN);
    check_rv("SO while user", p.login(rw, CKU_SO, common::SO_PIN), CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
    let (pubh, privh) = p.rsa_pair(rw);
    assert_eq!(call!(p, C_Logout(rw)), CKR_OK);
    assert_eq!(p.state(rw), CKS_RW_PUBLIC_SESSION);
    let mut m = mech(CKM_SHA256_RSA_PKCS);
    check_rv("private key after logout", call!(p, C_SignInit(rw, &mut m, privh)), CKR_USER_NOT_LOGGED_IN);
    check_rv("private object hidden", p.get(rw, privh, CKA_CLASS).0, CKR_OBJECT_HANDLE_INVALID);
    assert_eq!(p.get(rw, pubh, CKA_CLASS).0, CKR_OK, "public objects stay visible");
    // Closing every session ends the login.
    assert_eq!(p.login(rw, CKU_USER, common::USER_PIN), CKR_OK);
    assert_eq!(call!(p, C_CloseAllSessions(0)), CKR_OK);
    let again = p.open(true);
    assert_eq!(p.state(again), CKS_RW_PUBLIC_SESSION);
    // The SO (the world's Administrator card) logs in on read-write sessions only.
    assert_eq!(p.login(again, CKU_SO, common::SO_PIN), CKR_OK);
    assert_eq!(p.state(again), CKS_RW_SO_FUNCTIONS);
    let mut h = 0;
    let rv = call!(p, C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, &mut h));
    check_rv("read-only session while SO", rv, CKR_SESSION_READ_WRITE_SO_EXISTS);
    let rv = call!(p, C_OpenSession(0, CKF_RW_SESSION, null_mut(), None, &mut h));
    check_rv("not serial", rv, CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    assert_eq!(call!(p, C_Logout(again)), CKR_OK);
    p.fin();
}

/// Wrong PINs tried from many threads at once are each counted: the PIN locks, and only the
/// security officer unlocks it.
fn parallel_wrong_pins(p: &P11) {
    p.init();
    let sessions: Vec<CK_SESSION_HANDLE> = (0..12).map(|_| p.open(false)).collect();
    let codes: Vec<CK_RV> = std::thread::scope(|scope| {
        let threads: Vec<_> =
            sessions.iter().map(|h| scope.spawn(move || p.login(*h, CKU_USER, "wrong-pin"))).collect();
        threads.into_iter().map(|t| t.join().expect("thread")).collect()
    });
    // Exactly ten guesses were checked; the rest found the PIN locked.
    assert_eq!(codes.iter().filter(|c| **c == CKR_PIN_INCORRECT).count(), 10, "{codes:x?}");
    assert_eq!(codes.iter().filter(|c| **c == CKR_PIN_LOCKED).count(), 2, "{codes:x?}");
    check_rv("the right PIN after ten wrong ones", p.login(sessions[0], CKU_USER, common::USER_PIN), CKR_PIN_LOCKED);
    let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(call!(p, C_GetTokenInfo(0, &mut info)), CKR_OK);
    assert!(info.flags & CKF_USER_PIN_LOCKED != 0);
    assert_eq!(call!(p, C_CloseAllSessions(0)), CKR_OK);
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_SO, common::SO_PIN), CKR_OK);
    let pin = common::USER_PIN;
    assert_eq!(call!(p, C_InitPIN(h, pin.as_ptr() as *mut u8, pin.len() as CK_ULONG)), CKR_OK);
    assert_eq!(call!(p, C_Logout(h)), CKR_OK);
    assert_eq!(p.login(h, CKU_USER, pin), CKR_OK, "C_InitPIN unlocks");
    p.fin();
}

/// The public half of a pair is a public object, but it shares its blob with the private key:
/// changing it needs the user, and a copy of it is a public key only.
fn public_half(p: &P11) {
    p.init();
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    let (pubh, privh) = p.rsa_pair(h);
    let private_label = p.get(h, privh, CKA_LABEL).1;
    assert_eq!(call!(p, C_Logout(h)), CKR_OK);
    // The public key is an object of its own: renamed (a public object, no login needed), the
    // private key keeps its name.
    let label = b"renamed";
    let t = [bytes_attr(CKA_LABEL, label)];
    check_rv(
        "renaming the public key without the user",
        call!(p, C_SetAttributeValue(h, pubh, t.as_ptr() as *mut _, 1)),
        CKR_OK,
    );
    assert_eq!(p.get(h, pubh, CKA_LABEL).1, label);
    let copy_label = b"public-copy";
    let t = [bytes_attr(CKA_LABEL, copy_label)];
    let mut copy = 0;
    assert_eq!(call!(p, C_CopyObject(h, pubh, t.as_ptr() as *mut _, 1, &mut copy)), CKR_OK);
    assert_eq!(p.get(h, copy, CKA_CLASS).1, CKO_PUBLIC_KEY.to_ne_bytes());
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    let class: CK_OBJECT_CLASS = CKO_PRIVATE_KEY;
    let find = [bytes_attr(CKA_LABEL, copy_label), attr(CKA_CLASS, &class)];
    assert_eq!(call!(p, C_FindObjectsInit(h, find.as_ptr() as *mut _, 2)), CKR_OK);
    let mut found = [0; 2];
    let mut n: CK_ULONG = 9;
    assert_eq!(call!(p, C_FindObjects(h, found.as_mut_ptr(), 2, &mut n)), CKR_OK);
    assert_eq!(call!(p, C_FindObjectsFinal(h)), CKR_OK);
    assert_eq!(n, 0, "copying the public half made no private key");
    assert_eq!(p.get(h, privh, CKA_LABEL).1, private_label, "the private key kept its label");
    // Destroying the private key leaves the public key, which still verifies.
    assert_eq!(call!(p, C_DestroyObject(h, privh)), CKR_OK);
    check_rv("the destroyed private key", p.get(h, privh, CKA_LABEL).0, CKR_OBJECT_HANDLE_INVALID);
    assert_eq!(p.get(h, pubh, CKA_CLASS).1, CKO_PUBLIC_KEY.to_ne_bytes(), "the public key stays");
    let (pu2, pr2) = p.rsa_pair(h);
    let mut m = mech(CKM_SHA256_RSA_PKCS);
    assert_eq!(call!(p, C_SignInit(h, &mut m, pr2)), CKR_OK);
    let mut sig = [0u8; 256];
    let mut len: CK_ULONG = 256;
    assert_eq!(call!(p, C_Sign(h, b"x".as_ptr() as *mut u8, 1, sig.as_mut_ptr(), &mut len)), CKR_OK);
    assert_eq!(call!(p, C_DestroyObject(h, pr2)), CKR_OK);
    assert_eq!(call!(p, C_VerifyInit(h, &mut m, pu2)), CKR_OK);
    assert_eq!(
        call!(p, C_Verify(h, b"x".as_ptr() as *mut u8, 1, sig.as_mut_ptr(), len)),
        CKR_OK,
        "verifies after the private key is gone"
    );
    // Each half takes its own template's label.
    let bits: CK_ULONG = 2048;
    let yes = b(true);
    let public = [attr(CKA_MODULUS_BITS, &bits), attr(CKA_VERIFY, &yes), bytes_attr(CKA_LABEL, b"pub-label")];
    let private = [attr(CKA_SIGN, &yes), bytes_attr(CKA_LABEL, b"priv-label")];
    let (pu, pr) = p.pair_with(h, &public, &private).expect("C_GenerateKeyPair");
    assert_eq!(p.get(h, pu, CKA_LABEL).1, b"pub-label");
    assert_eq!(p.get(h, pr, CKA_LABEL).1, b"priv-label");
    p.fin();
}

/// Only the security officer (whose login presents the world's cards) makes a trusted wrapping
/// key; the cards are withdrawn at logout.
fn trusted_by_the_officer_only(p: &P11) {
    p.init();
    let h = p.open(true);
    let (pubh, _) = {
        assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
        p.rsa_pair(h)
    };
    let n = p.get(h, pubh, CKA_MODULUS).1;
    let e = p.get(h, pubh, CKA_PUBLIC_EXPONENT).1;
    let class: CK_OBJECT_CLASS = CKO_PUBLIC_KEY;
    let kt: CK_KEY_TYPE = CKK_RSA;
    let yes = b(true);
    let t = [
        attr(CKA_CLASS, &class),
        attr(CKA_KEY_TYPE, &kt),
        bytes_attr(CKA_MODULUS, &n),
        bytes_attr(CKA_PUBLIC_EXPONENT, &e),
        attr(CKA_WRAP, &yes),
        attr(CKA_TRUSTED, &yes),
    ];
    let mut o = 0;
    check_rv(
        "CKA_TRUSTED by the user",
        call!(p, C_CreateObject(h, t.as_ptr() as *mut _, 6, &mut o)),
        CKR_ATTRIBUTE_READ_ONLY,
    );
    assert_eq!(call!(p, C_Logout(h)), CKR_OK);
    assert_eq!(p.login(h, CKU_SO, common::SO_PIN), CKR_OK);
    assert_eq!(call!(p, C_CreateObject(h, t.as_ptr() as *mut _, 6, &mut o)), CKR_OK, "CKA_TRUSTED by the SO");
    assert_eq!(p.get(h, o, CKA_TRUSTED).1, [1]);
    assert_eq!(call!(p, C_Logout(h)), CKR_OK);
    assert_eq!(p.get(h, o, CKA_TRUSTED).1, [1], "the key stays trusted");
    check_rv(
        "CKA_TRUSTED after the SO left",
        call!(p, C_CreateObject(h, t.as_ptr() as *mut _, 6, &mut o)),
        CKR_ATTRIBUTE_READ_ONLY,
    );
    p.fin();
}

fn set_pin(p: &P11) {
    p.init();
    let set = |h, old: &str, new: &str| {
        call!(
            p,
            C_SetPIN(h, old.as_ptr() as *mut u8, old.len() as CK_ULONG, new.as_ptr() as *mut u8, new.len() as CK_ULONG)
        )
    };
    let ro = p.open(false);
    check_rv("C_SetPIN in a read-only session", set(ro, common::USER_PIN, "4321"), CKR_SESSION_READ_ONLY);
    let h = p.open(true);
    check_rv("wrong old PIN", set(h, "9999", "4321"), CKR_PIN_INCORRECT);
    check_rv("new PIN too short", set(h, common::USER_PIN, "12"), CKR_PIN_LEN_RANGE);
    assert_eq!(set(h, common::USER_PIN, "4321"), CKR_OK);
    check_rv("old PIN after the change", p.login(h, CKU_USER, common::USER_PIN), CKR_PIN_INCORRECT);
    assert_eq!(p.login(h, CKU_USER, "4321"), CKR_OK);
    assert_eq!(set(h, "4321", common::USER_PIN), CKR_OK);
    assert_eq!(call!(p, C_Logout(h)), CKR_OK);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    // The wrong PINs above were counted, and the right one reset the count.
    let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(call!(p, C_GetTokenInfo(0, &mut info)), CKR_OK);
    assert_eq!(info.flags & CKF_USER_PIN_COUNT_LOW, 0, "a right PIN resets the failure count");
    p.fin();
}

fn interfaces(p: &P11) {
    // SAFETY: the v3.0 exports have these signatures.
    unsafe {
        let list: libloading::Symbol<'_, unsafe extern "C" fn(*mut CK_INTERFACE, *mut CK_ULONG) -> CK_RV> =
            p._lib.get(b"C_GetInterfaceList").expect("C_GetInterfaceList");
        let mut n: CK_ULONG = 0;
        assert_eq!(list(null_mut(), &mut n), CKR_OK);
        assert_eq!(n, 2);
        let get: libloading::Symbol<
            '_,
            unsafe extern "C" fn(*mut u8, *mut CK_VERSION, *mut *mut CK_INTERFACE, CK_FLAGS) -> CK_RV,
        > = p._lib.get(b"C_GetInterface").expect("C_GetInterface");
        let mut iface: *mut CK_INTERFACE = null_mut();
        assert_eq!(get(null_mut(), null_mut(), &mut iface, 0), CKR_OK);
        let v = *((*iface).pFunctionList as *const CK_VERSION);
        assert_eq!((v.major, v.minor), (3, 0), "no version asked: the newest");
        let mut want = CK_VERSION { major: 2, minor: 40 };
        let name = b"PKCS 11\0";
        assert_eq!(get(name.as_ptr() as *mut u8, &mut want, &mut iface, 0), CKR_OK);
        let v = *((*iface).pFunctionList as *const CK_VERSION);
        assert_eq!((v.major, v.minor), (2, 40));
        assert_eq!(std::ffi::CStr::from_ptr((*iface).pInterfaceName as *const _).to_bytes(), b"PKCS 11");
        let other = b"Vendor X\0";
        assert_eq!(get(other.as_ptr() as *mut u8, null_mut(), &mut iface, 0), CKR_ARGUMENTS_BAD);
        assert_eq!(get(null_mut(), null_mut(), null_mut(), 0), CKR_ARGUMENTS_BAD);
        let v3 = &*((*iface).pFunctionList as *const CK_FUNCTION_LIST_3_0);
        assert!(v3.C_Initialize.is_some());
    }
}

fn attribute_rules(p: &P11) {
    p.init();
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    let class: CK_OBJECT_CLASS = CKO_SECRET_KEY;
    let kt: CK_KEY_TYPE = CKK_AES;
    let yes = b(true);
    let value = [9u8; 32];
    let mut o = 0;
    let with_local =
        [attr(CKA_CLASS, &class), attr(CKA_KEY_TYPE, &kt), bytes_attr(CKA_VALUE, &value), attr(CKA_LOCAL, &yes)];
    let rv = call!(p, C_CreateObject(h, with_local.as_ptr() as *mut _, 4, &mut o));
    check_rv("CKA_LOCAL in a template", rv, CKR_ATTRIBUTE_READ_ONLY);
    let with_unknown =
        [attr(CKA_CLASS, &class), attr(CKA_KEY_TYPE, &kt), bytes_attr(CKA_VALUE, &value), attr(CKA_MODULUS_BITS, &kt)];
    let rv = call!(p, C_CreateObject(h, with_unknown.as_ptr() as *mut _, 4, &mut o));
    check_rv("RSA attribute on an AES key", rv, CKR_ATTRIBUTE_TYPE_INVALID);
    let twice = [attr(CKA_CLASS, &class), attr(CKA_CLASS, &class)];
    check_rv(
        "attribute twice",
        call!(p, C_CreateObject(h, twice.as_ptr() as *mut _, 2, &mut o)),
        CKR_TEMPLATE_INCONSISTENT,
    );
    let short = [attr(CKA_CLASS, &class), attr(CKA_KEY_TYPE, &kt), bytes_attr(CKA_VALUE, &value[..5])];
    check_rv(
        "5-byte AES key",
        call!(p, C_CreateObject(h, short.as_ptr() as *mut _, 3, &mut o)),
        CKR_ATTRIBUTE_VALUE_INVALID,
    );
    let no_value = [attr(CKA_CLASS, &class), attr(CKA_KEY_TYPE, &kt)];
    check_rv(
        "no CKA_VALUE",
        call!(p, C_CreateObject(h, no_value.as_ptr() as *mut _, 2, &mut o)),
        CKR_TEMPLATE_INCOMPLETE,
    );

    // A generated sensitive key is always sensitive and never extractable; an imported one is not.
    let len: CK_ULONG = 32;
    let gen_t = [attr(CKA_VALUE_LEN, &len), attr(CKA_WRAP, &yes)];
    let mut m = mech(CKM_AES_KEY_GEN);
    let mut generated = 0;
    assert_eq!(call!(p, C_GenerateKey(h, &mut m, gen_t.as_ptr() as *mut _, 2, &mut generated)), CKR_OK);
    assert_eq!(p.get(h, generated, CKA_ALWAYS_SENSITIVE).1, [1]);
    assert_eq!(p.get(h, generated, CKA_NEVER_EXTRACTABLE).1, [1]);
    assert_eq!(p.get(h, generated, CKA_LOCAL).1, [1]);
    assert_eq!(p.get(h, generated, CKA_KEY_GEN_MECHANISM).1, CKM_AES_KEY_GEN.to_ne_bytes());
    let (rv, _) = p.get(h, generated, CKA_VALUE);
    check_rv("value of a sensitive key", rv, CKR_ATTRIBUTE_SENSITIVE);
    let imported = aes_key(p, h, &value, true, false);
    assert_eq!(p.get(h, imported, CKA_ALWAYS_SENSITIVE).1, [0]);
    assert_eq!(p.get(h, imported, CKA_NEVER_EXTRACTABLE).1, [0]);
    assert_eq!(p.get(h, imported, CKA_LOCAL).1, [0]);
    assert_eq!(p.get(h, imported, CKA_KEY_GEN_MECHANISM).1, CK_UNAVAILABLE_INFORMATION.to_ne_bytes());

    // C_SetAttributeValue: a new label; rights only narrow; fixed attributes are read-only.
    let label = b"renamed";
    let t = [bytes_attr(CKA_LABEL, label)];
    assert_eq!(call!(p, C_SetAttributeValue(h, imported, t.as_ptr() as *mut _, 1)), CKR_OK);
    assert_eq!(p.get(h, imported, CKA_LABEL).1, label);
    let no = b(false);
    let t = [attr(CKA_SENSITIVE, &no)];
    check_rv(
        "sensitive back to false",
        call!(p, C_SetAttributeValue(h, generated, t.as_ptr() as *mut _, 1)),
        CKR_ATTRIBUTE_READ_ONLY,
    );
    let other: CK_OBJECT_CLASS = CKO_PUBLIC_KEY;
    let t = [attr(CKA_CLASS, &other)];
    check_rv("class", call!(p, C_SetAttributeValue(h, imported, t.as_ptr() as *mut _, 1)), CKR_ATTRIBUTE_READ_ONLY);
    let t = [attr(CKA_EXTRACTABLE, &no)];
    assert_eq!(call!(p, C_SetAttributeValue(h, imported, t.as_ptr() as *mut _, 1)), CKR_OK);
    assert_eq!(p.get(h, imported, CKA_EXTRACTABLE).1, [0]);
    let mut kw = mech(CKM_AES_KEY_WRAP);
    let mut wl: CK_ULONG = 64;
    let mut out = [0u8; 64];
    let rv = call!(p, C_WrapKey(h, &mut kw, generated, imported, out.as_mut_ptr(), &mut wl));
    check_rv("wrap after CKA_EXTRACTABLE went false", rv, CKR_KEY_UNEXTRACTABLE);
    p.fin();
}

fn cli_and_module_share_keys(p: &P11) {
    // A key generated the way `hsmkit generatekey` does appears as objects of the token, and a
    // token key made through PKCS#11 is an emulator key blob the CLI lists.
    let kmdata = common::kmdata_of(0);
    {
        let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(&kmdata)).expect("emulator");
        emu.generate_rsa("simple", "clikey", "made-by-cli", 2048, 65537).expect("generatekey");
    }
    p.init();
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    let label = b"made-by-cli";
    let class: CK_OBJECT_CLASS = CKO_PRIVATE_KEY;
    let t = [bytes_attr(CKA_LABEL, label), attr(CKA_CLASS, &class)];
    assert_eq!(call!(p, C_FindObjectsInit(h, t.as_ptr() as *mut _, 2)), CKR_OK);
    let mut found = [0; 4];
    let mut n: CK_ULONG = 0;
    assert_eq!(call!(p, C_FindObjects(h, found.as_mut_ptr(), 4, &mut n)), CKR_OK);
    assert_eq!(call!(p, C_FindObjectsFinal(h)), CKR_OK);
    assert_eq!(n, 1, "the CLI's key is found by its label");
    let mut m = mech(CKM_SHA256_RSA_PKCS);
    assert_eq!(call!(p, C_SignInit(h, &mut m, found[0])), CKR_OK);
    let mut sig = [0u8; 256];
    let mut len: CK_ULONG = 256;
    assert_eq!(call!(p, C_Sign(h, b"x".as_ptr() as *mut u8, 1, sig.as_mut_ptr(), &mut len)), CKR_OK);
    // The generatekey default ACL grants no export: its ACL refuses the wrap, and says so.
    let kek = aes_key(p, h, &[3u8; 32], false, true);
    let mut kw = mech(CKM_AES_KEY_WRAP_KWP);
    let mut out = vec![0u8; 4096];
    let mut olen = out.len() as CK_ULONG;
    let rv = call!(p, C_WrapKey(h, &mut kw, kek, found[0], out.as_mut_ptr(), &mut olen));
    check_rv("wrapping the CLI's key", rv, CKR_KEY_UNEXTRACTABLE);
    // Its attributes say the same: sensitive and not extractable.
    assert_eq!(p.get(h, found[0], CKA_EXTRACTABLE).1, [0]);
    assert_eq!(p.get(h, found[0], CKA_SENSITIVE).1, [1]);

    let bits: CK_ULONG = 2048;
    let yes = b(true);
    let tok_label = b"made-by-pkcs11";
    let public = [attr(CKA_MODULUS_BITS, &bits), attr(CKA_TOKEN, &yes)];
    let private = [attr(CKA_TOKEN, &yes), bytes_attr(CKA_LABEL, tok_label)];
    let (mut a, mut bb) = (0, 0);
    let mut g = mech(CKM_RSA_PKCS_KEY_PAIR_GEN);
    let rv = call!(
        p,
        C_GenerateKeyPair(h, &mut g, public.as_ptr() as *mut _, 2, private.as_ptr() as *mut _, 2, &mut a, &mut bb)
    );
    assert_eq!(rv, CKR_OK);
    p.fin();
    let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(&kmdata)).expect("emulator");
    let keys = emu.list_keys().expect("nkminfo -k");
    assert!(
        keys.iter().any(|k| k.header.appname == "pkcs11" && k.header.name == "made-by-pkcs11"),
        "the PKCS#11 token key is an emulator key blob: {:?}",
        keys.iter().map(|k| (&k.header.appname, &k.header.name)).collect::<Vec<_>>()
    );
}

/// A world made by the CLI with a 2-of-3 card set, in slot 7: the token is initialised with the
/// world's name as its label and no user PIN; the SO logs in with cards 1 and 2's PINs.
fn cli_world_in_second_slot(p: &P11) {
    let kmdata = common::kmdata_of(7);
    std::fs::create_dir_all(&kmdata).expect("kmdata");
    {
        let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(&kmdata)).expect("emulator");
        let pins: Vec<hsmkit_backend::Pin> =
            ["card-one", "card-two", "card-three"].map(|p| p.to_string().into()).into();
        emu.create_world(
            hsmkit_emulator::suite::CipherSuite::DLf3072s256mAEScSP800131Ar1,
            hsmkit_emulator::world::Quorum { k: 2, n: 3 },
            &pins,
        )
        .expect("2/3 world");
        emu.generate_rsa("simple", "slot7key", "slot7key", 2048, 65537).expect("generatekey");
    }
    p.init();
    let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(call!(p, C_GetTokenInfo(7, &mut info)), CKR_OK);
    assert!(info.flags & CKF_TOKEN_INITIALIZED != 0);
    assert_eq!(info.flags & CKF_USER_PIN_INITIALIZED, 0);
    // No user PIN: module protection, as on nShield. No login is required and the world's keys
    // are found and used without one.
    assert_eq!(info.flags & CKF_LOGIN_REQUIRED, 0, "a world without a user PIN needs no login");
    let find_private = |h| {
        let class: CK_OBJECT_CLASS = CKO_PRIVATE_KEY;
        let t = [bytes_attr(CKA_LABEL, b"slot7key"), attr(CKA_CLASS, &class)];
        assert_eq!(call!(p, C_FindObjectsInit(h, t.as_ptr() as *mut _, 2)), CKR_OK);
        let mut found = [0; 2];
        let mut n: CK_ULONG = 0;
        assert_eq!(call!(p, C_FindObjects(h, found.as_mut_ptr(), 2, &mut n)), CKR_OK);
        assert_eq!(call!(p, C_FindObjectsFinal(h)), CKR_OK);
        found[..n as usize].to_vec()
    };
    let sign = |h, key| {
        let mut m = mech(CKM_SHA256_RSA_PKCS);
        let rv = call!(p, C_SignInit(h, &mut m, key));
        if rv != CKR_OK {
            return rv;
        }
        let mut sig = [0u8; 256];
        let mut len: CK_ULONG = 256;
        call!(p, C_Sign(h, b"x".as_ptr() as *mut u8, 1, sig.as_mut_ptr(), &mut len))
    };
    {
        let mut h = 0;
        assert_eq!(call!(p, C_OpenSession(7, CKF_SERIAL_SESSION, null_mut(), None, &mut h)), CKR_OK);
        let keys = find_private(h);
        assert_eq!(keys.len(), 1, "the CLI's key is visible without a login");
        assert_eq!(sign(h, keys[0]), CKR_OK, "and signs without one");
        assert_eq!(call!(p, C_CloseSession(h)), CKR_OK);
    }
    assert!(String::from_utf8_lossy(&info.label).starts_with("hsmkit "), "{:?}", String::from_utf8_lossy(&info.label));
    let mut h = 0;
    assert_eq!(call!(p, C_OpenSession(7, CKF_SERIAL_SESSION | CKF_RW_SESSION, null_mut(), None, &mut h)), CKR_OK);
    check_rv("user PIN not set", p.login(h, CKU_USER, "1234"), CKR_USER_PIN_NOT_INITIALIZED);
    check_rv("one card of two", p.login(h, CKU_SO, "card-one"), CKR_PIN_INCORRECT);
    check_rv("a wrong card PIN", p.login(h, CKU_SO, "card-one,card-xxx"), CKR_PIN_INCORRECT);
    assert_eq!(p.login(h, CKU_SO, "card-one,card-two"), CKR_OK);
    let pin = "slot7pin";
    assert_eq!(call!(p, C_InitPIN(h, pin.as_ptr() as *mut u8, pin.len() as CK_ULONG)), CKR_OK);
    assert_eq!(call!(p, C_Logout(h)), CKR_OK);
    // A user PIN: now login is required, and the key is hidden until the user logs in.
    assert_eq!(call!(p, C_GetTokenInfo(7, &mut info)), CKR_OK);
    assert!(info.flags & CKF_LOGIN_REQUIRED != 0 && info.flags & CKF_USER_PIN_INITIALIZED != 0);
    assert!(find_private(h).is_empty(), "hidden without the user");
    assert_eq!(p.login(h, CKU_USER, pin), CKR_OK);
    let keys = find_private(h);
    assert_eq!(keys.len(), 1);
    assert_eq!(sign(h, keys[0]), CKR_OK);
    // The in-process emulator on the same kmdata checks the same PIN, the one C_InitPIN set.
    {
        use hsmkit_backend::{Backend as _, UserKind};
        let emu = hsmkit_emulator::Emulator::open(hsmkit_emulator::Config::beside(&kmdata)).expect("emulator");
        let s = emu.open_session(hsmkit_emulator::SLOT, hsmkit_backend::SessionMode::ReadOnly).expect("session");
        let e = s.login(UserKind::User, &hsmkit_backend::Pin::from("1234".to_string())).expect_err("wrong PIN");
        assert_eq!(e.kind(), &hsmkit_backend::ErrorKind::PinIncorrect);
        s.login(UserKind::User, &hsmkit_backend::Pin::from(pin.to_string())).expect("the .so's PIN");
    }
    // Slot 0's login is its own.
    let h0 = p.open(true);
    assert_eq!(p.state(h0), CKS_RW_PUBLIC_SESSION);
    p.fin();
}

/// `C_InitToken` on an initialised token: a wrong SO PIN changes nothing; the right one destroys the
/// keys made through PKCS#11, keeps the world and the CLI's keys, and resets the user PIN.
fn reinitialise(p: &P11) {
    let count = |p: &P11, h, label: &[u8]| {
        let t = [bytes_attr(CKA_LABEL, label)];
        assert_eq!(call!(p, C_FindObjectsInit(h, t.as_ptr() as *mut _, 1)), CKR_OK);
        let mut found = [0; 8];
        let mut n: CK_ULONG = 0;
        assert_eq!(call!(p, C_FindObjects(h, found.as_mut_ptr(), 8, &mut n)), CKR_OK);
        assert_eq!(call!(p, C_FindObjectsFinal(h)), CKR_OK);
        n
    };
    p.init();
    let label = format!("{:<32}", "renewed");
    let init =
        |so: &str| call!(p, C_InitToken(0, so.as_ptr() as *mut u8, so.len() as CK_ULONG, label.as_ptr() as *mut u8));
    check_rv("wrong SO PIN", init("0000"), CKR_PIN_INCORRECT);
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK, "a failed C_InitToken changes nothing");
    assert_eq!(count(p, h, b"made-by-pkcs11"), 2);
    assert_eq!(call!(p, C_CloseAllSessions(0)), CKR_OK);
    assert_eq!(init(common::SO_PIN), CKR_OK);
    let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(call!(p, C_GetTokenInfo(0, &mut info)), CKR_OK);
    assert_eq!(&info.label[..], label.as_bytes());
    assert_eq!(info.flags & CKF_USER_PIN_INITIALIZED, 0, "the user PIN is reset");
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_SO, common::SO_PIN), CKR_OK);
    let pin = common::USER_PIN;
    assert_eq!(call!(p, C_InitPIN(h, pin.as_ptr() as *mut u8, pin.len() as CK_ULONG)), CKR_OK);
    assert_eq!(call!(p, C_Logout(h)), CKR_OK);
    assert_eq!(p.login(h, CKU_USER, pin), CKR_OK);
    assert_eq!(count(p, h, b"made-by-pkcs11"), 0, "the PKCS#11 token keys are destroyed");
    assert_eq!(count(p, h, b"made-by-cli"), 2, "the CLI's key stays");
    p.fin();
}

/// The specification's details that test suites check, one assertion each.
fn spec_details(p: &P11) {
    p.init();
    // C_GetInfo reports the version of the interface it was called through.
    let mut info: CK_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(call!(p, C_GetInfo(&mut info)), CKR_OK);
    assert_eq!((info.cryptokiVersion.major, info.cryptokiVersion.minor), (2, 40));
    let v3: &CK_FUNCTION_LIST_3_0 = unsafe {
        let get: libloading::Symbol<
            '_,
            unsafe extern "C" fn(*mut u8, *mut CK_VERSION, *mut *mut CK_INTERFACE, CK_FLAGS) -> CK_RV,
        > = p._lib.get(b"C_GetInterface").expect("C_GetInterface");
        let mut i: *mut CK_INTERFACE = null_mut();
        let mut want = CK_VERSION { major: 3, minor: 0 };
        assert_eq!(get(null_mut(), &mut want, &mut i, 0), CKR_OK);
        &*((*i).pFunctionList as *const CK_FUNCTION_LIST_3_0)
    };
    assert_eq!(unsafe { (v3.C_GetInfo.expect("C_GetInfo"))(&mut info) }, CKR_OK);
    assert_eq!((info.cryptokiVersion.major, info.cryptokiVersion.minor), (3, 0), "the 3.0 interface says 3.0");

    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    check_rv("C_GetFunctionStatus", call!(p, C_GetFunctionStatus(h)), CKR_FUNCTION_NOT_PARALLEL);
    check_rv("C_CancelFunction", call!(p, C_CancelFunction(h)), CKR_FUNCTION_NOT_PARALLEL);

    // Single-part and multi-part forms do not mix: after a C_Digest length query, C_DigestFinal
    // and C_DigestUpdate are CKR_OPERATION_ACTIVE; the same for C_Sign and C_SignFinal.
    let mut sha = mech(CKM_SHA256);
    let mut data = *b"abc";
    let mut out = [0u8; 64];
    for second in ["final", "update"] {
        assert_eq!(call!(p, C_DigestInit(h, &mut sha)), CKR_OK);
        let mut len: CK_ULONG = 0;
        assert_eq!(call!(p, C_Digest(h, data.as_mut_ptr(), 3, null_mut(), &mut len)), CKR_OK);
        assert_eq!(len, 32);
        let rv = if second == "final" {
            call!(p, C_DigestFinal(h, out.as_mut_ptr(), &mut len))
        } else {
            call!(p, C_DigestUpdate(h, data.as_mut_ptr(), 3))
        };
        check_rv(&format!("C_Digest{second} after a C_Digest length query"), rv, CKR_OPERATION_ACTIVE);
    }
    let (_, private) = p.rsa_pair(h);
    let mut m = mech(CKM_SHA256_RSA_PKCS);
    assert_eq!(call!(p, C_SignInit(h, &mut m, private)), CKR_OK);
    let mut len: CK_ULONG = 0;
    assert_eq!(call!(p, C_Sign(h, data.as_mut_ptr(), 3, null_mut(), &mut len)), CKR_OK);
    let mut sig = [0u8; 256];
    check_rv(
        "C_SignFinal after a C_Sign length query",
        call!(p, C_SignFinal(h, sig.as_mut_ptr(), &mut len)),
        CKR_OPERATION_ACTIVE,
    );

    // PSS needs its parameters.
    let mut pss = mech(CKM_SHA256_RSA_PKCS_PSS);
    check_rv("PSS without parameters", call!(p, C_SignInit(h, &mut pss, private)), CKR_MECHANISM_PARAM_INVALID);

    // C_SeedRandom mixes the seed in; random bytes keep coming and differ.
    let mut seed = *b"caller's seed";
    assert_eq!(call!(p, C_SeedRandom(h, seed.as_mut_ptr(), seed.len() as CK_ULONG)), CKR_OK);
    let (mut r1, mut r2) = ([0u8; 32], [0u8; 32]);
    assert_eq!(call!(p, C_GenerateRandom(h, r1.as_mut_ptr(), 32)), CKR_OK);
    assert_eq!(call!(p, C_GenerateRandom(h, r2.as_mut_ptr(), 32)), CKR_OK);
    assert_ne!(r1, r2);

    // C_DigestKey: a readable secret key's value is digested in the module (checked with sha2);
    // a sensitive one is CKR_KEY_INDIGESTIBLE.
    let value = [0x5au8; 32];
    let readable = aes_key(p, h, &value, true, false);
    let sensitive = aes_key(p, h, &[0x11u8; 32], false, false);
    assert_eq!(call!(p, C_DigestInit(h, &mut sha)), CKR_OK);
    assert_eq!(call!(p, C_DigestUpdate(h, data.as_mut_ptr(), 3)), CKR_OK);
    assert_eq!(call!(p, C_DigestKey(h, readable)), CKR_OK);
    let mut len: CK_ULONG = 64;
    assert_eq!(call!(p, C_DigestFinal(h, out.as_mut_ptr(), &mut len)), CKR_OK);
    let want = sha2::Sha256::new().chain_update(b"abc").chain_update(value).finalize();
    assert_eq!(&out[..len as usize], want.as_slice(), "C_DigestKey digests the key's value");
    assert_eq!(call!(p, C_DigestInit(h, &mut sha)), CKR_OK);
    check_rv("C_DigestKey of a sensitive key", call!(p, C_DigestKey(h, sensitive)), CKR_KEY_INDIGESTIBLE);

    // Read-only attributes stay read-only, even when set to the value they have.
    let (rv, gen_mech) = p.get(h, private, CKA_KEY_GEN_MECHANISM);
    assert_eq!(rv, CKR_OK);
    let t = [bytes_attr(CKA_KEY_GEN_MECHANISM, &gen_mech)];
    check_rv(
        "C_SetAttributeValue of CKA_KEY_GEN_MECHANISM",
        call!(p, C_SetAttributeValue(h, private, t.as_ptr() as *mut _, 1)),
        CKR_ATTRIBUTE_READ_ONLY,
    );
    // CKA_ALLOWED_MECHANISMS is absent on a key made without it.
    check_rv("CKA_ALLOWED_MECHANISMS unset", p.get(h, private, CKA_ALLOWED_MECHANISMS).0, CKR_ATTRIBUTE_TYPE_INVALID);

    // CKA_WRAP_WITH_TRUSTED asked at generation is kept; recover attributes asked false are fine.
    let (len32, yes, no): (CK_ULONG, CK_BBOOL, CK_BBOOL) = (32, b(true), b(false));
    let t = [attr(CKA_VALUE_LEN, &len32), attr(CKA_WRAP_WITH_TRUSTED, &yes)];
    let mut aes = 0;
    let mut gen_m = mech(CKM_AES_KEY_GEN);
    assert_eq!(call!(p, C_GenerateKey(h, &mut gen_m, t.as_ptr() as *mut _, 2, &mut aes)), CKR_OK);
    assert_eq!(p.get(h, aes, CKA_WRAP_WITH_TRUSTED).1, [1], "CKA_WRAP_WITH_TRUSTED is kept");
    let bits: CK_ULONG = 2048;
    let public = [attr(CKA_MODULUS_BITS, &bits), attr(CKA_VERIFY, &yes), attr(CKA_VERIFY_RECOVER, &no)];
    let private_t = [attr(CKA_SIGN, &yes), attr(CKA_SIGN_RECOVER, &no)];
    let rv = p.pair_with(h, &public, &private_t).err().unwrap_or(CKR_OK);
    check_rv("CKA_SIGN_RECOVER and CKA_VERIFY_RECOVER false", rv, CKR_OK);

    // An imported RSA key's CRT values must be its own: an oversized CKA_EXPONENT_1 is refused.
    use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(9);
    let key = rsa::PrivateKey::new(&mut rng, 1024).expect("RSA-1024");
    let be = |v: &BoxedUint| v.to_be_bytes_trimmed_vartime().to_vec();
    let (n, e, d) = (be(key.n()), be(key.e()), be(key.d()));
    let (p1, p2) = (be(key.primes()[0].as_ref()), be(key.primes()[1].as_ref()));
    let dp = be(key.dp().expect("dp"));
    let class: CK_OBJECT_CLASS = CKO_PRIVATE_KEY;
    let kt: CK_KEY_TYPE = CKK_RSA;
    let import = |exp1: &[u8]| {
        let t = [
            attr(CKA_CLASS, &class),
            attr(CKA_KEY_TYPE, &kt),
            bytes_attr(CKA_MODULUS, &n),
            bytes_attr(CKA_PUBLIC_EXPONENT, &e),
            bytes_attr(CKA_PRIVATE_EXPONENT, &d),
            bytes_attr(CKA_PRIME_1, &p1),
            bytes_attr(CKA_PRIME_2, &p2),
            bytes_attr(CKA_EXPONENT_1, exp1),
        ];
        let mut o = 0;
        call!(p, C_CreateObject(h, t.as_ptr() as *mut _, t.len() as CK_ULONG, &mut o))
    };
    let mut oversized = vec![0x01];
    oversized.extend_from_slice(&dp);
    check_rv("an oversized CKA_EXPONENT_1", import(&oversized), CKR_ATTRIBUTE_VALUE_INVALID);
    check_rv("the key's own CKA_EXPONENT_1", import(&dp), CKR_OK);

    // A 512-bit RSA public key verifies a legacy signature (key and signature made by OpenSSL's
    // command line), and encrypts nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let (k512, data, sigf) = (dir.path().join("k512.pem"), dir.path().join("data"), dir.path().join("sig"));
    std::fs::write(&data, b"legacy").expect("data");
    let openssl = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    openssl(&[
        &os("genpkey"),
        &os("-algorithm"),
        &os("RSA"),
        &os("-pkeyopt"),
        &os("rsa_keygen_bits:512"),
        &os("-out"),
        k512.as_os_str(),
    ]);
    openssl(&[
        &os("dgst"),
        &os("-sha256"),
        &os("-sign"),
        k512.as_os_str(),
        &os("-out"),
        sigf.as_os_str(),
        data.as_os_str(),
    ]);
    let modulus =
        String::from_utf8(openssl(&[&os("rsa"), &os("-in"), k512.as_os_str(), &os("-noout"), &os("-modulus")]))
            .expect("text");
    let ln = hex::decode(modulus.trim().trim_start_matches("Modulus=")).expect("hex modulus");
    let le = vec![0x01, 0x00, 0x01];
    let mut legacy_sig = std::fs::read(&sigf).expect("sig");
    let pclass: CK_OBJECT_CLASS = CKO_PUBLIC_KEY;
    let t = [
        attr(CKA_CLASS, &pclass),
        attr(CKA_KEY_TYPE, &kt),
        bytes_attr(CKA_MODULUS, &ln),
        bytes_attr(CKA_PUBLIC_EXPONENT, &le),
        attr(CKA_VERIFY, &yes),
        attr(CKA_ENCRYPT, &yes),
    ];
    let mut lk = 0;
    assert_eq!(
        call!(p, C_CreateObject(h, t.as_ptr() as *mut _, t.len() as CK_ULONG, &mut lk)),
        CKR_OK,
        "an RSA-512 public key"
    );
    let mut m = mech(CKM_SHA256_RSA_PKCS);
    assert_eq!(call!(p, C_VerifyInit(h, &mut m, lk)), CKR_OK);
    let rv =
        call!(p, C_Verify(h, b"legacy".as_ptr() as *mut u8, 6, legacy_sig.as_mut_ptr(), legacy_sig.len() as CK_ULONG));
    check_rv("a legacy RSA-512 signature", rv, CKR_OK);
    let mut oaep = mech(CKM_RSA_PKCS_OAEP);
    let mut out = [0u8; 64];
    let mut olen: CK_ULONG = 64;
    let rv = call!(p, C_EncryptInit(h, &mut oaep, lk));
    let rv = if rv == CKR_OK {
        call!(p, C_Encrypt(h, b"x".as_ptr() as *mut u8, 1, out.as_mut_ptr(), &mut olen))
    } else {
        rv
    };
    check_rv("encrypting under RSA-512", rv, CKR_KEY_SIZE_RANGE);
    p.fin();
}

/// Handles matching `t`.
fn find_all(p: &P11, h: CK_SESSION_HANDLE, t: &[CK_ATTRIBUTE]) -> Vec<CK_OBJECT_HANDLE> {
    assert_eq!(call!(p, C_FindObjectsInit(h, t.as_ptr() as *mut _, t.len() as CK_ULONG)), CKR_OK);
    let mut found = [0; 64];
    let mut n: CK_ULONG = 0;
    assert_eq!(call!(p, C_FindObjects(h, found.as_mut_ptr(), 64, &mut n)), CKR_OK);
    assert_eq!(call!(p, C_FindObjectsFinal(h)), CKR_OK);
    found[..n as usize].to_vec()
}

/// Data objects and certificates: token and session, private and public, found by any
/// attribute, their rules (required attributes, read-only ones, CKA_TRUSTED by the officer only).
fn stored_objects(p: &P11) {
    p.init();
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    let (data, cert): (CK_OBJECT_CLASS, CK_OBJECT_CLASS) = (CKO_DATA, CKO_CERTIFICATE);
    let (yes, no) = (b(true), b(false));
    let value = b"application secret";
    let t = [
        attr(CKA_CLASS, &data),
        attr(CKA_TOKEN, &yes),
        bytes_attr(CKA_LABEL, b"stored-data"),
        bytes_attr(CKA_APPLICATION, b"hsmkit test"),
        bytes_attr(CKA_OBJECT_ID, &[0x06, 0x03, 0x2a, 0x03, 0x04]),
        bytes_attr(CKA_VALUE, value),
    ];
    let mut d = 0;
    assert_eq!(call!(p, C_CreateObject(h, t.as_ptr() as *mut _, t.len() as CK_ULONG, &mut d)), CKR_OK);
    assert_eq!(p.get(h, d, CKA_VALUE).1, value);
    assert_eq!(p.get(h, d, CKA_PRIVATE).1, [1], "a data object is private unless asked otherwise");
    let (rv, uid) = p.get(h, d, CKA_UNIQUE_ID);
    assert_eq!(rv, CKR_OK);
    assert!(!uid.is_empty());
    let by_app = [bytes_attr(CKA_APPLICATION, b"hsmkit test")];
    assert_eq!(find_all(p, h, &by_app), [d], "found by CKA_APPLICATION");
    let keys_only: CK_KEY_TYPE = CKK_AES;
    assert!(!find_all(p, h, &[attr(CKA_KEY_TYPE, &keys_only)]).contains(&d), "a key attribute never matches it");
    let t = [bytes_attr(CKA_UNIQUE_ID, b"x")];
    check_rv(
        "CKA_UNIQUE_ID is read-only",
        call!(p, C_SetAttributeValue(h, d, t.as_ptr() as *mut _, 1)),
        CKR_ATTRIBUTE_READ_ONLY,
    );

    // A certificate: subject and value are required; the check value is SHA-1's first 3 bytes.
    let ct: CK_CERTIFICATE_TYPE = CKC_X_509;
    let der = b"not really DER, but the module stores what it is given";
    let incomplete = [attr(CKA_CLASS, &cert), attr(CKA_CERTIFICATE_TYPE, &ct), bytes_attr(CKA_VALUE, der)];
    let mut c = 0;
    check_rv(
        "a certificate without CKA_SUBJECT",
        call!(p, C_CreateObject(h, incomplete.as_ptr() as *mut _, 3, &mut c)),
        CKR_TEMPLATE_INCOMPLETE,
    );
    let trusted = [
        attr(CKA_CLASS, &cert),
        attr(CKA_CERTIFICATE_TYPE, &ct),
        bytes_attr(CKA_SUBJECT, b"subject"),
        bytes_attr(CKA_VALUE, der),
        attr(CKA_TRUSTED, &yes),
    ];
    check_rv(
        "CKA_TRUSTED by the user",
        call!(p, C_CreateObject(h, trusted.as_ptr() as *mut _, 5, &mut c)),
        CKR_ATTRIBUTE_READ_ONLY,
    );
    let t = [
        attr(CKA_CLASS, &cert),
        attr(CKA_CERTIFICATE_TYPE, &ct),
        attr(CKA_TOKEN, &yes),
        bytes_attr(CKA_LABEL, b"stored-cert"),
        bytes_attr(CKA_ID, &[0x42]),
        bytes_attr(CKA_SUBJECT, b"subject"),
        bytes_attr(CKA_VALUE, der),
    ];
    assert_eq!(call!(p, C_CreateObject(h, t.as_ptr() as *mut _, t.len() as CK_ULONG, &mut c)), CKR_OK);
    assert_eq!(p.get(h, c, CKA_PRIVATE).1, [0], "a certificate is public unless asked otherwise");
    assert_eq!(p.get(h, c, CKA_CHECK_VALUE).1, sha1::Sha1::digest(der)[..3].to_vec());
    let t = [attr(CKA_CERTIFICATE_TYPE, &ct)];
    check_rv(
        "CKA_CERTIFICATE_TYPE is fixed",
        call!(p, C_SetAttributeValue(h, c, t.as_ptr() as *mut _, 1)),
        CKR_ATTRIBUTE_READ_ONLY,
    );
    let t = [bytes_attr(CKA_LABEL, b"renamed-cert")];
    assert_eq!(call!(p, C_SetAttributeValue(h, c, t.as_ptr() as *mut _, 1)), CKR_OK);
    let certs = find_all(p, h, &[attr(CKA_CLASS, &cert)]);
    assert_eq!(certs, [c], "only the certificate is a certificate");
    assert_eq!(find_all(p, h, &[bytes_attr(CKA_LABEL, b"renamed-cert"), bytes_attr(CKA_ID, &[0x42])]), [c]);

    // A public session object, made and found without a login; it goes with its session.
    let s2 = p.open(false);
    assert_eq!(call!(p, C_Logout(h)), CKR_OK);
    assert!(find_all(p, s2, &by_app).is_empty(), "a private object is hidden without the user");
    assert_eq!(find_all(p, s2, &[attr(CKA_CLASS, &cert)]), [c], "a public one is not");
    let t = [
        attr(CKA_CLASS, &data),
        attr(CKA_PRIVATE, &no),
        bytes_attr(CKA_LABEL, b"public-session"),
        attr(CKA_MODIFIABLE, &no),
    ];
    let mut ps = 0;
    assert_eq!(
        call!(p, C_CreateObject(s2, t.as_ptr() as *mut _, 4, &mut ps)),
        CKR_OK,
        "a public session object in a read-only public session"
    );
    let public_session = [bytes_attr(CKA_LABEL, b"public-session")];
    assert_eq!(find_all(p, h, &public_session), [ps], "seen by the application's other sessions");
    let t = [bytes_attr(CKA_LABEL, b"changed")];
    check_rv(
        "CKA_MODIFIABLE false",
        call!(p, C_SetAttributeValue(s2, ps, t.as_ptr() as *mut _, 1)),
        CKR_ACTION_PROHIBITED,
    );
    let t = [attr(CKA_CLASS, &data), attr(CKA_TOKEN, &yes), attr(CKA_PRIVATE, &no)];
    let mut x = 0;
    check_rv(
        "a token object in a read-only session",
        call!(p, C_CreateObject(s2, t.as_ptr() as *mut _, 3, &mut x)),
        CKR_SESSION_READ_ONLY,
    );
    // CKA_COPYABLE and CKA_DESTROYABLE false are kept too; CKA_DESTROYABLE goes only from true to false.
    let t = [attr(CKA_CLASS, &data), attr(CKA_PRIVATE, &no), attr(CKA_COPYABLE, &no), attr(CKA_DESTROYABLE, &no)];
    let mut fixed = 0;
    assert_eq!(call!(p, C_CreateObject(s2, t.as_ptr() as *mut _, 4, &mut fixed)), CKR_OK);
    let mut copy = 0;
    check_rv("CKA_COPYABLE false", call!(p, C_CopyObject(s2, fixed, null_mut(), 0, &mut copy)), CKR_ACTION_PROHIBITED);
    check_rv("CKA_DESTROYABLE false", call!(p, C_DestroyObject(s2, fixed)), CKR_ACTION_PROHIBITED);
    let t = [attr(CKA_DESTROYABLE, &yes)];
    check_rv(
        "CKA_DESTROYABLE back to true",
        call!(p, C_SetAttributeValue(s2, fixed, t.as_ptr() as *mut _, 1)),
        CKR_ATTRIBUTE_READ_ONLY,
    );
    assert_eq!(call!(p, C_CloseSession(s2)), CKR_OK);
    assert!(find_all(p, h, &public_session).is_empty(), "the session object went with its session");

    // Token objects outlive the library; destroyed, they are gone.
    p.fin();
    p.init();
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    let found = find_all(p, h, &by_app);
    assert_eq!(found.len(), 1);
    assert_eq!(p.get(h, found[0], CKA_UNIQUE_ID).1, uid, "the same object");
    assert_eq!(call!(p, C_DestroyObject(h, found[0])), CKR_OK);
    assert!(find_all(p, h, &by_app).is_empty());
    let c = find_all(p, h, &[attr(CKA_CLASS, &cert)])[0];
    assert_eq!(call!(p, C_DestroyObject(h, c)), CKR_OK);
    check_rv("a destroyed object", p.get(h, c, CKA_LABEL).0, CKR_OBJECT_HANDLE_INVALID);
    p.fin();
}

/// Public objects where the template asks for them: a secret key made with `CKA_PRIVATE` false
/// is found and used without a login, may be made in a public read-write session, and a copy may
/// make it private again but not the reverse.
fn public_objects(p: &P11) {
    p.init();
    let h = p.open(true);
    let (class, kt): (CK_OBJECT_CLASS, CK_KEY_TYPE) = (CKO_SECRET_KEY, CKK_AES);
    let (yes, no, len) = (b(true), b(false), 32 as CK_ULONG);
    let label = b"public-secret";
    let t = [
        attr(CKA_CLASS, &class),
        attr(CKA_KEY_TYPE, &kt),
        attr(CKA_VALUE_LEN, &len),
        attr(CKA_PRIVATE, &no),
        attr(CKA_WRAP, &yes),
        bytes_attr(CKA_LABEL, label),
    ];
    let mut key = 0;
    let mut m = mech(CKM_AES_KEY_GEN);
    assert_eq!(
        call!(p, C_GenerateKey(h, &mut m, t[2..].as_ptr() as *mut _, 4, &mut key)),
        CKR_OK,
        "a public secret key in a public read-write session"
    );
    assert_eq!(p.get(h, key, CKA_PRIVATE).1, [0]);
    let t = [attr(CKA_CLASS, &class), attr(CKA_KEY_TYPE, &kt), bytes_attr(CKA_VALUE, &[9u8; 32])];
    let mut refused = 0;
    check_rv(
        "a private key without the user",
        call!(p, C_CreateObject(h, t.as_ptr() as *mut _, 3, &mut refused)),
        CKR_USER_NOT_LOGGED_IN,
    );
    let found = find_all(p, h, &[bytes_attr(CKA_LABEL, label)]);
    assert_eq!(found, [key], "found without a login");
    // Used without a login: it wraps an extractable public secret key.
    let other_t = [
        attr(CKA_CLASS, &class),
        attr(CKA_KEY_TYPE, &kt),
        bytes_attr(CKA_VALUE, &[7u8; 16]),
        attr(CKA_PRIVATE, &no),
        attr(CKA_EXTRACTABLE, &yes),
    ];
    let mut other = 0;
    assert_eq!(call!(p, C_CreateObject(h, other_t.as_ptr() as *mut _, 5, &mut other)), CKR_OK);
    let mut kw = mech(CKM_AES_KEY_WRAP_KWP);
    let mut out = [0u8; 64];
    let mut olen: CK_ULONG = 64;
    assert_eq!(
        call!(p, C_WrapKey(h, &mut kw, key, other, out.as_mut_ptr(), &mut olen)),
        CKR_OK,
        "used without a login"
    );
    // A copy may make it private again; never the reverse.
    let t = [attr(CKA_PRIVATE, &yes)];
    let mut copy = 0;
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    assert_eq!(call!(p, C_CopyObject(h, key, t.as_ptr() as *mut _, 1, &mut copy)), CKR_OK);
    assert_eq!(p.get(h, copy, CKA_PRIVATE).1, [1]);
    let t = [attr(CKA_PRIVATE, &no)];
    check_rv(
        "a private key made public by a copy",
        call!(p, C_CopyObject(h, copy, t.as_ptr() as *mut _, 1, &mut copy)),
        CKR_ATTRIBUTE_READ_ONLY,
    );
    assert_eq!(call!(p, C_Logout(h)), CKR_OK);
    assert!(find_all(p, h, &[attr(CKA_PRIVATE, &yes), attr(CKA_CLASS, &class)]).is_empty(), "private ones stay hidden");
    // A public key asked to be a private object is refused: the module would not hide it.
    let bits: CK_ULONG = 1024;
    let public = [attr(CKA_MODULUS_BITS, &bits), attr(CKA_PRIVATE, &yes)];
    let private = [attr(CKA_SIGN, &yes)];
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    check_rv(
        "CKA_PRIVATE true on a public key",
        p.pair_with(h, &public, &private).err().unwrap_or(CKR_OK),
        CKR_ATTRIBUTE_VALUE_INVALID,
    );
    p.fin();
}

/// A key's details that are not policy: `CKA_UNIQUE_ID`, dates kept as given, and
/// `CKA_ALWAYS_AUTHENTICATE` with the context-specific login it asks for.
fn key_details(p: &P11) {
    p.init();
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    let (pubh, privh) = p.rsa_pair(h);
    let (rv, upub) = p.get(h, pubh, CKA_UNIQUE_ID);
    assert_eq!(rv, CKR_OK);
    let upriv = p.get(h, privh, CKA_UNIQUE_ID).1;
    assert!(!upub.is_empty() && !upriv.is_empty() && upub != upriv, "each object its own CKA_UNIQUE_ID");
    let t = [bytes_attr(CKA_UNIQUE_ID, b"mine")];
    check_rv(
        "CKA_UNIQUE_ID in a template",
        call!(p, C_CopyObject(h, privh, t.as_ptr() as *mut _, 1, &mut 0)),
        CKR_ATTRIBUTE_READ_ONLY,
    );

    // Dates: kept as given, changed later, refused when malformed.
    let (yes, bits): (CK_BBOOL, CK_ULONG) = (b(true), 1024);
    let public = [attr(CKA_MODULUS_BITS, &bits), attr(CKA_VERIFY, &yes), bytes_attr(CKA_START_DATE, b"20260101")];
    let private = [
        attr(CKA_SIGN, &yes),
        bytes_attr(CKA_START_DATE, b"20260102"),
        bytes_attr(CKA_END_DATE, b"20271231"),
        attr(CKA_ALWAYS_AUTHENTICATE, &yes),
    ];
    let (pu, pr) = p.pair_with(h, &public, &private).expect("C_GenerateKeyPair");
    assert_eq!(p.get(h, pu, CKA_START_DATE).1, b"20260101");
    assert_eq!(p.get(h, pr, CKA_START_DATE).1, b"20260102");
    assert_eq!(p.get(h, pr, CKA_END_DATE).1, b"20271231");
    let t = [bytes_attr(CKA_END_DATE, b"20280101")];
    assert_eq!(call!(p, C_SetAttributeValue(h, pr, t.as_ptr() as *mut _, 1)), CKR_OK);
    assert_eq!(p.get(h, pr, CKA_END_DATE).1, b"20280101");
    let t = [bytes_attr(CKA_END_DATE, b"2028-1-1")];
    check_rv(
        "a malformed date",
        call!(p, C_SetAttributeValue(h, pr, t.as_ptr() as *mut _, 1)),
        CKR_ATTRIBUTE_VALUE_INVALID,
    );

    // CKA_ALWAYS_AUTHENTICATE: each signature needs the PIN again, after C_SignInit.
    let (rv, v) = p.get(h, pr, CKA_ALWAYS_AUTHENTICATE);
    assert_eq!((rv, v.len()), (CKR_OK, 1), "CKA_ALWAYS_AUTHENTICATE readable");
    assert_eq!(v, [1]);
    let no = b(false);
    let t = [attr(CKA_ALWAYS_AUTHENTICATE, &no)];
    check_rv(
        "turning CKA_ALWAYS_AUTHENTICATE off",
        call!(p, C_SetAttributeValue(h, pr, t.as_ptr() as *mut _, 1)),
        CKR_ATTRIBUTE_READ_ONLY,
    );
    check_rv(
        "a context login with nothing to authorise",
        p.login(h, CKU_CONTEXT_SPECIFIC, common::USER_PIN),
        CKR_OPERATION_NOT_INITIALIZED,
    );
    let mut m = mech(CKM_SHA256_RSA_PKCS);
    let mut sig = [0u8; 128];
    let sign = |p: &P11, sig: &mut [u8; 128]| {
        let mut len: CK_ULONG = 128;
        call!(p, C_Sign(h, b"x".as_ptr() as *mut u8, 1, sig.as_mut_ptr(), &mut len))
    };
    assert_eq!(call!(p, C_SignInit(h, &mut m, pr)), CKR_OK);
    check_rv("signing without the context login", sign(p, &mut sig), CKR_USER_NOT_LOGGED_IN);
    assert_eq!(call!(p, C_SignInit(h, &mut m, pr)), CKR_OK);
    check_rv("a wrong context PIN", p.login(h, CKU_CONTEXT_SPECIFIC, "9999"), CKR_PIN_INCORRECT);
    assert_eq!(p.login(h, CKU_CONTEXT_SPECIFIC, common::USER_PIN), CKR_OK);
    assert_eq!(sign(p, &mut sig), CKR_OK, "signs after the context login");
    assert_eq!(call!(p, C_SignInit(h, &mut m, pr)), CKR_OK);
    check_rv("the next signature owes its own login", sign(p, &mut sig), CKR_USER_NOT_LOGGED_IN);
    p.fin();
}

/// AES CBC-PAD in several parts: updates gather, the final call returns the whole result with the
/// size-query protocol; the result equals the single-part one (whose known answer the conformance
/// suite checks); the two forms do not mix.
/// Multi-part signing past the module's 256 MiB input limit: a hash-and-sign mechanism hashes as
/// the parts arrive (300 MiB signs, and the signature verifies over the digest with RustCrypto;
/// verification takes the same parts), HMAC and AES-CMAC run as the parts arrive (checked with
/// RustCrypto's HMAC and RFC 4493), while a mechanism that must gather its input (raw PKCS#1
/// v1.5) is refused at the limit.
fn long_messages(p: &P11) {
    use rsa::signature::hazmat::PrehashVerifier as _;
    p.init();
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    let (pubh, privh) = p.rsa_pair(h);
    let part: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let parts = 75; // 300 MiB
    let mut m = mech(CKM_SHA256_RSA_PKCS);
    assert_eq!(call!(p, C_SignInit(h, &mut m, privh)), CKR_OK);
    let mut digest = sha2::Sha256::new();
    for _ in 0..parts {
        assert_eq!(call!(p, C_SignUpdate(h, part.as_ptr() as *mut u8, part.len() as CK_ULONG)), CKR_OK);
        digest.update(&part);
    }
    let digest = digest.finalize();
    let mut sig = [0u8; 256];
    let mut len: CK_ULONG = 256;
    assert_eq!(call!(p, C_SignFinal(h, sig.as_mut_ptr(), &mut len)), CKR_OK);
    let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(p.public_key(h, pubh));
    let parsed = rsa::pkcs1v15::Signature::try_from(&sig[..]).expect("signature");
    vk.verify_prehash(&digest, &parsed).expect("the 300 MiB message's signature verifies with RustCrypto");
    assert_eq!(call!(p, C_VerifyInit(h, &mut m, pubh)), CKR_OK);
    for _ in 0..parts {
        assert_eq!(call!(p, C_VerifyUpdate(h, part.as_ptr() as *mut u8, part.len() as CK_ULONG)), CKR_OK);
    }
    assert_eq!(call!(p, C_VerifyFinal(h, sig.as_mut_ptr(), len)), CKR_OK);
    // HMAC runs as the parts arrive too: the 300 MiB message's tag matches RustCrypto's.
    let (class, yes) = (CKO_SECRET_KEY as CK_OBJECT_CLASS, b(true));
    let secret = [7u8; 32];
    let generic = CKK_GENERIC_SECRET as CK_KEY_TYPE;
    let t = [
        attr(CKA_CLASS, &class),
        attr(CKA_KEY_TYPE, &generic),
        bytes_attr(CKA_VALUE, &secret),
        attr(CKA_SIGN, &yes),
        attr(CKA_VERIFY, &yes),
    ];
    let mut key = 0;
    assert_eq!(call!(p, C_CreateObject(h, t.as_ptr() as *mut _, t.len() as CK_ULONG, &mut key)), CKR_OK);
    let mut hm = mech(CKM_SHA256_HMAC);
    assert_eq!(call!(p, C_SignInit(h, &mut hm, key)), CKR_OK);
    let mut expected = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(&secret).expect("key");
    for _ in 0..parts {
        assert_eq!(call!(p, C_SignUpdate(h, part.as_ptr() as *mut u8, part.len() as CK_ULONG)), CKR_OK);
        hmac::Mac::update(&mut expected, &part);
    }
    let mut tag = [0u8; 32];
    let mut tlen: CK_ULONG = 32;
    assert_eq!(call!(p, C_SignFinal(h, tag.as_mut_ptr(), &mut tlen)), CKR_OK);
    assert_eq!(&tag[..], &hmac::Mac::finalize(expected).into_bytes()[..], "RustCrypto's HMAC of the message");
    assert_eq!(call!(p, C_VerifyInit(h, &mut hm, key)), CKR_OK);
    for _ in 0..parts {
        assert_eq!(call!(p, C_VerifyUpdate(h, part.as_ptr() as *mut u8, part.len() as CK_ULONG)), CKR_OK);
    }
    tag[0] ^= 1;
    check_rv("a wrong tag", call!(p, C_VerifyFinal(h, tag.as_mut_ptr(), 32)), CKR_SIGNATURE_INVALID);
    // AES-CMAC in three parts: RFC 4493's fourth example.
    let cmac_key = hex_bytes("2b7e151628aed2a6abf7158809cf4f3c");
    let msg = hex_bytes(
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
    );
    let kt = CKK_AES as CK_KEY_TYPE;
    let t = [attr(CKA_CLASS, &class), attr(CKA_KEY_TYPE, &kt), bytes_attr(CKA_VALUE, &cmac_key), attr(CKA_SIGN, &yes)];
    assert_eq!(call!(p, C_CreateObject(h, t.as_ptr() as *mut _, t.len() as CK_ULONG, &mut key)), CKR_OK);
    let mut cmac = mech(CKM_AES_CMAC);
    assert_eq!(call!(p, C_SignInit(h, &mut cmac, key)), CKR_OK);
    for piece in [&msg[..7], &msg[7..40], &msg[40..]] {
        assert_eq!(call!(p, C_SignUpdate(h, piece.as_ptr() as *mut u8, piece.len() as CK_ULONG)), CKR_OK);
    }
    let mut tag = [0u8; 16];
    let mut tlen: CK_ULONG = 16;
    assert_eq!(call!(p, C_SignFinal(h, tag.as_mut_ptr(), &mut tlen)), CKR_OK);
    assert_eq!(tag.to_vec(), hex_bytes("51f0bebf7e3b9d92fc49741779363cfe"), "RFC 4493 example 4");
    // Raw RSA PKCS#1 v1.5 must gather its input: past 256 MiB the update is refused and the
    // operation ends.
    let mut raw = mech(CKM_RSA_PKCS);
    assert_eq!(call!(p, C_SignInit(h, &mut raw, privh)), CKR_OK);
    let mut refused = None;
    for i in 0..parts {
        let rv = call!(p, C_SignUpdate(h, part.as_ptr() as *mut u8, part.len() as CK_ULONG));
        if rv != CKR_OK {
            refused = Some((i, rv));
            break;
        }
    }
    assert_eq!(refused, Some((64, CKR_DATA_LEN_RANGE)), "refused at the 256 MiB limit");
    check_rv(
        "the refused update ended the operation",
        call!(p, C_SignFinal(h, sig.as_mut_ptr(), &mut len)),
        CKR_OPERATION_NOT_INITIALIZED,
    );
    p.fin();
}

fn aes_multipart(p: &P11) {
    p.init();
    let h = p.open(true);
    assert_eq!(p.login(h, CKU_USER, common::USER_PIN), CKR_OK);
    let class: CK_OBJECT_CLASS = CKO_SECRET_KEY;
    let kt: CK_KEY_TYPE = CKK_AES;
    let yes = b(true);
    let t = [
        attr(CKA_CLASS, &class),
        attr(CKA_KEY_TYPE, &kt),
        bytes_attr(CKA_VALUE, &[0x42u8; 32]),
        attr(CKA_ENCRYPT, &yes),
        attr(CKA_DECRYPT, &yes),
    ];
    let mut key = 0;
    assert_eq!(call!(p, C_CreateObject(h, t.as_ptr() as *mut _, t.len() as CK_ULONG, &mut key)), CKR_OK);
    let iv = [7u8; 16];
    let mut m = CK_MECHANISM { mechanism: CKM_AES_CBC_PAD, pParameter: iv.as_ptr() as *mut c_void, ulParameterLen: 16 };
    let mut data = *b"forty bytes of data for AES CBC-PAD....!";
    // Single-part, for reference.
    assert_eq!(call!(p, C_EncryptInit(h, &mut m, key)), CKR_OK);
    let mut single = [0u8; 64];
    let mut len: CK_ULONG = 64;
    assert_eq!(call!(p, C_Encrypt(h, data.as_mut_ptr(), 40, single.as_mut_ptr(), &mut len)), CKR_OK);
    assert_eq!(len, 48);
    // Multi-part: two updates (no output yet), a length query, then the result.
    assert_eq!(call!(p, C_EncryptInit(h, &mut m, key)), CKR_OK);
    let mut out = [0u8; 64];
    let mut olen: CK_ULONG = 64;
    assert_eq!(call!(p, C_EncryptUpdate(h, data.as_mut_ptr(), 17, out.as_mut_ptr(), &mut olen)), CKR_OK);
    assert_eq!(olen, 0);
    olen = 64;
    assert_eq!(call!(p, C_EncryptUpdate(h, data[17..].as_mut_ptr(), 23, out.as_mut_ptr(), &mut olen)), CKR_OK);
    let mut flen: CK_ULONG = 0;
    assert_eq!(call!(p, C_EncryptFinal(h, null_mut(), &mut flen)), CKR_OK);
    assert_eq!(flen, 48);
    assert_eq!(call!(p, C_EncryptFinal(h, out.as_mut_ptr(), &mut flen)), CKR_OK);
    assert_eq!(out[..48], single[..48], "several parts give the single-part result");
    // Decrypted in parts.
    assert_eq!(call!(p, C_DecryptInit(h, &mut m, key)), CKR_OK);
    let mut plain = [0u8; 64];
    let mut plen: CK_ULONG = 64;
    assert_eq!(call!(p, C_DecryptUpdate(h, out.as_mut_ptr(), 48, plain.as_mut_ptr(), &mut plen)), CKR_OK);
    plen = 64;
    assert_eq!(call!(p, C_DecryptFinal(h, plain.as_mut_ptr(), &mut plen)), CKR_OK);
    assert_eq!(&plain[..plen as usize], &data[..]);
    // The forms do not mix.
    assert_eq!(call!(p, C_EncryptInit(h, &mut m, key)), CKR_OK);
    olen = 64;
    assert_eq!(call!(p, C_EncryptUpdate(h, data.as_mut_ptr(), 16, out.as_mut_ptr(), &mut olen)), CKR_OK);
    len = 64;
    check_rv(
        "C_Encrypt after C_EncryptUpdate",
        call!(p, C_Encrypt(h, data.as_mut_ptr(), 16, out.as_mut_ptr(), &mut len)),
        CKR_OPERATION_ACTIVE,
    );
    // RSA stays single-part.
    let (pubh, _) = p.rsa_pair(h);
    let mut oaep = mech(CKM_RSA_PKCS_OAEP);
    assert_eq!(call!(p, C_EncryptInit(h, &mut oaep, pubh)), CKR_OK);
    olen = 64;
    check_rv(
        "C_EncryptUpdate with RSA",
        call!(p, C_EncryptUpdate(h, data.as_mut_ptr(), 4, out.as_mut_ptr(), &mut olen)),
        CKR_MECHANISM_INVALID,
    );
    p.fin();
}

/// A named check.
type Check = (&'static str, fn(&P11));

fn main() -> ExitCode {
    common::with_throwaway_conf(|| {
        let p = load();
        let checks: &[Check] = &[
            ("calls before C_Initialize", before_initialize),
            ("C_Initialize arguments and double initialisation", initialize_arguments),
            ("token set-up", |p| {
                p.init();
                // A slot's folder is made by C_InitToken, not by loading the module.
                assert!(!common::kmdata_of(0).exists(), "C_Initialize made the slot's kmdata folder");
                assert!(!common::kmdata_of(7).exists(), "C_Initialize made the second slot's kmdata folder");
                let pkcs11_slot = 0;
                let label = format!("{:<32}", common::LABEL);
                let so = common::SO_PIN;
                let rv = call!(
                    p,
                    C_InitToken(pkcs11_slot, so.as_ptr() as *mut u8, so.len() as CK_ULONG, label.as_ptr() as *mut u8)
                );
                assert_eq!(rv, CKR_OK);
                assert!(
                    common::kmdata_of(0).join("world").exists() || common::kmdata_of(0).join("local/world").exists()
                );
                let h = p.open(true);
                assert_eq!(p.login(h, CKU_SO, so), CKR_OK);
                let pin = common::USER_PIN;
                assert_eq!(call!(p, C_InitPIN(h, pin.as_ptr() as *mut u8, pin.len() as CK_ULONG)), CKR_OK);
                let rv = call!(
                    p,
                    C_InitToken(pkcs11_slot, so.as_ptr() as *mut u8, so.len() as CK_ULONG, label.as_ptr() as *mut u8)
                );
                check_rv("C_InitToken with a session open", rv, CKR_SESSION_EXISTS);
                p.fin();
            }),
            ("null arguments", null_arguments),
            ("bad handles and finalized sessions", bad_handles),
            ("buffer too small, then right", short_buffers),
            ("operation state after errors", operation_state),
            ("multi-part signing past the input limit", long_messages),
            ("login state machine", login_state_machine),
            ("C_SetPIN", set_pin),
            ("parallel wrong PINs", parallel_wrong_pins),
            ("the public half of a pair", public_half),
            ("CKA_TRUSTED by the security officer only", trusted_by_the_officer_only),
            ("v3.0 interfaces", interfaces),
            ("attribute rules", attribute_rules),
            ("the CLI and the module share keys", cli_and_module_share_keys),
            ("a CLI world with a 2-of-3 quorum in a second slot", cli_world_in_second_slot),
            ("C_InitToken on an initialised token", reinitialise),
            ("the specification's details", spec_details),
            ("data objects and certificates", stored_objects),
            ("public objects where the template asks", public_objects),
            ("unique ids, dates and CKA_ALWAYS_AUTHENTICATE", key_details),
            ("AES in several parts", aes_multipart),
        ];
        let mut ok = true;
        for (name, check) in checks {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&p)));
            println!("{} {name}", if r.is_ok() { "ok  " } else { "FAIL" });
            if r.is_err() {
                ok = false;
                // Leave the library finalised for the next check.
                let _ = call!(p, C_Finalize(null_mut()));
            }
        }
        if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    })
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}
