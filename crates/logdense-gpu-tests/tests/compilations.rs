//! The GPU device's allocator and kernel-compilation counters (what `logdense bench` reports),
//! in a test process of its own: counting must start before the process makes its first GPU
//! device.
#![cfg(any(feature = "vulkan", feature = "wgpu"))]

use burn::prelude::*;

#[test]
fn the_gpu_device_reports_its_memory_and_compilations() {
    assert!(logdense::device::count_kernel_compilations());
    let name = if cfg!(feature = "wgpu") {
        "wgpu"
    } else {
        "vulkan"
    };
    let gpu = logdense::device::device_from_name(name).unwrap();
    let before = logdense::device::kernel_compilations().expect("compilations are counted");
    let x = Tensor::<2>::ones([64, 64], &gpu);
    let y = (x.clone().matmul(x) + 1.0).into_data();
    assert_eq!(y.shape().to_vec(), vec![64, 64]);
    let after = logdense::device::kernel_compilations().unwrap();
    assert!(
        after > before,
        "a matmul compiled no kernel ({before} -> {after})"
    );
    let reserved = logdense::device::allocator_reserved_bytes(&gpu).expect("a pooled allocator");
    assert!(reserved >= 64 * 64 * 4, "{reserved} bytes reserved");
    assert_eq!(
        logdense::device::allocator_reserved_bytes(&Device::flex()),
        None
    );
}
