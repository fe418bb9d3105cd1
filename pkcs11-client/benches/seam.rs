//! What the seam costs on SoftHSM2: RSA-2048 PKCS#1 v1.5 SHA-256 signing through
//! `Pkcs11Session::sign` (cryptoki, the hsmkit error and handle mapping) against the same
//! `C_SignInit` + `C_Sign` made raw through `cryptoki-sys`, on the same session and key.
//!
//! Run: `cargo bench -p hsmkit-pkcs11-client --bench seam` (SoftHSM2 installed; a throwaway token
//! is made when `SOFTHSM2_CONF` is not set).
#![allow(missing_docs, unsafe_code)]

mod common;

use std::hint::black_box;

use criterion::Criterion;
use cryptoki_sys as ck;
use hsmkit_backend::{HashAlg, KeyPairSpec, KeyPolicy, Mechanism, Pin, Session, SessionMode, Usage, UserKind};
use hsmkit_pkcs11_client::{Pkcs11Backend, TokenChoice};

const LIB: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The raw function list of the module, loaded beside cryptoki's (the same library, so the same
/// initialised state).
struct Raw {
    _lib: libloading::Library,
    f: *const ck::CK_FUNCTION_LIST,
}

impl Raw {
    fn load() -> Raw {
        // SAFETY: loading the same PKCS#11 library the backend already loaded; its initialisers ran.
        let lib = unsafe { libloading::Library::new(LIB) }.expect("load");
        let mut f: *mut ck::CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: C_GetFunctionList has this signature in every PKCS#11 module.
        let rv = unsafe {
            let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut ck::CK_FUNCTION_LIST) -> ck::CK_RV> =
                lib.get(b"C_GetFunctionList").expect("C_GetFunctionList");
            get(&mut f)
        };
        assert_eq!(rv, ck::CKR_OK);
        Raw { _lib: lib, f }
    }

    fn sign(&self, session: ck::CK_SESSION_HANDLE, key: ck::CK_OBJECT_HANDLE, data: &[u8], sig: &mut [u8]) {
        let mut mech = ck::CK_MECHANISM {
            mechanism: ck::CKM_SHA256_RSA_PKCS,
            pParameter: std::ptr::null_mut(),
            ulParameterLen: 0,
        };
        let mut len = sig.len() as ck::CK_ULONG;
        // SAFETY: the function list outlives the call; pointers and lengths describe live buffers.
        unsafe {
            let f = &*self.f;
            let rv = (f.C_SignInit.expect("C_SignInit"))(session, &mut mech, key);
            assert_eq!(rv, ck::CKR_OK);
            let rv = (f.C_Sign.expect("C_Sign"))(
                session,
                data.as_ptr() as *mut u8,
                data.len() as ck::CK_ULONG,
                sig.as_mut_ptr(),
                &mut len,
            );
            assert_eq!(rv, ck::CKR_OK);
        }
    }
}

fn bench(c: &mut Criterion) {
    let backend = Pkcs11Backend::open(LIB, TokenChoice::Label("hsmkit-bench".into())).expect("SoftHSM2 token");
    let s = backend.session(SessionMode::ReadWrite).expect("session");
    s.login(UserKind::User, &Pin::from("1234".to_string())).expect("login");
    let mut p = KeyPolicy::new(Usage::SIGN | Usage::VERIFY);
    p.token = false;
    let (_, key) = s.generate_key_pair(&KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 }, &p).expect("key");
    let raw = Raw::load();
    let mech = Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 };
    let msg = b"the tenant key signs this";
    let mut sig = vec![0u8; 256];
    raw.sign(s.raw_handle(), key.0, msg, &mut sig);
    assert_eq!(s.sign(&mech, key, msg).expect("sign"), sig, "both paths make the same signature");

    let rounds = if std::env::args().any(|a| a == "--bench") { 1000 } else { 3 };
    let (mut t_raw, mut t_seam) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        raw.sign(s.raw_handle(), key.0, black_box(msg), &mut sig);
        t_raw.push(t.elapsed());
        let t = std::time::Instant::now();
        black_box(s.sign(&mech, key, black_box(msg)).expect("sign"));
        t_seam.push(t.elapsed());
    }
    t_raw.sort();
    t_seam.sort();
    let (m_raw, m_seam) = (t_raw[rounds / 2], t_seam[rounds / 2]);
    println!(
        "interleaved, {rounds} rounds: raw cryptoki-sys median {m_raw:?}, pkcs11-client median {m_seam:?}: \
         the seam adds {:+.2}% (target < 3%)",
        (m_seam.as_secs_f64() / m_raw.as_secs_f64() - 1.0) * 100.0
    );

    let mut g = c.benchmark_group("softhsm2_rsa2048_pkcs1v15_sha256_sign");
    g.bench_function("raw cryptoki-sys C_SignInit + C_Sign", |b| {
        b.iter(|| raw.sign(s.raw_handle(), key.0, black_box(msg), &mut sig))
    });
    g.bench_function("pkcs11-client Session::sign", |b| {
        b.iter(|| black_box(s.sign(&mech, key, black_box(msg)).expect("sign")))
    });
    g.finish();
}

fn main() {
    common::run("hsmkit-bench", bench);
}
