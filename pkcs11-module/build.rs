//! Links `libhsmkit_pkcs11.so` with `-z nodelete`: once loaded, it stays mapped after `dlclose`.
//!
//! Why: code the module links (AWS-LC, through aws-lc-sys, and Rust's own thread-locals) registers
//! per-thread destructors in the threads that call it. They run when such a thread ends, which
//! may be after the application has called `C_Finalize` and unloaded the module; if the library
//! were unmapped by then, they would jump into freed memory (a SIGSEGV in any program that unloads
//! modules, as every `cryptoki` program does). Clearing that state at `C_Finalize` could reach
//! only the calling thread, not every thread that used the module, so it would not be sound.
//! Keeping the library mapped is: a later `dlopen` finds the same copy, finalised, and
//! `C_Initialize` starts it again.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
