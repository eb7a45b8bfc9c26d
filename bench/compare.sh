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
# Environment: LOGDENSE (our binary; built if missing), PYTHON (default bench/.venv/bin/python;
# without PyTorch only our side runs), THREADS (2), ROUNDS (2), WARMUP (2), STEPS (10),
# BATCH (64), FC_BATCH (1), OUT (a directory to keep the raw JSON in).
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
        echo "[$p] round $r/$ROUNDS: logdense (batch $b)" >&2
        "$LOGDENSE" bench --preset "$p" --batch "$b" --warmup "$WARMUP" --steps "$STEPS" \
            --json >"$work/ours-$p-$r.json"
        if [ "$have_torch" = 1 ]; then
            echo "[$p] round $r/$ROUNDS: pytorch (batch $b)" >&2
            "$PYTHON" "$root/bench/pytorch_reference.py" --preset "$p" --batch "$b" \
                --warmup "$WARMUP" --steps "$STEPS" --threads "$THREADS" \
                --logdense "$LOGDENSE" --json >"$work/torch-$p-$r.json"
        fi
    done
done

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1 || true)

torch_version=none
if [ "$have_torch" = 1 ]; then
    torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__)')
fi

python3 - "$work" "$ROUNDS" "${presets[@]}" <<'EOF'
import json, os, sys

work, rounds, presets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

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

def fmt(x, spec="9.1f"):
    return format(x, spec) if x is not None else format("-", ">" + spec.rstrip("f").split(".")[0])

def ratio(a, b):
    return fmt(a / b, "6.2f") if a is not None and b else fmt(None, "6.2f")

print(f"{'preset':<20} {'batch':>5} {'ours train':>10} {'torch train':>11} {'ratio':>6}"
      f" {'ours infer':>10} {'torch infer':>11} {'ratio':>6} {'ours MiB':>8} {'torch MiB':>9}")
for p in presets:
    ours, torch = load("ours", p), load("torch", p)
    batch = (ours or torch or [{"batch": "-"}])[0]["batch"]
    ot, tt = best(ours, "train_img_per_s"), best(torch, "train_img_per_s")
    oi, ti = best(ours, "infer_img_per_s"), best(torch, "infer_img_per_s")
    mem = lambda runs: (min((d["peak_rss_bytes"] for d in runs if d.get("peak_rss_bytes")),
                            default=None))
    om, tm = mem(ours), mem(torch)
    print(f"{p:<20} {batch:>5} {fmt(ot, '10.1f')} {fmt(tt, '11.1f')} {ratio(ot, tt)}"
          f" {fmt(oi, '10.1f')} {fmt(ti, '11.1f')} {ratio(oi, ti)}"
          f" {fmt(om and om / 2**20, '8.0f')} {fmt(tm and tm / 2**20, '9.0f')}")
print("images/s, best of the rounds; ratio = ours / PyTorch (> 1: ours is faster);"
      " MiB = peak RSS (VmHWM) of each process")
EOF
echo "machine: ${cpu:-unknown CPU}, $cores cores available; threads per side: $THREADS;" \
    "rounds: $ROUNDS, warm-up $WARMUP, median of $STEPS steps; PyTorch $torch_version;" \
    "load average at start: $load"
