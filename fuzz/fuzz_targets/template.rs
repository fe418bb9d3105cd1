//! Fuzzes `hsmkit_pkcs11::fuzz::template`: attribute templates through the module's ABI, on a
//! throwaway token made at start-up.
#![no_main]

use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

libfuzzer_sys::fuzz_target!(
    init: {
        let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temporary folder"));
        let conf = dir.path().join("hsmkit.conf");
        std::fs::write(&conf, format!("slot 0 {}\n", dir.path().join("kmdata").display())).expect("conf");
        // SAFETY: set once at start-up, before the fuzzer starts any thread.
        unsafe { std::env::set_var("HSMKIT_CONF", &conf) };
    },
    |data: &[u8]| {
        hsmkit_pkcs11::fuzz::template(data);
    }
);
