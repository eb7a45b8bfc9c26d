#!/usr/bin/env bash
# The GPU check, in one go on a machine with an NVIDIA GPU and no Rust toolchain: Vulkan
# against the CPU (`logdense check-device`), `logdense bench --device vulkan` beside PyTorch on CUDA, and a
# fashion-scenes training on the GPU. Every stage has its own time limit and writes its log
# under $OUT as it goes (8 files at most), so a stage that hangs costs only its own limit.
#
# Prepare on the build machine (from the repository root):
#   bench/gpu_check.sh --prepare    # builds with --features vulkan, fills .gpu/ (git-ignored)
# The check machine also needs the Vulkan loader and GL dispatch libraries, unpacked from the
# .deb files in .gl/ (see README, "GPU"). Then, there:
#   OUT=/some/dir bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    set -e
    target=target/vulkan
    cargo build --release --features vulkan -p logdense --target-dir $target
    mkdir -p .gpu/fashion-mnist
    rm -f .gpu/*.gz .gpu/*.xz
    # The Vulkan build is large (about 120 MB stripped): xz keeps the carried tree under 64 MiB.
    strip -o .gpu/logdense $target/release/logdense
    xz -T2 -6 .gpu/logdense
    cp /usr/share/datasets/fashion-mnist/*.gz .gpu/fashion-mnist/
    du -sh .gpu
    exit 0
fi

OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
stage() { echo "== $(date +%T) $*" | tee -a "$OUT/summary.txt"; }

for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
bin=/tmp/logdense-gpu
mkdir -p $bin
xz -dc .gpu/logdense.xz >$bin/logdense
chmod +x $bin/*
B=$bin/logdense
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/summary.txt"
nproc | tee -a "$OUT/summary.txt"

stage "device parity: the same networks on Vulkan and on the CPU"
timeout 90 $B check-device --device vulkan 2>&1 | tee "$OUT/parity.log"
echo "parity exit ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"

stage "logdense bench --device vulkan"
timeout 150 $B bench --device vulkan --warmup 3 --steps 10 --json \
    --preset ld-v1-12-16 --preset ld-v1-32-24 --preset densenet-bc-100-12 --preset fc-ld-103 \
    >"$OUT/bench-vulkan.json" 2>>"$OUT/errors.log"
echo "bench exit $?" | tee -a "$OUT/summary.txt"
timeout 60 $B bench --device vulkan --warmup 3 --steps 10 --json --preset fc-ld-scenes \
    --input 64 --batch 16 >"$OUT/bench-scenes.json" 2>>"$OUT/errors.log"
echo "bench scenes exit $?" | tee -a "$OUT/summary.txt"

stage "PyTorch on CUDA, the same presets"
timeout 75 python3 bench/pytorch_reference.py --device cuda --logdense $B --warmup 3 \
    --steps 10 --json --preset ld-v1-12-16 --preset ld-v1-32-24 \
    --preset densenet-bc-100-12 --preset fc-ld-103 >"$OUT/bench-torch.json" 2>>"$OUT/errors.log"
echo "torch exit $?" | tee -a "$OUT/summary.txt"

stage "fashion-scenes on the GPU: the CPU recipe with as many epochs as ${SEG_SECONDS:=120} s allow"
$B data fashion-scenes --fashion .gpu/fashion-mnist --out /tmp/scenes --size 64 --train 12500 \
    --test 500 >/dev/null
epochs=$(python3 -c 'import json,sys
r = json.load(open(sys.argv[1]))[0]
print(max(1, min(30, int(float(sys.argv[2]) * r["train_img_per_s"] / 12500))))' \
    "$OUT/bench-scenes.json" "$SEG_SECONDS" 2>/dev/null || echo 2)
echo "epochs $epochs" | tee -a "$OUT/summary.txt"
timeout $((SEG_SECONDS + 45)) $B segment train --config configs/fashion-scenes.toml \
    --device vulkan --data /tmp/scenes --epochs "$epochs" \
    --max-minutes "$(python3 -c "print($SEG_SECONDS / 60)")" --out /tmp/seg 2>&1 |
    tr '\r' '\n' | grep -v '^\s*$' | tail -40 >"$OUT/seg.log"
echo "seg exit ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"
cp /tmp/seg/metrics.csv "$OUT/seg-metrics.csv" 2>/dev/null
timeout 45 $B segment eval --run /tmp/seg --data /tmp/scenes --device vulkan --flip-tta 2>&1 |
    tail -30 >>"$OUT/seg.log"
stage "done"
