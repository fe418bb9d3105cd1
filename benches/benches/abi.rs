//! What the layers under the seam cost, per call, on each PKCS#11 module of the run
//! (`libhsmkit_pkcs11.so`, SoftHSM2, `HSMKIT_BENCH_MODULE`):
//!
//! - the ABI: `C_GetSessionInfo` through the module's function list, against an empty C
//!   function called through a pointer the same way (the floor of any call);
//! - the seam: RSA-2048 `C_SignInit` + `C_Sign` made raw through `cryptoki-sys`, against
//!   `Session::sign` of `pkcs11-client` (cryptoki, the error and handle mapping) on the same
//!   session and key.
//!
//! Run: `cargo bench -p hsmkit-benches --bench abi`. In the test command each function runs once.
//! With `HSMKIT_ABI_JSON=FILE`, the interleaved figures are also written to FILE (for
//! `scripts/bench.sh`).
#![allow(missing_docs, unsafe_code)]

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::Criterion;
use cryptoki_sys as ck;
use hsmkit_backend::{HashAlg, KeyPairSpec, KeyPolicy, Mechanism, Session, SessionMode, Usage, UserKind};

/// A module's function list, loaded beside the backend's (the same library, so the same
/// initialised state).
struct Raw {
    _lib: libloading::Library,
    f: &'static ck::CK_FUNCTION_LIST,
}

impl Raw {
    fn load(path: &Path) -> Raw {
        // SAFETY: the library is a PKCS#11 module the backend already loaded and initialised;
        // C_GetFunctionList has this signature in every module, and its list is static.
        unsafe {
            let lib = libloading::Library::new(path).expect("load");
            let get: libloading::Symbol<'_, unsafe extern "C" fn(*mut *mut ck::CK_FUNCTION_LIST) -> ck::CK_RV> =
                lib.get(b"C_GetFunctionList").expect("C_GetFunctionList");
            let mut f = std::ptr::null_mut();
            assert_eq!(get(&mut f), ck::CKR_OK);
            let f = &*f;
            Raw { _lib: lib, f }
        }
    }

    fn session_info(&self, session: ck::CK_SESSION_HANDLE) -> ck::CK_RV {
        let mut info: ck::CK_SESSION_INFO = ck::CK_SESSION_INFO { slotID: 0, state: 0, flags: 0, ulDeviceError: 0 };
        // SAFETY: a live session handle and an output struct of the right type.
        unsafe { (self.f.C_GetSessionInfo.expect("C_GetSessionInfo"))(session, &mut info) }
    }

    fn sign(&self, session: ck::CK_SESSION_HANDLE, key: ck::CK_OBJECT_HANDLE, data: &[u8], sig: &mut [u8]) {
        let mut mech = ck::CK_MECHANISM {
            mechanism: ck::CKM_SHA256_RSA_PKCS,
            pParameter: std::ptr::null_mut(),
            ulParameterLen: 0,
        };
        let mut len = sig.len() as ck::CK_ULONG;
        // SAFETY: pointers and lengths describe live buffers for the duration of the calls.
        unsafe {
            assert_eq!((self.f.C_SignInit.expect("C_SignInit"))(session, &mut mech, key), ck::CKR_OK);
            let rv = (self.f.C_Sign.expect("C_Sign"))(
                session,
                data.as_ptr().cast_mut(),
                data.len() as ck::CK_ULONG,
                sig.as_mut_ptr(),
                &mut len,
            );
            assert_eq!(rv, ck::CKR_OK);
        }
    }
}

/// The empty call: what calling any C function through a pointer costs here.
extern "C" fn empty(_session: ck::CK_SESSION_HANDLE, _info: *mut ck::CK_SESSION_INFO) -> ck::CK_RV {
    ck::CKR_OK
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    common::bench_dir();
    let modules = common::modules();
    let mut c = Criterion::default().configure_from_args();
    let msg = hsmkit_benches::ops::MESSAGE;
    let mech = Mechanism::RsaPkcs1v15 { hash: HashAlg::Sha256 };
    let calls: u32 = if common::measuring() { 1_000_000 } else { 100 };
    let rounds = if common::measuring() { 1000 } else { 3 };

    let call_empty: extern "C" fn(ck::CK_SESSION_HANDLE, *mut ck::CK_SESSION_INFO) -> ck::CK_RV = black_box(empty);
    let per_call = |f: &dyn Fn() -> ck::CK_RV| {
        let t = Instant::now();
        for _ in 0..calls {
            assert_eq!(black_box(f()), ck::CKR_OK);
        }
        t.elapsed() / calls
    };
    // The same work around the call as `Raw::session_info`: an output struct on the stack.
    let empty_call = || {
        let mut info = ck::CK_SESSION_INFO { slotID: 0, state: 0, flags: 0, ulDeviceError: 0 };
        call_empty(black_box(1), &mut info)
    };
    let floor = per_call(&empty_call);
    let mut figures = serde_json::json!({ "empty_call_ns": floor.as_nanos() as u64, "modules": {} });
    println!("empty C call through a pointer: {floor:?}");
    c.bench_function("abi/empty C call", |b| b.iter(empty_call));

    for m in &modules {
        let path = m.path.as_deref().expect("a module");
        let raw = Raw::load(path);
        let s = m.backend.session(SessionMode::ReadWrite).expect("session");
        if let Some(pin) = &m.user {
            s.login(UserKind::User, pin).expect("login");
        }
        let handle = s.raw_handle();
        let info = per_call(&|| raw.session_info(black_box(handle)));
        println!(
            "{}: C_GetSessionInfo {info:?} a call, {:.0} ns above the empty call (target: under 1 µs)",
            m.name,
            info.as_nanos() as f64 - floor.as_nanos() as f64
        );
        c.bench_function(&format!("abi/C_GetSessionInfo/{}", m.name), |b| {
            b.iter(|| raw.session_info(black_box(handle)))
        });

        // The seam's cost: the same signature raw and through pkcs11-client, interleaved.
        let mut p = KeyPolicy::new(Usage::SIGN | Usage::VERIFY);
        p.token = false;
        let (public, key) =
            s.generate_key_pair(&KeyPairSpec::Rsa { bits: 2048, public_exponent: 65537 }, &p).expect("key");
        let mut sig = vec![0u8; 256];
        raw.sign(handle, key.0, msg, &mut sig);
        assert_eq!(s.sign(&mech, key, msg).expect("sign"), sig, "both paths make the same signature");
        let (mut t_raw, mut t_seam) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            raw.sign(handle, key.0, black_box(msg), &mut sig);
            t_raw.push(t.elapsed());
            let t = Instant::now();
            black_box(s.sign(&mech, key, black_box(msg)).expect("sign"));
            t_seam.push(t.elapsed());
        }
        let (m_raw, m_seam) = (median(t_raw), median(t_seam));
        println!(
            "{}: RSA-2048 sign, {rounds} interleaved rounds: raw cryptoki-sys {m_raw:?}, pkcs11-client {m_seam:?}: \
             the seam adds {:+.2}%",
            m.name,
            (m_seam.as_secs_f64() / m_raw.as_secs_f64() - 1.0) * 100.0
        );
        let mut g = c.benchmark_group(format!("seam/rsa2048-sign/{}", m.name));
        g.bench_function("raw C_SignInit + C_Sign", |b| b.iter(|| raw.sign(handle, key.0, black_box(msg), &mut sig)));
        g.bench_function("pkcs11-client Session::sign", |b| {
            b.iter(|| black_box(s.sign(&mech, key, black_box(msg)).expect("sign")))
        });
        g.finish();
        figures["modules"][m.name.as_str()] = serde_json::json!({
            "C_GetSessionInfo_ns": info.as_nanos() as u64,
            "sign_raw_median_ns": m_raw.as_nanos() as u64,
            "sign_seam_median_ns": m_seam.as_nanos() as u64,
        });
        s.destroy(key).expect("destroy");
        s.destroy(public).expect("destroy");
    }
    c.final_summary();
    if let Some(path) = std::env::var_os("HSMKIT_ABI_JSON") {
        std::fs::write(&path, serde_json::to_string_pretty(&figures).expect("JSON")).expect("write the figures");
    }
}
