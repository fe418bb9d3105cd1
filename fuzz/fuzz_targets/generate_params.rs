//! Fuzzes `hsmkit_emulator::fuzz::generate_params`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hsmkit_emulator::fuzz::generate_params(data);
});
