//! Faults planted under the C ABI, for the self-test's ABI level: a function list that forwards to
//! a module's own and misbehaves in one named way, as a module with that bug would (an operation
//! kept after an error, a size query that ends the operation, a wrong return code, …). The ABI
//! cases must catch each.
//!
//! The layer's functions are plain C functions, so the fault and the module under it are held in
//! statics: one layer is planted at a time, and [`abi_self_test`] holds a lock while it runs.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use cryptoki_sys as ck;

use crate::abi::{AbiCtx, Module};

use crate::{Body, Case, Target};

/// A fault planted under the C ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiFault {
    /// `C_Sign` keeps its operation after it fails (other than `CKR_BUFFER_TOO_SMALL`).
    ErrorKeepsOperation,
    /// `C_Sign` with a NULL buffer (the size query) ends the operation.
    SizeQueryEndsOperation,
    /// `C_Sign` into a short buffer ends the operation.
    ShortBufferEndsOperation,
    /// A second `C_SignInit` while one is active is `CKR_OK`.
    SecondInitAccepted,
    /// `C_GetSessionInfo` before `C_Initialize` is `CKR_SESSION_HANDLE_INVALID`.
    NoInitCheck,
    /// `C_CloseSession` of a handle that names no session is `CKR_GENERAL_ERROR`.
    BadHandleGeneralError,
    /// `C_GetAttributeValue` leaves a refused attribute's length at 0, not
    /// `CK_UNAVAILABLE_INFORMATION`.
    UnavailableNotMarked,
    /// `C_FindObjects` without `C_FindObjectsInit` is `CKR_OK` with nothing found.
    FindWithoutInit,
    /// `C_GetSlotList`'s size query counts one slot too many.
    SlotListOvercount,
}

impl AbiFault {
    /// Every ABI fault.
    pub const ALL: &'static [AbiFault] = &[
        AbiFault::ErrorKeepsOperation,
        AbiFault::SizeQueryEndsOperation,
        AbiFault::ShortBufferEndsOperation,
        AbiFault::SecondInitAccepted,
        AbiFault::NoInitCheck,
        AbiFault::BadHandleGeneralError,
        AbiFault::UnavailableNotMarked,
        AbiFault::FindWithoutInit,
        AbiFault::SlotListOvercount,
    ];

    /// The fault's name in the self-test's report.
    pub fn name(self) -> &'static str {
        match self {
            AbiFault::ErrorKeepsOperation => "abi-error-keeps-operation",
            AbiFault::SizeQueryEndsOperation => "abi-size-query-ends-operation",
            AbiFault::ShortBufferEndsOperation => "abi-short-buffer-ends-operation",
            AbiFault::SecondInitAccepted => "abi-second-init-accepted",
            AbiFault::NoInitCheck => "abi-no-init-check",
            AbiFault::BadHandleGeneralError => "abi-bad-handle-general-error",
            AbiFault::UnavailableNotMarked => "abi-unavailable-not-marked",
            AbiFault::FindWithoutInit => "abi-find-without-init",
            AbiFault::SlotListOvercount => "abi-slot-list-overcount",
        }
    }
}

/// The module under the layer.
static INNER: AtomicPtr<ck::CK_FUNCTION_LIST> = AtomicPtr::new(null_mut());
/// The planted fault: an index into [`AbiFault::ALL`].
static FAULT: AtomicUsize = AtomicUsize::new(0);
/// One layer at a time.
static PLANTED: Mutex<()> = Mutex::new(());

/// What the layer remembers of the sessions: the signing operations active now (their mechanism,
/// without parameters, and key), and the sessions whose operation a failed call "kept".
#[derive(Default)]
struct Kept {
    active: HashMap<ck::CK_SESSION_HANDLE, (ck::CK_MECHANISM_TYPE, ck::CK_OBJECT_HANDLE)>,
    failed: HashMap<ck::CK_SESSION_HANDLE, (ck::CK_MECHANISM_TYPE, ck::CK_OBJECT_HANDLE)>,
}

static KEPT: Mutex<Option<Kept>> = Mutex::new(None);

fn kept() -> MutexGuard<'static, Option<Kept>> {
    KEPT.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn fault() -> AbiFault {
    AbiFault::ALL.get(FAULT.load(Ordering::SeqCst)).copied().unwrap_or(AbiFault::ErrorKeepsOperation)
}

fn inner() -> &'static ck::CK_FUNCTION_LIST {
    // SAFETY: INNER is set to a module's static function list before the layer is reachable, and
    // never cleared while it is.
    unsafe { &*INNER.load(Ordering::SeqCst) }
}

unsafe extern "C" fn initialize(args: ck::CK_VOID_PTR) -> ck::CK_RV {
    *kept() = None;
    let Some(f) = inner().C_Initialize else { return ck::CKR_FUNCTION_NOT_SUPPORTED };
    // SAFETY: the caller's argument, forwarded.
    unsafe { f(args) }
}

unsafe extern "C" fn finalize(reserved: ck::CK_VOID_PTR) -> ck::CK_RV {
    *kept() = None;
    let Some(f) = inner().C_Finalize else { return ck::CKR_FUNCTION_NOT_SUPPORTED };
    // SAFETY: the caller's argument, forwarded.
    unsafe { f(reserved) }
}

unsafe extern "C" fn sign_init(
    h: ck::CK_SESSION_HANDLE,
    mech: *mut ck::CK_MECHANISM,
    key: ck::CK_OBJECT_HANDLE,
) -> ck::CK_RV {
    let Some(f) = inner().C_SignInit else { return ck::CKR_FUNCTION_NOT_SUPPORTED };
    if fault() == AbiFault::ErrorKeepsOperation && kept().get_or_insert_default().failed.remove(&h).is_some() {
        return ck::CKR_OPERATION_ACTIVE;
    }
    // SAFETY: the caller's arguments, forwarded.
    let rv = unsafe { f(h, mech, key) };
    if rv == ck::CKR_OK && !mech.is_null() {
        // SAFETY: a mechanism the module just read.
        let m = unsafe { (*mech).mechanism };
        kept().get_or_insert_default().active.insert(h, (m, key));
    }
    if fault() == AbiFault::SecondInitAccepted && rv == ck::CKR_OPERATION_ACTIVE {
        return ck::CKR_OK;
    }
    rv
}

/// Lets the module finish the operation into a buffer of the size it asks, and forgets the output.
fn consume(
    sign: unsafe extern "C" fn(ck::CK_SESSION_HANDLE, *mut u8, ck::CK_ULONG, *mut u8, *mut ck::CK_ULONG) -> ck::CK_RV,
    h: ck::CK_SESSION_HANDLE,
    data: *mut u8,
    len: ck::CK_ULONG,
    size: ck::CK_ULONG,
) {
    let mut out = vec![0u8; usize::try_from(size).unwrap_or(0).min(1 << 16)];
    let mut n = out.len() as ck::CK_ULONG;
    // SAFETY: the caller's data, and a buffer of `n` bytes.
    unsafe { sign(h, data, len, out.as_mut_ptr(), &mut n) };
}

unsafe extern "C" fn sign(
    h: ck::CK_SESSION_HANDLE,
    data: *mut u8,
    len: ck::CK_ULONG,
    sig: *mut u8,
    sig_len: *mut ck::CK_ULONG,
) -> ck::CK_RV {
    let f = inner();
    let Some(s) = f.C_Sign else { return ck::CKR_FUNCTION_NOT_SUPPORTED };
    match fault() {
        AbiFault::ErrorKeepsOperation => {
            let kept_op = kept().get_or_insert_default().failed.remove(&h);
            if let (Some((m, key)), Some(init)) = (kept_op, f.C_SignInit) {
                // The operation "kept" after the failure: started again as it was (the fault
                // applies to mechanisms without parameters, as the case's CKM_RSA_PKCS), and used.
                let mut mech = ck::CK_MECHANISM { mechanism: m, pParameter: null_mut(), ulParameterLen: 0 };
                // SAFETY: a mechanism without parameters, living through the call.
                if unsafe { init(h, &mut mech, key) } == ck::CKR_OK {
                    kept().get_or_insert_default().active.insert(h, (m, key));
                }
            }
            // SAFETY: the caller's arguments, forwarded.
            let rv = unsafe { s(h, data, len, sig, sig_len) };
            let ended = rv != ck::CKR_BUFFER_TOO_SMALL && !(rv == ck::CKR_OK && sig.is_null());
            if ended {
                let mut k = kept();
                let k = k.get_or_insert_default();
                // A failure of an operation that was active: the layer "keeps" it.
                if let (Some(op), true) = (k.active.remove(&h), rv != ck::CKR_OK) {
                    k.failed.insert(h, op);
                }
            }
            rv
        }
        AbiFault::SizeQueryEndsOperation if sig.is_null() => {
            // SAFETY: the caller's arguments, forwarded.
            let rv = unsafe { s(h, data, len, sig, sig_len) };
            if rv == ck::CKR_OK && !sig_len.is_null() {
                // SAFETY: the module just wrote the length there.
                consume(s, h, data, len, unsafe { *sig_len });
            }
            rv
        }
        AbiFault::ShortBufferEndsOperation if !sig.is_null() => {
            // SAFETY: the caller's arguments, forwarded.
            let rv = unsafe { s(h, data, len, sig, sig_len) };
            if rv == ck::CKR_BUFFER_TOO_SMALL && !sig_len.is_null() {
                // SAFETY: the module just wrote the length it needs there.
                consume(s, h, data, len, unsafe { *sig_len });
            }
            rv
        }
        // SAFETY: the caller's arguments, forwarded.
        _ => unsafe { s(h, data, len, sig, sig_len) },
    }
}

unsafe extern "C" fn get_session_info(h: ck::CK_SESSION_HANDLE, info: *mut ck::CK_SESSION_INFO) -> ck::CK_RV {
    let Some(f) = inner().C_GetSessionInfo else { return ck::CKR_FUNCTION_NOT_SUPPORTED };
    // SAFETY: the caller's arguments, forwarded.
    let rv = unsafe { f(h, info) };
    if fault() == AbiFault::NoInitCheck && rv == ck::CKR_CRYPTOKI_NOT_INITIALIZED {
        return ck::CKR_SESSION_HANDLE_INVALID;
    }
    rv
}

unsafe extern "C" fn close_session(h: ck::CK_SESSION_HANDLE) -> ck::CK_RV {
    let Some(f) = inner().C_CloseSession else { return ck::CKR_FUNCTION_NOT_SUPPORTED };
    if let Some(k) = kept().as_mut() {
        k.active.remove(&h);
        k.failed.remove(&h);
    }
    // SAFETY: the caller's argument, forwarded.
    let rv = unsafe { f(h) };
    if fault() == AbiFault::BadHandleGeneralError && rv == ck::CKR_SESSION_HANDLE_INVALID {
        return ck::CKR_GENERAL_ERROR;
    }
    rv
}

unsafe extern "C" fn get_attribute_value(
    h: ck::CK_SESSION_HANDLE,
    object: ck::CK_OBJECT_HANDLE,
    template: *mut ck::CK_ATTRIBUTE,
    count: ck::CK_ULONG,
) -> ck::CK_RV {
    let Some(f) = inner().C_GetAttributeValue else { return ck::CKR_FUNCTION_NOT_SUPPORTED };
    // SAFETY: the caller's arguments, forwarded.
    let rv = unsafe { f(h, object, template, count) };
    if fault() == AbiFault::UnavailableNotMarked && !template.is_null() {
        for i in 0..usize::try_from(count).unwrap_or(0) {
            // SAFETY: the caller's template has `count` entries.
            let a = unsafe { &mut *template.add(i) };
            if a.ulValueLen == ck::CK_UNAVAILABLE_INFORMATION {
                a.ulValueLen = 0;
            }
        }
    }
    rv
}

unsafe extern "C" fn find_objects(
    h: ck::CK_SESSION_HANDLE,
    found: *mut ck::CK_OBJECT_HANDLE,
    max: ck::CK_ULONG,
    count: *mut ck::CK_ULONG,
) -> ck::CK_RV {
    let Some(f) = inner().C_FindObjects else { return ck::CKR_FUNCTION_NOT_SUPPORTED };
    // SAFETY: the caller's arguments, forwarded.
    let rv = unsafe { f(h, found, max, count) };
    if fault() == AbiFault::FindWithoutInit && rv == ck::CKR_OPERATION_NOT_INITIALIZED {
        if !count.is_null() {
            // SAFETY: the caller's count.
            unsafe { *count = 0 };
        }
        return ck::CKR_OK;
    }
    rv
}

unsafe extern "C" fn get_slot_list(
    present: ck::CK_BBOOL,
    list: *mut ck::CK_SLOT_ID,
    count: *mut ck::CK_ULONG,
) -> ck::CK_RV {
    let Some(f) = inner().C_GetSlotList else { return ck::CKR_FUNCTION_NOT_SUPPORTED };
    // SAFETY: the caller's arguments, forwarded.
    let rv = unsafe { f(present, list, count) };
    if fault() == AbiFault::SlotListOvercount && rv == ck::CKR_OK && list.is_null() && !count.is_null() {
        // SAFETY: the caller's count, which the module just wrote.
        unsafe { *count += 1 };
    }
    rv
}

/// `clean` with the layer's functions in front of its own. The list is leaked: it must outlive
/// every call through it, and the self-test makes one.
fn layered(clean: &Module) -> Module {
    let inner = clean.f_static();
    INNER.store((inner as *const ck::CK_FUNCTION_LIST).cast_mut(), Ordering::SeqCst);
    let mut list = *inner;
    list.C_Initialize = Some(initialize);
    list.C_Finalize = Some(finalize);
    list.C_SignInit = Some(sign_init);
    list.C_Sign = Some(sign);
    list.C_GetSessionInfo = Some(get_session_info);
    list.C_CloseSession = Some(close_session);
    list.C_GetAttributeValue = Some(get_attribute_value);
    list.C_FindObjects = Some(find_objects);
    list.C_GetSlotList = Some(get_slot_list);
    clean.layered("the module under a planted ABI fault", Box::leak(Box::new(list)))
}

/// What the ABI level of the self-test found for one fault.
#[derive(Debug, Clone)]
pub struct AbiCaught {
    /// The fault.
    pub fault: AbiFault,
    /// The ABI case that caught it (`None` when none did).
    pub by: Option<String>,
}

/// Runs the ABI-level `cases` on `clean` (the baseline), then each of `faults` planted under its
/// module in turn; each fault is caught by the first case that passed on the module and fails
/// with it. Returns how many cases passed on the module itself, and each fault's catcher.
pub fn abi_self_test(
    clean: &AbiCtx<'_>,
    cases: &[Case],
    faults: &[AbiFault],
    progress: &mut dyn FnMut(AbiFault),
) -> (usize, Vec<AbiCaught>) {
    let _one_layer = PLANTED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let abi: Vec<Case> = cases.iter().filter(|c| matches!(c.body, Body::Abi(_))).cloned().collect();
    let none = crate::Expectations::none();
    let baseline = crate::run_cases(&abi, Target { seam: None, abi: Some(clean) }, &none, &mut |_| {});
    let passing: Vec<Case> =
        abi.iter().zip(&baseline).filter(|(_, f)| f.outcome == crate::Outcome::Pass).map(|(c, _)| c.clone()).collect();
    let module = layered(clean.module);
    let ctx = AbiCtx {
        module: &module,
        token: clean.token.clone(),
        slot: clean.slot,
        user_pin: clean.user_pin.clone(),
        so_pin: clean.so_pin.clone(),
    };
    let mut out = Vec::new();
    for &f in faults {
        progress(f);
        FAULT.store(AbiFault::ALL.iter().position(|a| *a == f).unwrap_or(0), Ordering::SeqCst);
        *kept() = None;
        let by = crate::faults::first_catch(&passing, Target { seam: None, abi: Some(&ctx) }, &none);
        out.push(AbiCaught { fault: f, by });
    }
    *kept() = None;
    (passing.len(), out)
}
