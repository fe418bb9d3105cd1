//! Fuzzes `hsmkit_transfer::fuzz::world_package`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hsmkit_transfer::fuzz::world_package(data);
});
