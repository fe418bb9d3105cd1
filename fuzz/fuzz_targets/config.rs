//! Fuzzes `hsmkit_pkcs11::fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hsmkit_pkcs11::fuzz::config(data);
});
