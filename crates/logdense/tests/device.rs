//! The same networks on the Vulkan GPU and on the CPU agree (see `logdense::experiments::parity`). Built only
//! with `--features vulkan`, and it needs a GPU; `logdense check-device --device vulkan` runs the
//! same comparison from the release binary (bench/gpu_check.sh does so on the device machine).
#![cfg(feature = "vulkan")]

use burn::prelude::*;
use logdense::experiments::parity::{case_spec, compare_devices, DEFAULT_CASES, TOLERANCE};

#[test]
fn networks_agree_with_the_cpu_on_vulkan() {
    let gpu = logdense::device::device_from_name("vulkan").unwrap();
    for &(name, side, batch) in DEFAULT_CASES {
        let spec = case_spec(name, side).unwrap();
        let agreement = compare_devices(name, &spec, batch, &Device::flex(), &gpu, 0.0).unwrap();
        println!("{agreement:?}");
        assert!(agreement.within(TOLERANCE), "{agreement:?}");
    }
}
