#!/usr/bin/env bash
# The GPU-API path on the CPU: a `--features wgpu` build (burn's WGSL kernels through wgpu,
# without autotune or fusion) on Mesa's lavapipe (.ci/install_lavapipe.sh), which must find the
# device: a GPU test built with the feature fails, it does not skip, without one. Runs the
# device tests, then `check-device --small` (forward, loss, every gradient and one SGD step of
# one network per family against the CPU): on the fused path (the recomputing layer and its
# CubeCL kernels), with gradient checkpointing, and on plain ops. With cold
# caches the check takes under a minute (docs/2026-12-03-gpu-api-on-cpu.md); its own target
# directory keeps the two builds of burn from invalidating each other.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
cargo build --release --features wgpu -p logdense -p logdense-gpu-tests --target-dir target/wgpu
echo "gpu_api_check: build $(( $(date +%s) - start )) s"
cargo test --release --features wgpu -p logdense-gpu-tests --target-dir target/wgpu -- --nocapture
target/wgpu/release/logdense check-device --device wgpu --small
target/wgpu/release/logdense check-device --device wgpu --small --checkpointing
target/wgpu/release/logdense check-device --device wgpu --small --plain
echo "gpu_api_check: $(( $(date +%s) - start )) s"
