//! Fuzzes `hsmkit_emulator::fuzz::key_blob`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hsmkit_emulator::fuzz::key_blob(data);
});
