//! Fuzzes `hsmkit_transfer::fuzz::arguments`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hsmkit_transfer::fuzz::arguments(data);
});
