#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    logdense_fuzz::check(
        data,
        64,
        logdense_fuzz::CONFIG_FLOOR,
        logdense::fuzzing::train_config,
    );
});
