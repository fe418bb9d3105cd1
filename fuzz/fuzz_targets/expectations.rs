//! Fuzzes `hsmkit_conformance::fuzz_expectations`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hsmkit_conformance::fuzz_expectations(data);
});
