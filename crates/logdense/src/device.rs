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
/// panic hook is left alone (a library does not change process-wide state): the `logdense`
/// binary silences it around this call, so that its user sees the error line alone.
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

/// The bytes the device's allocator holds, `None` where the backend keeps no pools (the CPU).
/// cubecl's allocators keep every page they reserved until [`release_unused_memory`], so
/// read after a training step this is the step's peak plus the pools' slack: the figure a
/// GPU runs out of.
pub fn allocator_reserved_bytes(device: &Device) -> Option<u64> {
    device.memory_pool_usage().map(|u| u.bytes_reserved)
}

/// Returns the pages the device's allocator holds but does not use, so that a measurement
/// with [`allocator_reserved_bytes`] starts from what is live.
pub fn release_unused_memory(device: &Device) {
    device.memory_cleanup();
}

/// Starts counting the GPU runtime's kernel compilations ([`kernel_compilations`]): call it
/// before the first GPU device is made. It changes process-wide state, which is the
/// application's to decide: it installs a `log` logger (unless one is installed already) and
/// sets cubecl's configuration (what `cubecl.toml` and the `CUBECL_*` variables give, with the
/// compilation log also sent to that logger). Returns whether counting runs; `false` in a
/// CPU-only build, where a logger was installed, or where cubecl had read its configuration.
/// The `logdense` binary calls it for every GPU device.
pub fn count_kernel_compilations() -> bool {
    #[cfg(any(feature = "vulkan", feature = "wgpu"))]
    return compilations::start_counting();
    #[cfg(not(any(feature = "vulkan", feature = "wgpu")))]
    false
}

/// Kernels the GPU runtime compiled in this process since [`count_kernel_compilations`]:
/// `None` where that did not start counting. Counts compilations, not launches: a kernel
/// compiled once and launched a thousand times counts once, and a kernel Mesa or the driver
/// finds in its own shader cache still counts (cubecl generated it).
pub fn kernel_compilations() -> Option<u64> {
    #[cfg(any(feature = "vulkan", feature = "wgpu"))]
    return compilations::count();
    #[cfg(not(any(feature = "vulkan", feature = "wgpu")))]
    None
}

/// Counting cubecl's kernel compilations: its compilation log, at its basic level, routed to
/// the `log` facade and counted there by a logger that ignores everything else.
#[cfg(any(feature = "vulkan", feature = "wgpu"))]
mod compilations {
    use cubecl_environment::config::logger::LogCrateLevel;
    use cubecl_runtime::config::compilation::CompilationLogLevel;
    use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// The target cubecl logs compilations under.
    const TARGET: &str = "cubecl::compilation";
    static COUNT: AtomicU64 = AtomicU64::new(0);
    static COUNTING: AtomicBool = AtomicBool::new(false);

    struct Counter;

    impl log::Log for Counter {
        fn enabled(&self, metadata: &log::Metadata) -> bool {
            metadata.target() == TARGET
        }
        fn log(&self, record: &log::Record) {
            if record.target() == TARGET {
                COUNT.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn flush(&self) {}
    }

    /// Installs the counter, once (see [`super::count_kernel_compilations`]).
    pub(super) fn start_counting() -> bool {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if log::set_logger(&Counter).is_err() {
                return;
            }
            log::set_max_level(log::LevelFilter::Info);
            let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
            let logger = &mut config.compilation.logger;
            logger.log = Some(LogCrateLevel::Info);
            if matches!(logger.level, CompilationLogLevel::Disabled) {
                logger.level = CompilationLogLevel::Basic;
            }
            COUNTING.store(CubeClRuntimeConfig::try_set(config), Ordering::Relaxed);
        });
        COUNTING.load(Ordering::Relaxed)
    }

    pub(super) fn count() -> Option<u64> {
        COUNTING
            .load(Ordering::Relaxed)
            .then(|| COUNT.load(Ordering::Relaxed))
    }
}
