#!/usr/bin/env bash
# Side-by-side: `logdense bench` against bench/pytorch_reference.py, in turns.
#
#   bench/compare.sh [PRESET ...]        (default: ld-v1-12-16 ld-v1-32-24 densenet-bc-100-12 fc-ld-103)
#
# For every preset, ROUNDS rounds of (ours, PyTorch), each run a fresh process, so that both
# see the same machine state and each peak RSS is the preset's own; the best round of each
# side (highest images/s) is reported. Classification presets run at batch BATCH (64), the
# FC networks (fc-*) at FC_BATCH (1, 224x224). Both sides get THREADS threads
# (RAYON_NUM_THREADS for ours, torch.set_num_threads for PyTorch).
#
# Ours runs in each of OURS_PRECISIONS (default: f32 bf16; `logdense bench --precision`), PyTorch
# in each of TORCH_SETTINGS (default: all four): fp32 (NCHW, what a plain model does), fp32-cl
# (channels_last), bf16 (torch.autocast bfloat16) and bf16-cl. The table sets our f32 beside
# PyTorch's best fp32 setting and our bf16 beside its best bf16 setting, with the ratios.
#
# Environment: LOGDENSE (our binary; built if missing), PYTHON (default bench/.venv/bin/python;
# without PyTorch only our side runs), THREADS (2), ROUNDS (2), WARMUP (2), STEPS (10),
# BATCH (64), FC_BATCH (1), OURS_PRECISIONS, TORCH_SETTINGS, OUT (a directory to keep the raw JSON in).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
LOGDENSE=${LOGDENSE:-$root/target/release/logdense}
PYTHON=${PYTHON:-$root/bench/.venv/bin/python}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-2}
STEPS=${STEPS:-10}
BATCH=${BATCH:-64}
FC_BATCH=${FC_BATCH:-1}
TORCH_SETTINGS=${TORCH_SETTINGS:-fp32 fp32-cl bf16 bf16-cl}
OURS_PRECISIONS=${OURS_PRECISIONS:-f32 bf16}
for precision in $OURS_PRECISIONS; do
    case "$precision" in
        f32|bf16) ;;
        *) echo "OURS_PRECISIONS: unknown precision '$precision' (f32, bf16)" >&2; exit 2 ;;
    esac
done
for setting in $TORCH_SETTINGS; do
    case "$setting" in
        fp32|fp32-cl|bf16|bf16-cl) ;;
        *) echo "TORCH_SETTINGS: unknown setting '$setting' (fp32, fp32-cl, bf16, bf16-cl)" >&2; exit 2 ;;
    esac
done

if [ "$#" -gt 0 ]; then
    presets=("$@")
else
    presets=(ld-v1-12-16 ld-v1-32-24 densenet-bc-100-12 fc-ld-103)
fi

if [ ! -x "$LOGDENSE" ]; then
    echo "building $LOGDENSE ..." >&2
    (cd "$root" && cargo build --release -p logdense >&2)
fi

have_torch=1
if [ ! -x "$PYTHON" ] || ! "$PYTHON" -c 'import torch' >/dev/null 2>&1; then
    have_torch=0
    echo "no PyTorch at $PYTHON: running ours only." >&2
    echo "  (python3 -m venv bench/.venv && bench/.venv/bin/pip install torch)" >&2
fi

if [ -n "${OUT:-}" ]; then
    work=$OUT
    mkdir -p "$work"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi

cores=$(nproc)  # before OMP_NUM_THREADS is set: nproc honours it
load=$(cut -d ' ' -f 1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    echo "warning: load average $load before starting: the numbers will be noisy (PyTorch's" >&2
    echo "  OpenMP threads slow down badly when another process holds a core)" >&2
fi

export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

for p in "${presets[@]}"; do
    case "$p" in
        fc-*) b=$FC_BATCH ;;
        *) b=$BATCH ;;
    esac
    for r in $(seq 1 "$ROUNDS"); do
        for precision in $OURS_PRECISIONS; do
            echo "[$p] round $r/$ROUNDS: logdense $precision (batch $b)" >&2
            "$LOGDENSE" bench --preset "$p" --batch "$b" --warmup "$WARMUP" --steps "$STEPS" \
                --precision "$precision" --json >"$work/ours_$precision-$p-$r.json"
        done
        if [ "$have_torch" = 1 ]; then
            for setting in $TORCH_SETTINGS; do
                flags=()
                case "$setting" in *-cl) flags+=(--channels-last) ;; esac
                case "$setting" in bf16*) flags+=(--bf16) ;; esac
                echo "[$p] round $r/$ROUNDS: pytorch $setting (batch $b)" >&2
                "$PYTHON" "$root/bench/pytorch_reference.py" --preset "$p" --batch "$b" \
                    --warmup "$WARMUP" --steps "$STEPS" --threads "$THREADS" \
                    --logdense "$LOGDENSE" "${flags[@]}" --json >"$work/torch_$setting-$p-$r.json"
            done
        fi
    done
done

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1 || true)

torch_version=none
if [ "$have_torch" = 1 ]; then
    torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__)')
fi

python3 - "$work" "$ROUNDS" "$TORCH_SETTINGS" "$OURS_PRECISIONS" "${presets[@]}" <<'EOF'
import json, os, sys

work, rounds, settings, ours_precisions, presets = (
    sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), sys.argv[5:])

def load(side, p):
    runs = []
    for r in range(1, rounds + 1):
        path = os.path.join(work, f"{side}-{p}-{r}.json")
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path) as f:
                text = f.read()
            # The JSON starts at the first line that opens a list or an object.
            lines = text.splitlines(keepends=True)
            start = next(i for i, l in enumerate(lines) if l.lstrip()[:1] in "[{")
            data = json.loads("".join(lines[start:]))
            data = data if isinstance(data, list) else [data]
            runs += [d for d in data if d["preset"] == p]
    return runs

def best(runs, key):
    return max((d[key] for d in runs), default=None)

def best_setting(settings, p, key):
    """PyTorch's best (value, setting) over `settings` for preset p."""
    found = [(best(load(f"torch_{s}", p), key), s) for s in settings]
    found = [f for f in found if f[0] is not None]
    return max(found, default=(None, "-"))

def fmt(x, spec="9.1f"):
    return format(x, spec) if x is not None else format("-", ">" + spec.rstrip("f").split(".")[0])

def ratio(a, b):
    return fmt(a / b, "6.2f") if a is not None and b else fmt(None, "6.2f")

fp32, bf16 = [s for s in settings if s.startswith("fp32")], [s for s in settings if s.startswith("bf16")]
mem = lambda runs: min((d["peak_rss_bytes"] for d in runs if d.get("peak_rss_bytes")), default=None)
def ours(precision, p):
    """Our runs of preset p in `precision`, only where the kernels really ran in it."""
    runs = load(f"ours_{precision}", p) if precision in ours_precisions else []
    return [d for d in runs if d.get("precision", "f32") == precision]

for what, key in (("training", "train_img_per_s"), ("inference", "infer_img_per_s")):
    print(f"{what}, images/s (best of the rounds); ratio = ours / PyTorch's (> 1: ours is faster)")
    print(f"{'preset':<20} {'batch':>5} {'ours f32':>9} {'torch fp32':>10} {'setting':>8} {'ratio':>6}"
          f" {'ours bf16':>9} {'torch bf16':>10} {'setting':>8} {'ratio':>6}")
    for p in presets:
        o32, o16 = ours("f32", p), ours("bf16", p)
        batch = ((o32 or o16) or [{"batch": "-"}])[0]["batch"]
        a, b = best(o32, key), best(o16, key)
        f, fs = best_setting(fp32, p, key)
        h, hs = best_setting(bf16, p, key)
        print(f"{p:<20} {batch:>5} {fmt(a, '9.1f')} {fmt(f, '10.1f')} {fs:>8} {ratio(a, f)}"
              f" {fmt(b, '9.1f')} {fmt(h, '10.1f')} {hs:>8} {ratio(b, h)}")
    print()
print("peak RSS (VmHWM) of each process, MiB; ratio = our highest / PyTorch's lowest")
print(f"{'preset':<20} {'ours f32':>9} {'ours bf16':>9}" + "".join(f" {s:>8}" for s in settings)
      + f" {'ratio':>6}")
for p in presets:
    o = [mem(ours(q, p)) for q in ("f32", "bf16")]
    ts = [mem(load(f"torch_{s}", p)) for s in settings]
    lowest = min((t for t in ts if t), default=None)
    highest = max((x for x in o if x), default=None)
    print(f"{p:<20}" + "".join(f" {fmt(x and x / 2**20, '9.0f')}" for x in o)
          + "".join(f" {fmt(t and t / 2**20, '8.0f')}" for t in ts) + f" {ratio(highest, lowest)}")
if "bf16" in ours_precisions and not any(ours("bf16", p) for p in presets):
    print("(no bf16 column: this CPU has no AMX tiles, so `--precision bf16` ran in f32)")
EOF
echo "machine: ${cpu:-unknown CPU}, $cores cores available; threads per side: $THREADS;" \
    "rounds: $ROUNDS, warm-up $WARMUP, median of $STEPS steps; PyTorch $torch_version;" \
    "load average at start: $load"
