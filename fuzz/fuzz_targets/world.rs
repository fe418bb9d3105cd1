//! Fuzzes `hsmkit_emulator::fuzz::world`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hsmkit_emulator::fuzz::world(data);
});
