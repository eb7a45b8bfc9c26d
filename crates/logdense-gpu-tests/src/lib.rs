//! Empty: the tests are in `tests/device.rs`, built with `--features wgpu` (a GPU, or the CPU
//! through Mesa's lavapipe, as `.ci/gpu_api_check.sh` runs them) or `--features vulkan`.
