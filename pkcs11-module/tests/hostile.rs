//! Hostile input through the C ABI: thousands of random templates and mechanism parameters (a
//! seeded generator, so a failure repeats) thrown at the object, key and crypto functions. Every
//! call must come back with a return code the specification allows for bad input; none may panic
//! inside the module (which the shim would turn into `CKR_GENERAL_ERROR`) or crash the process.
#![allow(unsafe_code)]

mod common;

use std::ffi::c_void;
use std::process::ExitCode;
use std::ptr::null_mut;

use cryptoki_sys::*;
use rand_core::{Rng as _, SeedableRng as _};

const ROUNDS: usize = 1500;

/// Attribute types the generator draws from: real ones of every kind, read-only ones and nonsense.
const TYPES: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_CLASS,
    CKA_KEY_TYPE,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_LABEL,
    CKA_ID,
    CKA_VALUE,
    CKA_VALUE_LEN,
    CKA_SENSITIVE,
    CKA_EXTRACTABLE,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_DERIVE,
    CKA_MODULUS,
    CKA_MODULUS_BITS,
    CKA_PUBLIC_EXPONENT,
    CKA_PRIVATE_EXPONENT,
    CKA_PRIME_1,
    CKA_PRIME_2,
    CKA_ALLOWED_MECHANISMS,
    CKA_WRAP_WITH_TRUSTED,
    CKA_TRUSTED,
    CKA_LOCAL,
    CKA_ALWAYS_SENSITIVE,
    CKA_MODIFIABLE,
    CKA_START_DATE,
    0xdead_beef,
    CKA_VENDOR_DEFINED | 7,
];

/// Values worth trying for a type: booleans, CK_ULONGs of meaningful and silly values, bytes.
fn value(rng: &mut rand_chacha::ChaCha8Rng, ty: CK_ATTRIBUTE_TYPE) -> Vec<u8> {
    let ulongs: [CK_ULONG; 10] = [0, 1, 2, 3, 4, 16, 32, 2048, CKO_SECRET_KEY, CK_ULONG::MAX];
    match rng.next_u32() % 4 {
        0 => vec![(rng.next_u32() % 3) as u8],
        1 => ulongs[(rng.next_u32() % 10) as usize].to_ne_bytes().to_vec(),
        2 if ty == CKA_CLASS || ty == CKA_KEY_TYPE => {
            let v = [CKO_SECRET_KEY, CKO_PUBLIC_KEY, CKO_PRIVATE_KEY, CKK_AES, CKK_RSA, CKK_GENERIC_SECRET, 0x77];
            v[(rng.next_u32() % 7) as usize].to_ne_bytes().to_vec()
        }
        _ => {
            let mut v = vec![0u8; (rng.next_u32() % 70) as usize];
            rng.fill_bytes(&mut v);
            v
        }
    }
}

/// The codes bad input may give. `CKR_GENERAL_ERROR` (a caught panic) and `CKR_DEVICE_ERROR` are not
/// among them.
fn allowed(rv: CK_RV) -> bool {
    matches!(
        rv,
        CKR_OK
            | CKR_ARGUMENTS_BAD
            | CKR_ATTRIBUTE_READ_ONLY
            | CKR_ATTRIBUTE_TYPE_INVALID
            | CKR_ATTRIBUTE_VALUE_INVALID
            | CKR_ATTRIBUTE_SENSITIVE
            | CKR_BUFFER_TOO_SMALL
            | CKR_TEMPLATE_INCOMPLETE
            | CKR_TEMPLATE_INCONSISTENT
            | CKR_MECHANISM_INVALID
            | CKR_MECHANISM_PARAM_INVALID
            | CKR_KEY_SIZE_RANGE
            | CKR_KEY_TYPE_INCONSISTENT
            | CKR_KEY_FUNCTION_NOT_PERMITTED
            | CKR_KEY_HANDLE_INVALID
            | CKR_KEY_UNEXTRACTABLE
            | CKR_KEY_NOT_WRAPPABLE
            | CKR_WRAPPING_KEY_TYPE_INCONSISTENT
            | CKR_OBJECT_HANDLE_INVALID
            | CKR_OPERATION_ACTIVE
            | CKR_ACTION_PROHIBITED
            | CKR_SESSION_READ_ONLY
            | CKR_DATA_LEN_RANGE
            | CKR_WRAPPED_KEY_INVALID
            | CKR_WRAPPED_KEY_LEN_RANGE
            | CKR_ENCRYPTED_DATA_INVALID
            | CKR_SIGNATURE_INVALID
            | CKR_SIGNATURE_LEN_RANGE
    )
}

struct Template {
    attrs: Vec<CK_ATTRIBUTE>,
    _values: Vec<Vec<u8>>,
}

fn template(rng: &mut rand_chacha::ChaCha8Rng) -> Template {
    let n = (rng.next_u32() % 8) as usize;
    let mut values = Vec::new();
    let mut types = Vec::new();
    for _ in 0..n {
        let ty = TYPES[(rng.next_u32() as usize) % TYPES.len()];
        values.push(value(rng, ty));
        types.push(ty);
    }
    let attrs = types
        .iter()
        .zip(&values)
        .map(|(t, v)| CK_ATTRIBUTE { type_: *t, pValue: v.as_ptr() as *mut c_void, ulValueLen: v.len() as CK_ULONG })
        .collect();
    Template { attrs, _values: values }
}

fn main() -> ExitCode {
    common::with_throwaway_conf(|| {
        // SAFETY: the module built by this package.
        let lib = unsafe { libloading::Library::new(common::module_path()) }.expect("dlopen");
        let f: &CK_FUNCTION_LIST = unsafe {
            let get: libloading::Symbol<'_, unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
                lib.get(b"C_GetFunctionList").expect("symbol");
            let mut l = null_mut();
            assert_eq!(get(&mut l), CKR_OK);
            &*l
        };
        macro_rules! call {
            ($name:ident($($a:expr),*)) => { unsafe { (f.$name.expect(stringify!($name)))($($a),*) } };
        }
        assert_eq!(call!(C_Initialize(null_mut())), CKR_OK);
        let (so, user) = (common::SO_PIN, common::USER_PIN);
        let label = format!("{:<32}", common::LABEL);
        assert_eq!(call!(C_InitToken(0, so.as_ptr() as *mut u8, 4, label.as_ptr() as *mut u8)), CKR_OK);
        let mut h = 0;
        assert_eq!(call!(C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, null_mut(), None, &mut h)), CKR_OK);
        assert_eq!(call!(C_Login(h, CKU_SO, so.as_ptr() as *mut u8, 4)), CKR_OK);
        assert_eq!(call!(C_InitPIN(h, user.as_ptr() as *mut u8, 4)), CKR_OK);
        assert_eq!(call!(C_Logout(h)), CKR_OK);
        assert_eq!(call!(C_Login(h, CKU_USER, user.as_ptr() as *mut u8, 4)), CKR_OK);

        // A real AES key and RSA pair to aim random calls at.
        let len: CK_ULONG = 32;
        let yes: CK_BBOOL = 1;
        let aes_t = [
            CK_ATTRIBUTE { type_: CKA_VALUE_LEN, pValue: &len as *const _ as *mut c_void, ulValueLen: 8 },
            CK_ATTRIBUTE { type_: CKA_EXTRACTABLE, pValue: &yes as *const _ as *mut c_void, ulValueLen: 1 },
        ];
        let mut aes = 0;
        let mut m = CK_MECHANISM { mechanism: CKM_AES_KEY_GEN, pParameter: null_mut(), ulParameterLen: 0 };
        assert_eq!(call!(C_GenerateKey(h, &mut m, aes_t.as_ptr() as *mut _, 2, &mut aes)), CKR_OK);

        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
        let mut bad = Vec::new();
        let mut seen = std::collections::BTreeMap::<CK_RV, usize>::new();
        let mut note = |what: &str, i: usize, rv: CK_RV| {
            *seen.entry(rv).or_default() += 1;
            if !allowed(rv) {
                bad.push(format!("round {i}: {what} returned 0x{rv:x}"));
            }
        };
        let mechs = [
            CKM_AES_KEY_GEN,
            CKM_GENERIC_SECRET_KEY_GEN,
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            CKM_SHA256_RSA_PKCS_PSS,
            CKM_RSA_PKCS_OAEP,
            CKM_AES_KEY_WRAP,
            CKM_AES_KEY_WRAP_KWP,
            CKM_RSA_AES_KEY_WRAP,
            CKM_SHA256,
            0x8000_1234,
        ];
        for i in 0..ROUNDS {
            let t = template(&mut rng);
            let (tp, tn) = (t.attrs.as_ptr() as *mut CK_ATTRIBUTE, t.attrs.len() as CK_ULONG);
            let mut o = 0;
            let rv = call!(C_CreateObject(h, tp, tn, &mut o));
            note("C_CreateObject", i, rv);
            if rv == CKR_OK {
                note("C_DestroyObject", i, call!(C_DestroyObject(h, o)));
            }
            // Random mechanisms with random parameter bytes (no pointers inside: a parameter
            // structure with a pointer is the caller's to get right).
            let mech = mechs[(rng.next_u32() as usize) % mechs.len()];
            let mut param = vec![0u8; [0usize, 4, 8, 24, 40][(rng.next_u32() % 5) as usize]];
            rng.fill_bytes(&mut param);
            let oaep_like = matches!(mech, CKM_RSA_PKCS_OAEP | CKM_RSA_AES_KEY_WRAP);
            let mut m = CK_MECHANISM {
                mechanism: mech,
                pParameter: if param.is_empty() || oaep_like { null_mut() } else { param.as_mut_ptr() as *mut c_void },
                ulParameterLen: if oaep_like { 0 } else { param.len() as CK_ULONG },
            };
            if mech == CKM_AES_KEY_GEN || mech == CKM_GENERIC_SECRET_KEY_GEN {
                let rv = call!(C_GenerateKey(h, &mut m, tp, tn, &mut o));
                note("C_GenerateKey", i, rv);
                if rv == CKR_OK {
                    note("C_DestroyObject", i, call!(C_DestroyObject(h, o)));
                }
            } else if mech == CKM_SHA256 {
                note("C_DigestInit", i, call!(C_DigestInit(h, &mut m)));
                let mut out = [0u8; 64];
                let mut olen: CK_ULONG = (rng.next_u32() % 70) as CK_ULONG;
                let rv = call!(C_Digest(h, param.as_mut_ptr(), param.len() as CK_ULONG, out.as_mut_ptr(), &mut olen));
                note("C_Digest", i, if rv == CKR_OPERATION_NOT_INITIALIZED { CKR_OK } else { rv });
                let _ = call!(C_DigestFinal(h, out.as_mut_ptr(), &mut olen));
            } else {
                let mut out = vec![0u8; (rng.next_u32() % 600) as usize];
                let mut olen = out.len() as CK_ULONG;
                let rv = call!(C_WrapKey(h, &mut m, aes, aes, out.as_mut_ptr(), &mut olen));
                note("C_WrapKey", i, rv);
                let mut u = 0;
                let rv =
                    call!(C_UnwrapKey(h, &mut m, aes, param.as_mut_ptr(), param.len() as CK_ULONG, tp, tn, &mut u));
                note("C_UnwrapKey", i, rv);
            }
            note("C_FindObjectsInit", i, call!(C_FindObjectsInit(h, tp, tn)));
            let _ = call!(C_FindObjectsFinal(h));
            // Random attribute reads (with short buffers) and writes on the real key.
            let mut buf = vec![0u8; (rng.next_u32() % 16) as usize];
            let mut read = [CK_ATTRIBUTE {
                type_: TYPES[(rng.next_u32() as usize) % TYPES.len()],
                pValue: if buf.is_empty() { null_mut() } else { buf.as_mut_ptr() as *mut c_void },
                ulValueLen: buf.len() as CK_ULONG,
            }];
            note("C_GetAttributeValue", i, call!(C_GetAttributeValue(h, aes, read.as_mut_ptr(), 1)));
            note("C_SetAttributeValue", i, call!(C_SetAttributeValue(h, aes, tp, tn)));
        }
        // Claimed counts and lengths no real buffer could hold: refused at once, before anything is
        // read, copied or allocated (a template count of 2^32 used to be read entry by entry; a
        // length of isize::MAX used to abort the process).
        let huge = isize::MAX as CK_ULONG;
        let mut claims = Vec::new();
        let one = [CK_ATTRIBUTE { type_: CKA_VALUE_LEN, pValue: &len as *const _ as *mut c_void, ulValueLen: 8 }];
        let mut o = 0;
        let tp = one.as_ptr() as *mut CK_ATTRIBUTE;
        claims.push((
            "C_CreateObject, 2^32 attributes",
            call!(C_CreateObject(h, tp, 1 << 32, &mut o)),
            CKR_ARGUMENTS_BAD,
        ));
        claims.push((
            "C_FindObjectsInit, 2^32 attributes",
            call!(C_FindObjectsInit(h, tp, 1 << 32)),
            CKR_ARGUMENTS_BAD,
        ));
        let mut read = [CK_ATTRIBUTE { type_: CKA_LABEL, pValue: null_mut(), ulValueLen: 0 }];
        claims.push((
            "C_GetAttributeValue, 2^32 attributes",
            call!(C_GetAttributeValue(h, aes, read.as_mut_ptr(), 1 << 32)),
            CKR_ARGUMENTS_BAD,
        ));
        let class: CK_OBJECT_CLASS = CKO_SECRET_KEY;
        let long = [
            CK_ATTRIBUTE { type_: CKA_CLASS, pValue: &class as *const _ as *mut c_void, ulValueLen: 8 },
            CK_ATTRIBUTE { type_: CKA_VALUE, pValue: &len as *const _ as *mut c_void, ulValueLen: huge },
        ];
        claims.push((
            "C_CreateObject, a value of isize::MAX bytes",
            call!(C_CreateObject(h, long.as_ptr() as *mut _, 2, &mut o)),
            CKR_ATTRIBUTE_VALUE_INVALID,
        ));
        let mut data = *b"abc";
        let mut out = [0u8; 64];
        let mut sha = CK_MECHANISM { mechanism: CKM_SHA256, pParameter: null_mut(), ulParameterLen: 0 };
        assert_eq!(call!(C_DigestInit(h, &mut sha)), CKR_OK);
        let mut olen: CK_ULONG = 64;
        claims.push((
            "C_Digest of isize::MAX bytes",
            call!(C_Digest(h, data.as_mut_ptr(), huge, out.as_mut_ptr(), &mut olen)),
            CKR_ARGUMENTS_BAD,
        ));
        assert_eq!(call!(C_DigestInit(h, &mut sha)), CKR_OK);
        claims.push((
            "C_DigestUpdate of isize::MAX bytes",
            call!(C_DigestUpdate(h, data.as_mut_ptr(), huge)),
            CKR_ARGUMENTS_BAD,
        ));
        assert_eq!(call!(C_DigestInit(h, &mut sha)), CKR_OK);
        // An output buffer claimed larger than it is: only the digest's 32 bytes are written.
        let mut olen = huge;
        claims.push((
            "C_Digest into a claimed isize::MAX buffer",
            call!(C_Digest(h, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut olen)),
            CKR_OK,
        ));
        assert_eq!(olen, 32);
        let mut label = [0u8; 4];
        let mut oaep = CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: CKM_SHA_1,
            mgf: CKG_MGF1_SHA1,
            source: CKZ_DATA_SPECIFIED,
            pSourceData: label.as_mut_ptr() as *mut c_void,
            ulSourceDataLen: huge,
        };
        let mut m = CK_MECHANISM {
            mechanism: CKM_RSA_PKCS_OAEP,
            pParameter: &mut oaep as *mut _ as *mut c_void,
            ulParameterLen: size_of::<CK_RSA_PKCS_OAEP_PARAMS>() as CK_ULONG,
        };
        claims.push((
            "an OAEP label of isize::MAX bytes",
            call!(C_EncryptInit(h, &mut m, aes)),
            CKR_MECHANISM_PARAM_INVALID,
        ));
        for (what, got, want) in claims {
            if got == want {
                println!("ok   {what}: 0x{got:x}");
            } else {
                bad.push(format!("{what}: 0x{got:x}, expected 0x{want:x}"));
            }
        }
        assert_eq!(call!(C_Finalize(null_mut())), CKR_OK);
        println!("{ROUNDS} rounds of hostile templates and parameters; return codes seen: {seen:x?}");
        for b in &bad {
            println!("  NOT ALLOWED {b}");
        }
        if bad.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    })
}
