//! Fuzz target: `vmc_model::parse_image_list` on arbitrary bytes (see `vmc_fuzz::parse_list`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmc_fuzz::parse_list(data);
});
