#!/usr/bin/env bash
# The GPU-API path on the CPU: a `--features wgpu` build (burn's WGSL kernels through wgpu) on
# Mesa's lavapipe (.ci/install_lavapipe.sh), which must find the device: a GPU test built with
# the feature fails, it does not skip, without one. Not part of .ci/run: with cold caches
# lavapipe compiles each kernel in about 7 s and the check takes tens of minutes
# (docs/2026-12-03-gpu-api-on-cpu.md); warm (~/.cache/cubecl, ~/.cache/mesa_shader_cache_db)
# a small network takes 15 s. Autotune runs at its lowest level, since
# lavapipe compiles every candidate kernel with LLVM. Its own target directory keeps the two
# builds of burn from invalidating each other.
set -euo pipefail
cd "$(dirname "$0")/.."
export CUBECL_AUTOTUNE_LEVEL=minimal
start=$(date +%s)
cargo test --release --features wgpu -p logdense --target-dir target/wgpu --test device -- --nocapture
target/wgpu/release/logdense check-device --device wgpu --small
echo "gpu_api_check: $(( $(date +%s) - start )) s"
