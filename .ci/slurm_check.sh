#!/usr/bin/env bash
# A real Slurm on this machine (Debian's slurmctld, slurmd and munge, started by hand: no
# systemd, no accounting, no cgroups): `logdense reproduce table1 --slurm --submit` runs a tiny
# grid as a job array with a dependent report job, one array task is cancelled part-way,
# the array is resubmitted, and the report must merge every run exactly once with the numbers
# of the same grid run in one process. If Slurm cannot be started, this fails and prints the
# daemons' logs. Run by .ci/run as root; LOGDENSE names the binary (default: the release one).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${LOGDENSE:-target/release/logdense}")
[ -x "$BIN" ] || { echo "slurm_check: no $BIN (cargo build --release -p logdense)" >&2; exit 1; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y slurmctld slurmd slurm-client munge >/dev/null
fi

W=$(mktemp -d /tmp/logdense-slurm.XXXXXX)
H=$(hostname -s)
CPUS=$(nproc)
PIDS=()
stop() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$W/slurmd.pid" ] && kill "$(cat "$W/slurmd.pid")" 2>/dev/null || true
    [ -f "$W/slurmctld.pid" ] && kill "$(cat "$W/slurmctld.pid")" 2>/dev/null || true
    [ -f /run/munge/munged.pid ] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
}
fail() {
    echo "slurm_check: FAILED: $*" >&2
    for f in "$W"/*.log /run/munge/munged.log "$W"/out/table1/slurm/*.log; do
        [ -f "$f" ] && { echo "== $f" >&2; tail -n 30 "$f" >&2; }
    done
    stop
    exit 1
}
trap stop EXIT

cat >"$W/slurm.conf" <<EOF
ClusterName=logdense
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/slurmctld.log
SlurmdLogFile=$W/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$H NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF
mkdir -p "$W/state" "$W/spool" /run/munge
chown munge:munge /run/munge
export SLURM_CONF=$W/slurm.conf

start=$SECONDS
# munged runs as its own user, so its files live in its own directory.
runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid \
    --log-file=/run/munge/munged.log || fail "munged did not start"
munge -n | unmunge >/dev/null || fail "munge cannot encode and decode a credential"
/usr/sbin/slurmctld -f "$W/slurm.conf" || fail "slurmctld did not start"
/usr/sbin/slurmd -f "$W/slurm.conf" || fail "slurmd did not start"
for _ in $(seq 60); do
    [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && break
    sleep 0.5
done
[ "$(sinfo -h -o %t 2>/dev/null)" = idle ] || fail "the node did not become idle: $(sinfo 2>&1)"
echo "slurm_check: Slurm $(sinfo -V | cut -d' ' -f2) up on $H in $((SECONDS - start)) s"

# A tiny table1 grid: 4 runs of 2 epochs plus the final-head-only one, on loader-free batching
# so that every rerun is bit-exact. Each array task takes every CPU, so they run in turn.
GRID=(table1 --quick --seeds 1 --subset 1200 --test-subset 200 --epochs 2 --workers 0)
OUT=$W/out
submit() {
    "$BIN" reproduce "${GRID[@]}" --out "$OUT" --slurm --array-size 4 \
        --sbatch-arg=--cpus-per-task="$CPUS" --submit | tee -a "$W/submit.txt" | tail -n 1
}
wait_for() { # job id, seconds
    for _ in $(seq $(($2 * 5))); do
        [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
        sleep 0.2
    done
    fail "job $1 still queued after $2 s: $(squeue)"
}
line=$(submit)
array=$(sed -n 's/.*array_job=\([0-9]*\).*/\1/p' <<<"$line")
report=$(sed -n 's/.*report_job=\([0-9]*\).*/\1/p' <<<"$line")
[ -n "$array" ] && [ -n "$report" ] || fail "no job ids in: $line"
echo "slurm_check: array job $array, report job $report"

# Cancel task 1 (the plan's second run) once its first epoch's checkpoint is written.
victim=$OUT/table1/n-n24-g4-s1
for _ in $(seq 600); do
    [ -f "$victim/checkpoint.ldck" ] && break
    sleep 0.1
done
[ -f "$victim/checkpoint.ldck" ] || fail "task 1 wrote no checkpoint"
scancel "${array}_1"
echo "slurm_check: cancelled task ${array}_1 after its first checkpoint"
wait_for "$array" 240
wait_for "$report" 60
[ ! -f "$victim/summary.json" ] || fail "the cancelled run finished anyway"
"$BIN" reproduce status --out "$OUT" | tee "$W/status1.txt"
grep -q "^interrupted .*n-n24-g4-s1" "$W/status1.txt" || fail "status does not list the cancelled run as interrupted"
grep -q "3 finished runs" "$OUT/table1/slurm/report.log" \
    || fail "the first report did not merge the 3 finished runs: $(cat "$OUT/table1/slurm/report.log")"

# Resubmit the same array: the three finished runs are skipped, the cancelled one resumed.
line=$(submit)
array=$(sed -n 's/.*array_job=\([0-9]*\).*/\1/p' <<<"$line")
report=$(sed -n 's/.*report_job=\([0-9]*\).*/\1/p' <<<"$line")
wait_for "$array" 240
wait_for "$report" 60
grep -q "4 finished runs" "$OUT/table1/slurm/report.log" \
    || fail "the second report did not merge 4 runs: $(cat "$OUT/table1/slurm/report.log")"
skipped=$(cat "$OUT"/table1/slurm/task-*.log | grep -c "finished, skipped" || true)
[ "$skipped" -eq 3 ] || fail "the resubmitted array skipped $skipped finished runs, not 3"
grep -q "resumed" "$OUT/table1/slurm/task-1.log" || fail "task 1 did not resume its run"
"$BIN" reproduce status --out "$OUT" | tee "$W/status2.txt"
grep -q "^4 runs: 4 done" "$W/status2.txt" || fail "status after the resubmission: $(cat "$W/status2.txt")"

# The same grid in one process: the same numbers, each run once.
"$BIN" reproduce "${GRID[@]}" --out "$W/single" >"$W/single.log" 2>&1 || fail "the one-process grid failed"
numbers() { # runs.csv without the wall_s column, sorted
    python3 - "$1" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for r in sorted(rows, key=lambda r: (r["label"], r["seed"])):
    r.pop("wall_s", None)
    print(",".join(f"{k}={v}" for k, v in r.items()))
EOF
}
numbers "$OUT/table1/runs.csv" >"$W/cluster.csv"
numbers "$W/single/table1/runs.csv" >"$W/single.csv"
[ "$(wc -l <"$W/cluster.csv")" -eq 4 ] || fail "runs.csv of the cluster holds $(wc -l <"$W/cluster.csv") runs, not 4"
diff "$W/cluster.csv" "$W/single.csv" || fail "the cluster's runs differ from the one-process grid"
echo "slurm_check: passed in $((SECONDS - start)) s: 4 runs, one cancelled and resumed, the same numbers as one process"
stop
trap - EXIT
rm -rf "$W"
