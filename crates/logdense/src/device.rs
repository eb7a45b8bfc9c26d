//! The compute device a command runs on: burn's `flex` CPU backend, Vulkan with SPIR-V kernels
//! (feature `vulkan`) for GPUs, or wgpu with WGSL kernels (feature `wgpu`): a GPU, or the CPU
//! through a software Vulkan driver (Mesa's lavapipe), which is how the GPU path is tested on
//! machines without one.

use anyhow::{bail, Result};
use burn::prelude::*;

/// The device names this build knows, for help and errors.
pub fn device_names() -> String {
    let mut names = vec!["cpu"];
    if cfg!(feature = "vulkan") {
        names.push("vulkan");
    }
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    names.join(", ")
}

/// The compute device: burn's `flex` CPU backend, Vulkan with the `vulkan` feature, wgpu
/// (WGSL) with the `wgpu` feature.
pub fn device_from_name(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "vulkan")]
        "vulkan" | "gpu" => probed(
            "vulkan",
            Device::vulkan(burn::tensor::DeviceKind::default()),
        ),
        #[cfg(feature = "wgpu")]
        "wgpu" => probed("wgpu", Device::wgpu(burn::tensor::DeviceKind::default())),
        other => bail!(
            "--device: unknown device '{other}' ({}{})",
            device_names(),
            if cfg!(any(feature = "vulkan", feature = "wgpu")) {
                ""
            } else {
                "; build with --features vulkan or --features wgpu for GPUs"
            }
        ),
    }
}

/// The device, probed with one tiny tensor: without an adapter burn panics in its device
/// thread, and a user should get an error that says what is missing instead. The process's
/// panic hook is left alone (a library does not change process-wide state), so burn's own
/// panic message is printed before the error.
#[cfg(any(feature = "vulkan", feature = "wgpu"))]
fn probed(name: &str, device: Device) -> Result<Device> {
    let probe = device.clone();
    let usable = std::panic::catch_unwind(move || {
        Tensor::<1>::zeros([1], &probe).into_data();
    })
    .is_ok();
    if !usable {
        bail!(
            "--device {name}: no usable adapter (a GPU driver with Vulkan support, or Mesa's \
             lavapipe for the CPU, and the Vulkan loader, libvulkan1, are needed)"
        );
    }
    Ok(device)
}
