//! The compute device a command runs on: burn's `flex` CPU backend, or Vulkan (feature
//! `vulkan`) for GPUs.

use anyhow::{bail, Result};
use burn::prelude::*;

/// The compute device: burn's `flex` CPU backend, or Vulkan with the `vulkan` feature.
pub fn device_from_name(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "vulkan")]
        "vulkan" | "gpu" => vulkan_device(),
        other => bail!(
            "--device: unknown device '{other}' (cpu{})",
            if cfg!(feature = "vulkan") {
                ", vulkan"
            } else {
                "; build with --features vulkan for GPUs"
            }
        ),
    }
}

/// The default Vulkan adapter, probed with one tiny tensor: without an adapter burn panics in
/// its device thread, and a user should get an error that says what is missing instead. The
/// process's panic hook is left alone (a library does not change process-wide state), so
/// burn's own panic message is printed before the error.
#[cfg(feature = "vulkan")]
fn vulkan_device() -> Result<Device> {
    let device = Device::vulkan(burn::tensor::DeviceKind::default());
    let probe = device.clone();
    let usable = std::panic::catch_unwind(move || {
        Tensor::<1>::zeros([1], &probe).into_data();
    })
    .is_ok();
    if !usable {
        bail!(
            "--device vulkan: no usable Vulkan adapter (a GPU driver with Vulkan support and the \
             Vulkan loader, libvulkan1, are needed)"
        );
    }
    Ok(device)
}
