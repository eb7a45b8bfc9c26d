//! The same networks on a GPU-API device and on the CPU agree (see
//! `logdense::experiments::parity`). Built only with `--features vulkan` (a GPU) or
//! `--features wgpu` (a GPU, or the CPU through Mesa's lavapipe, as `.ci/run` runs it); a
//! build with the feature and no device fails rather than skips. `logdense check-device`
//! runs the same comparison from the release binary (bench/gpu_check.sh does so on the device
//! machine).
#![cfg(any(feature = "vulkan", feature = "wgpu"))]

use burn::prelude::*;
use logdense::experiments::parity::{
    compare_devices, small_case_spec, CopyOptions, SMALL_CASES, TOLERANCE,
};

/// The device the feature builds: wgpu's WGSL where that feature is on (the CPU test
/// device), else Vulkan.
fn device_name() -> &'static str {
    if cfg!(feature = "wgpu") {
        "wgpu"
    } else {
        "vulkan"
    }
}

#[test]
fn networks_agree_with_the_cpu_on_the_gpu_device() {
    let gpu = logdense::device::device_from_name(device_name()).unwrap();
    for &(name, side, batch) in SMALL_CASES {
        let spec = small_case_spec(name, side).unwrap();
        let agreement = compare_devices(
            name,
            &spec,
            batch,
            &Device::flex(),
            &gpu,
            &CopyOptions::default(),
        )
        .unwrap();
        println!("{agreement:?}");
        assert!(agreement.within(TOLERANCE), "{agreement:?}");
    }
}

#[test]
fn gradient_checkpointing_agrees_with_the_cpu_on_the_gpu_device() {
    let gpu = logdense::device::device_from_name(device_name()).unwrap();
    let checkpointed = CopyOptions {
        checkpointing: true,
        ..CopyOptions::default()
    };
    for &(name, side, batch) in &SMALL_CASES[..2] {
        let spec = small_case_spec(name, side).unwrap();
        let agreement =
            compare_devices(name, &spec, batch, &Device::flex(), &gpu, &checkpointed).unwrap();
        println!("{agreement:?}");
        assert!(agreement.within(TOLERANCE), "{agreement:?}");
    }
}

/// The documented cubecl configuration (bench/cubecl.toml) is one cubecl reads.
#[test]
fn the_documented_cubecl_config_parses() {
    use cubecl_runtime::config::cache::CacheConfig;
    use cubecl_runtime::config::CubeClRuntimeConfig;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/cubecl.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let config: CubeClRuntimeConfig = toml::from_str(&text).unwrap();
    assert_eq!(format!("{:?}", config.autotune.level), "Balanced");
    assert!(matches!(config.environment.path, CacheConfig::Global));
}
