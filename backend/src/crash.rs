//! Crash injection across processes. Every write of kept state (a file of kmdata, NVRAM, a card,
//! the token record; a commit of the tenant database) passes through [`crash_point`]s. When the
//! environment variable `HSMKIT_TEST_CRASH_AT=N` is set, the process aborts at the N-th point it
//! reaches (as `kill -9` would stop it there), after naming the point on standard error; the
//! crash tests run each write-bearing command with N = 1, 2, … until it completes, and check what
//! each crash left. Without the variable a point costs one relaxed atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms the crash points.
pub const CRASH_AT_VAR: &str = "HSMKIT_TEST_CRASH_AT";

fn armed() -> Option<u64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    *AT.get_or_init(|| std::env::var(CRASH_AT_VAR).ok().and_then(|v| v.trim().parse().ok()).filter(|n| *n > 0))
}

/// A point where a crash would leave the kept state as it is at this moment; `what` names it.
pub fn crash_point(what: impl FnOnce() -> String) {
    static REACHED: AtomicU64 = AtomicU64::new(0);
    if let Some(at) = armed()
        && REACHED.fetch_add(1, Ordering::Relaxed) + 1 == at
    {
        eprintln!("{CRASH_AT_VAR}: crashing at point {at}: {}", what());
        std::process::abort();
    }
}
