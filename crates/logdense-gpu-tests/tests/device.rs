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

/// The recomputing layers and transitions that ran on this thread since `before`: forwards
/// and backward steps.
fn recompute_runs_since(before: logdense::model::fused::KernelRuns) -> (u64, u64) {
    let now = logdense::model::fused::kernel_runs();
    (
        now.recompute_forward - before.recompute_forward,
        now.recompute_backward - before.recompute_backward,
    )
}

/// The recomputing layer's CubeCL kernel launches on this thread since `before`.
fn cube_kernels_since(before: logdense::model::fused::KernelRuns) -> u64 {
    logdense::model::fused::kernel_runs().cube_kernels - before.cube_kernels
}

/// With the fused option on (the default), a GPU device takes the recomputing layer: every
/// family agrees with the CPU's fused kernels, and the counters show the layer ran, forward
/// and backward, and (without burn's fusion) that its CubeCL kernels did.
#[test]
fn networks_agree_with_the_cpu_on_the_gpu_device() {
    let gpu = logdense::device::device_from_name(device_name()).unwrap();
    for &(name, side, batch) in SMALL_CASES {
        let spec = small_case_spec(name, side).unwrap();
        let before = logdense::model::fused::kernel_runs();
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
        let (forward, backward) = recompute_runs_since(before);
        assert!(
            forward > 0 && backward > 0,
            "{name}: the recomputing layer ran {forward} forwards and {backward} backward steps"
        );
        // Per input of every layer: one packing launch in the forward, one in the backward
        // step's recomputation, one input-gradient launch.
        let launches = cube_kernels_since(before);
        if cfg!(feature = "fusion") {
            assert_eq!(launches, 0, "{name}: CubeCL kernels under fusion");
        } else {
            assert!(
                launches >= 3 * forward,
                "{name}: {launches} CubeCL kernel launches"
            );
        }
    }
}

/// With the fused option off the GPU runs burn's plain ops, which agree with the CPU too.
#[test]
fn plain_ops_agree_with_the_cpu_on_the_gpu_device() {
    let gpu = logdense::device::device_from_name(device_name()).unwrap();
    let plain = CopyOptions {
        fused: false,
        ..CopyOptions::default()
    };
    for &(name, side, batch) in &SMALL_CASES[..2] {
        let spec = small_case_spec(name, side).unwrap();
        let before = logdense::model::fused::kernel_runs();
        let agreement = compare_devices(name, &spec, batch, &Device::flex(), &gpu, &plain).unwrap();
        println!("{agreement:?}");
        assert!(agreement.within(TOLERANCE), "{agreement:?}");
        assert_eq!(recompute_runs_since(before), (0, 0), "{name}: plain ops");
        assert_eq!(cube_kernels_since(before), 0, "{name}: plain ops");
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
