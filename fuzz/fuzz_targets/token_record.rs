//! Fuzzes `hsmkit_emulator::fuzz::token_record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hsmkit_emulator::fuzz::token_record(data);
});
