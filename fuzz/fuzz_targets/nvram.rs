//! Fuzzes `hsmkit_emulator::fuzz::nvram`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hsmkit_emulator::fuzz::nvram(data);
});
