//! A safetensors state dict (`logdense import --safetensors`): any bytes are refused with an
//! error or parsed, never a panic or an allocation out of proportion.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    logdense_fuzz::check(
        data,
        64,
        logdense_fuzz::FLOOR,
        logdense::fuzzing::safetensors_state_dict,
    );
});
