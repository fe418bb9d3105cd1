//! Fuzzes `hsmkit_emulator::fuzz::card`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hsmkit_emulator::fuzz::card(data);
});
