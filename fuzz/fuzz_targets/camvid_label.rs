#![no_main]
use libfuzzer_sys::fuzz_target;
use logdense_data::fuzzing::DECODE_LIMIT as DECODE;

fuzz_target!(|data: &[u8]| {
    logdense_fuzz::check(
        data,
        4,
        logdense_fuzz::FLOOR + 4 * DECODE,
        logdense_data::fuzzing::camvid_label,
    );
});
