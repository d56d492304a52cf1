//! Fuzz target: `vmc_trust::verify` of signed messages against a small generated trust store
//! at a fixed time (see `vmc_fuzz::verify_message`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmc_fuzz::verify_message(data);
});
