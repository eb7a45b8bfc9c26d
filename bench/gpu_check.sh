#!/usr/bin/env bash
# The GPU check, in one go on a machine with an NVIDIA GPU and no Rust toolchain: the GPU device
# against the CPU (`logdense check-device`: forward, every gradient, one optimiser step, on the
# fused path, which is the recomputing layer on a GPU, and on plain ops), `logdense bench`
# (fused and plain: the allocator's peak, the first step's time, kernels compiled) beside
# PyTorch on CUDA (fp32 and AMP bf16, torch.cuda.max_memory_allocated), the LOG-against-DENSE
# memory sweep on the GPU (fused and plain), and a fashion-scenes training on the GPU. Every
# stage has its own time limit and writes its log under $OUT as it goes, so a stage that hangs
# costs only its own limit.
#
# Prepare on the build machine (from the repository root):
#   bench/gpu_check.sh --prepare    # builds with --features vulkan, fills .gpu/ (git-ignored)
# and put the Debian packages of the Vulkan loader and the GL dispatch libraries in .gl/ (also
# git-ignored): `apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0
# libgles2` there; the script unpacks them. Then, on the GPU machine, with .gpu/ and .gl/
# (the device tool's `run` with `carry: [".gpu", ".gl"]`, since .gitignore leaves them out):
#   OUT=$OUT bench/gpu_check.sh [parity] [bench] [torch] [sweep] [seg]  # default: all
#
# The dry run, on any machine, before a GPU's minutes are spent on it: the same stages end to
# end on the CPU, through Mesa's lavapipe (a software Vulkan driver; it runs burn's WGSL
# kernels, not its SPIR-V) with a `--features wgpu` build (no autotune, no fusion), PyTorch on
# the CPU, and small networks and step counts (lavapipe compiles every kernel with LLVM):
#   apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1   # see .ci/run
#   bench/gpu_check.sh --prepare-dry     # builds target/wgpu/release/logdense
#   OUT=/tmp/dry bench/gpu_check.sh --dry-run [stages]
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
if [ "${1:-}" = "--prepare-dry" ]; then
    exec cargo build --release --features wgpu -p logdense --target-dir target/wgpu
fi

DRY=0
if [ "${1:-}" = "--dry-run" ]; then
    DRY=1
    shift
fi

OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
stage() { echo "== $(date +%T) $*" | tee -a "$OUT/summary.txt"; }

if [ $DRY = 1 ]; then
    DEVICE=wgpu
    TORCH_DEVICE=cpu
    B=${LOGDENSE:-target/wgpu/release/logdense}
    PY=${PYTHON:-bench/.venv/bin/python}
    FASHION=/usr/share/datasets/fashion-mnist
    [ -x "$B" ] || { echo "no $B: run bench/gpu_check.sh --prepare-dry first" >&2; exit 2; }
    # Small networks: what lavapipe compiles and runs in minutes.
    PARITY_ARGS="--small"
    BENCH_PRESETS=("ld-v1-2-4 --batch 2" "densenet-bc-10-4 --batch 2" "fc-ld-small --input 16 --batch 2")
    BENCH_STEPS="--warmup 1 --steps 2"
    TORCH_PRESETS=(--preset ld-v1-2-4 --preset densenet-bc-10-4 --preset fc-ld-small)
    TORCH_STEPS="--warmup 1 --steps 2 --batch 2"
    SWEEP_ARGS="--sweep-n 4 --sweep-n 8 --batch 2 --steps 1"
    SEG_ARGS="--size 32 --train 64 --test 16"
    SEG_TRAIN="--crop 16 --batch-size 4 --finetune-epochs 0"
    : "${SEG_EPOCHS:=1}" "${SEG_SECONDS:=120}"
    LIMIT_PARITY=300 LIMIT_BENCH=300 LIMIT_TORCH=300 LIMIT_SWEEP=600
else
    DEVICE=vulkan
    TORCH_DEVICE=cuda
    PY=${PYTHON:-python3}
    FASHION=.gpu/fashion-mnist
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
    PARITY_ARGS=""
    BENCH_PRESETS=("ld-v1-12-16" "ld-v1-32-24" "densenet-bc-100-12" "fc-ld-103")
    BENCH_STEPS="--warmup 2 --steps 5"
    TORCH_PRESETS=(--preset ld-v1-12-16 --preset ld-v1-32-24 --preset densenet-bc-100-12 --preset fc-ld-103)
    TORCH_STEPS="--warmup 3 --steps 10"
    SWEEP_ARGS="--sweep-n 12 --sweep-n 52 --sweep-n 100 --steps 2"
    SEG_ARGS="--size 64 --train 12500 --test 500"
    SEG_TRAIN=""
    : "${SEG_EPOCHS:=6}" "${SEG_SECONDS:=150}"
    LIMIT_PARITY=100 LIMIT_BENCH=120 LIMIT_TORCH=75 LIMIT_SWEEP=150
fi
nproc | tee -a "$OUT/summary.txt"
echo "device $DEVICE, PyTorch on $TORCH_DEVICE, binary $B" | tee -a "$OUT/summary.txt"

# Stages to run (default: all), e.g. `bench/gpu_check.sh parity bench`.
STAGES=" ${*:-parity bench torch sweep seg} "
want() { [[ "$STAGES" == *" $1 "* ]]; }

if want parity; then
    stage "device parity: forward, every gradient and one SGD step on $DEVICE against the CPU"
    # shellcheck disable=SC2086
    timeout $LIMIT_PARITY $B check-device --device $DEVICE $PARITY_ARGS 2>&1 | tee "$OUT/parity.log"
    echo "parity exit ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"
    stage "device parity on plain ops"
    # shellcheck disable=SC2086
    timeout $LIMIT_PARITY $B check-device --device $DEVICE $PARITY_ARGS --plain 2>&1 |
        tee -a "$OUT/parity.log"
    echo "parity (plain) exit ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"
fi

if want bench; then
    # One preset per process, so that a slow one (the first steps compile every kernel) costs
    # only its own limit; one JSON array per line.
    for path in "" "--no-fused"; do
        for args in "${BENCH_PRESETS[@]}"; do
            stage "logdense bench --device $DEVICE $path --preset $args"
            # shellcheck disable=SC2086
            timeout $LIMIT_BENCH $B bench --device $DEVICE $BENCH_STEPS $path --json \
                --preset $args 2>>"$OUT/errors.log" | tr -d '\n' >>"$OUT/bench-$DEVICE.jsonl"
            status=${PIPESTATUS[0]}
            echo >>"$OUT/bench-$DEVICE.jsonl"
            echo "exit $status (124: over the time limit)" | tee -a "$OUT/summary.txt"
        done
    done
fi

if want torch; then
    for setting in "" "--bf16"; do
        stage "PyTorch on $TORCH_DEVICE ${setting:-fp32}, the same presets"
        # shellcheck disable=SC2086
        timeout $LIMIT_TORCH $PY bench/pytorch_reference.py --device $TORCH_DEVICE --logdense $B \
            $TORCH_STEPS $setting --json "${TORCH_PRESETS[@]}" \
            >"$OUT/bench-torch${setting/--/-}.json" 2>>"$OUT/errors.log"
        echo "torch ${setting:-fp32} exit $?" | tee -a "$OUT/summary.txt"
    done
fi

if want sweep; then
    for path in "" "--no-fused"; do
        stage "memory sweep on $DEVICE $path: LOG against DENSE V1, g = 24"
        # shellcheck disable=SC2086
        timeout $LIMIT_SWEEP $B bench --memory-sweep --device $DEVICE $path $SWEEP_ARGS \
            >>"$OUT/sweep-$DEVICE.txt" 2>>"$OUT/errors.log"
        echo "sweep $path exit $?" | tee -a "$OUT/summary.txt"
    done
fi

if want seg; then
    stage "fashion-scenes on $DEVICE: the CPU recipe for $SEG_EPOCHS epochs, at most $SEG_SECONDS s"
    # shellcheck disable=SC2086
    $B data fashion-scenes --fashion $FASHION --out /tmp/scenes $SEG_ARGS >/dev/null
    # shellcheck disable=SC2086
    timeout $((SEG_SECONDS + 45)) $B segment train --config configs/fashion-scenes.toml \
        --device $DEVICE --data /tmp/scenes --epochs "$SEG_EPOCHS" $SEG_TRAIN \
        --max-minutes "$(python3 -c "print($SEG_SECONDS / 60)")" --out /tmp/seg --overwrite 2>&1 |
        tr '\r' '\n' | grep -v '^\s*$' | tail -40 >"$OUT/seg.log"
    echo "seg exit ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"
    cp /tmp/seg/metrics.csv "$OUT/seg-metrics.csv" 2>/dev/null
    timeout 45 $B segment eval --run /tmp/seg --data /tmp/scenes --device $DEVICE --flip-tta \
        2>&1 | tail -30 >>"$OUT/seg.log"
fi
stage "done"
