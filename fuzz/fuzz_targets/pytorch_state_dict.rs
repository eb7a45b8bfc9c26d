//! A PyTorch `.pt`/`.pth` state dict (`logdense import --pytorch`): any bytes are refused with
//! an error or read, never a panic or an allocation out of proportion.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    logdense_fuzz::check(
        data,
        64,
        logdense_fuzz::FLOOR,
        logdense::fuzzing::pytorch_state_dict,
    );
});
