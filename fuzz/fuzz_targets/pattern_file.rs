//! A pattern file (`--pattern-file`, `model.pattern_file`): any bytes are refused with an
//! error or parsed and checked, never a panic or an allocation out of proportion.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    logdense_fuzz::check(
        data,
        64,
        logdense_fuzz::CONFIG_FLOOR,
        logdense::fuzzing::pattern_file,
    );
});
