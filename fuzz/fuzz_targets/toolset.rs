//! Fuzzes `hsmkit_transfer::fuzz::toolset`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hsmkit_transfer::fuzz::toolset(data);
});
