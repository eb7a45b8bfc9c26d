#!/usr/bin/env bash
# The GPU check, in one go on a machine with an NVIDIA GPU and no Rust toolchain: Vulkan against
# the CPU (`logdense check-device`), `logdense bench --device vulkan` beside PyTorch on CUDA, and
# a fashion-scenes training on the GPU. Every stage has its own time limit and writes its log
# under $OUT as it goes (8 files at most), so a stage that hangs costs only its own limit.
#
# Prepare on the build machine (from the repository root):
#   bench/gpu_check.sh --prepare    # builds with --features vulkan, fills .gpu/ (git-ignored)
# and put the Debian packages of the Vulkan loader and the GL dispatch libraries in .gl/ (also
# git-ignored): `apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0
# libgles2` there; the script unpacks them. Then, on the GPU machine, with .gpu/ and .gl/:
#   OUT=/some/dir bench/gpu_check.sh [parity] [bench] [torch] [seg]    # default: all four
# Measured results: BENCHMARKS.md, "On a GPU".
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

# Stages to run (default: all), e.g. `bench/gpu_check.sh parity bench`.
STAGES=" ${*:-parity bench torch seg} "
want() { [[ "$STAGES" == *" $1 "* ]]; }

if want parity; then
    stage "device parity: the same networks on Vulkan and on the CPU"
    timeout 100 $B check-device --device vulkan 2>&1 | tee "$OUT/parity.log"
    echo "parity exit ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"
fi

if want bench; then
    # One preset per process, so that a slow one (the first steps compile every kernel) costs
    # only its own limit; one JSON array per line.
    for args in "ld-v1-12-16" "fc-ld-scenes --input 64 --batch 16" "densenet-bc-100-12" \
        "fc-ld-103" "ld-v1-32-24"; do
        stage "logdense bench --device vulkan --preset $args"
        # shellcheck disable=SC2086
        timeout 120 $B bench --device vulkan --warmup 2 --steps 5 --json --preset $args \
            2>>"$OUT/errors.log" | tr -d '\n' >>"$OUT/bench-vulkan.jsonl"
        status=${PIPESTATUS[0]}
        echo >>"$OUT/bench-vulkan.jsonl"
        echo "exit $status (124: over the time limit)" | tee -a "$OUT/summary.txt"
    done
fi

if want torch; then
    stage "PyTorch on CUDA, the same presets"
    timeout 75 python3 bench/pytorch_reference.py --device cuda --logdense $B --warmup 3 \
        --steps 10 --json --preset ld-v1-12-16 --preset ld-v1-32-24 \
        --preset densenet-bc-100-12 --preset fc-ld-103 >"$OUT/bench-torch.json" \
        2>>"$OUT/errors.log"
    echo "torch exit $?" | tee -a "$OUT/summary.txt"
fi

if want seg; then
    stage "fashion-scenes on the GPU: the CPU recipe for ${SEG_EPOCHS:=6} epochs, at most ${SEG_SECONDS:=150} s"
    $B data fashion-scenes --fashion .gpu/fashion-mnist --out /tmp/scenes --size 64 \
        --train 12500 --test 500 >/dev/null
    timeout $((SEG_SECONDS + 45)) $B segment train --config configs/fashion-scenes.toml \
        --device vulkan --data /tmp/scenes --epochs "$SEG_EPOCHS" \
        --max-minutes "$(python3 -c "print($SEG_SECONDS / 60)")" --out /tmp/seg 2>&1 |
        tr '\r' '\n' | grep -v '^\s*$' | tail -40 >"$OUT/seg.log"
    echo "seg exit ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"
    cp /tmp/seg/metrics.csv "$OUT/seg-metrics.csv" 2>/dev/null
    timeout 45 $B segment eval --run /tmp/seg --data /tmp/scenes --device vulkan --flip-tta \
        2>&1 | tail -30 >>"$OUT/seg.log"
fi
stage "done"
