//! Fuzzes `hsmkit_emulator::fuzz::stored_object`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hsmkit_emulator::fuzz::stored_object(data);
});
