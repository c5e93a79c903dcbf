#!/usr/bin/env bash
# End-to-end test of the SLURM path on a real single-node cluster brought up on this machine from
# Debian's packages (slurm-wlm, munge): a private munge key and munged, a slurm.conf naming this
# host with its CPUs (loopback only, private ports, state and logs in a temporary folder),
# slurmctld and slurmd. It trains a tiny GAN, submits the sharded array job and the dependent
# merge job with scripts/cluster/slurm_submit.sh (sbatch), waits for them, checks that the merged output
# equals one unsharded run file for file (SHA-256), and shuts the daemons down.
#
#   MEDSYNTH=.build/release/medsynth scripts/cluster/test_slurm.sh
#
# Prints "SKIPPED: reason" and exits 0 when it cannot run (not root, no apt-get, packages not
# installable); prints "PASSED" and exits 0 on success; "FAILED: reason" and exits 1 otherwise.
# Every wait has a time limit, taken from an overall budget of MEDSYNTH_SLURM_BUDGET seconds
# (default 170); the run itself takes about 15 s once the packages are installed.
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
budget=${MEDSYNTH_SLURM_BUDGET:-170}
skip() { echo "SKIPPED: $*"; exit 0; }
# cap N: N seconds, or what is left of the budget if less (at least 1).
cap() { local left=$((budget - SECONDS)); [ "$left" -lt "$1" ] && echo $((left > 1 ? left : 1)) || echo "$1"; }

[ "$(id -u)" = 0 ] || skip "needs root to start munged, slurmctld and slurmd (running as $(id -un))"
if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || skip "slurm-wlm and munge are not installed and there is no apt-get"
  export DEBIAN_FRONTEND=noninteractive
  # Leave 60 s of the budget for the test itself; an install cut short is finished by the next run.
  apt_budget=$((budget - 60))
  [ "$apt_budget" -ge 20 ] || skip "slurm-wlm and munge are not installed and the time budget ($budget s) leaves no room to install them"
  apt_left() { local left=$((apt_budget - SECONDS)); echo $((left > 1 ? left : 1)); }
  timeout 30 dpkg --configure -a >/dev/null 2>&1 || true
  if ! timeout "$(apt_left)" apt-get install -y -qq slurm-wlm munge >/tmp/medsynth-slurm-apt.log 2>&1; then
    { timeout "$(apt_left)" apt-get update -qq && timeout "$(apt_left)" apt-get install -y -qq slurm-wlm munge; } >>/tmp/medsynth-slurm-apt.log 2>&1 \
      || skip "cannot install slurm-wlm and munge with apt-get within $apt_budget s (see /tmp/medsynth-slurm-apt.log)"
  fi
fi

if [ -n "${MEDSYNTH:-}" ]; then bin=$MEDSYNTH
elif [ -x "$repo/.build/release/medsynth" ]; then bin=$repo/.build/release/medsynth
else bin=$repo/.build/debug/medsynth; fi
[ -x "$bin" ] || { echo "FAILED: no medsynth binary at $bin (build first or set MEDSYNTH)"; exit 1; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

work=$(mktemp -d /tmp/medsynth-slurm.XXXXXX)
chmod 700 "$work"
pids=()
keep=${MEDSYNTH_SLURM_KEEP:-0}
cleanup() {
  if [ -n "${SLURM_CONF:-}" ] && [ -f "${SLURM_CONF}" ]; then timeout 10 scancel --quiet --user root >/dev/null 2>&1 || true; fi
  # Stop only the daemons this script started, by their process ids, newest first.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break; sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${keep:-0}" = 1 ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo "FAILED: interrupted"; exit 1' TERM INT
fail() {
  echo "FAILED: $*"
  for log in "$work"/slurmctld.log "$work"/slurmd.log "$work"/munged.log "$work"/sharded/.logs/*; do
    [ -f "$log" ] && { echo "--- $log" >&2; tail -n 15 "$log" >&2; }
  done
  keep=1; exit 1
}
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.5 s until it succeeds
  local limit; limit=$(cap "$1"); local what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${limit}s waiting for $what"
    sleep 0.5
  done
}

# 1. munge: a private key, socket and state in $work.
dd if=/dev/urandom of="$work/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge.key"
munged --force --key-file="$work/munge.key" --socket="$work/munge.socket" --pid-file="$work/munged.pid" \
  --log-file="$work/munged.log" --seed-file="$work/munged.seed" --foreground >/dev/null 2>&1 &
pids+=($!)
wait_for 15 "munged" munge --socket="$work/munge.socket" -n

# 2. slurm.conf for this host: its name and CPU count, loopback address, private ports.
host=$(hostname -s)
cpus=$(nproc)
port=$((20000 + RANDOM % 20000))
mkdir -p "$work/state" "$work/spool"
cat >"$work/slurm.conf" <<CONF
ClusterName=medsynthtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge.socket
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$work/slurm.conf

# 3. The daemons, in the foreground of background jobs so their ids are ours to stop.
slurmctld -D -i -f "$SLURM_CONF" >>"$work/slurmctld.log" 2>&1 &
pids+=($!)
wait_for 30 "slurmctld to answer" timeout 5 scontrol ping
slurmd -D -f "$SLURM_CONF" -N "$host" >>"$work/slurmd.log" 2>&1 &
pids+=($!)
node_idle() { timeout 5 sinfo -h -n "$host" -o %T | grep -qx idle; }
wait_for 40 "node $host to become idle" node_idle
echo "slurm is up: node $host with $cpus CPUs, controller on port $port" >&2

# 4. A tiny model, made in seconds.
timeout "$(cap 120)" "$bin" train gan --data "$repo/datasets/mni64" --out "$work/gan" --image-size 16 --width 8 --steps 5 \
  --batch 8 --checkpoint-every 5 --sample-every 100 --progress none --threads 1 >"$work/train.log" 2>&1 \
  || fail "training the tiny GAN failed ($(tail -n 1 "$work/train.log"))"

# 5. The array job (3 shards) and the dependent merge job, through sbatch.
export MEDSYNTH=$bin
count=10
ids=$(cd "$work" && timeout 20 "$repo/scripts/cluster/slurm_submit.sh" 3 generate --model "$work/gan" --count "$count" --seed 7 \
  --out "$work/sharded" --batch 4) || fail "sbatch submission failed"
read -r array_id merge_id <<<"$ids"
echo "array job $array_id, merge job $merge_id" >&2
# Meanwhile the reference: one unsharded run.
timeout "$(cap 60)" "$bin" generate --model "$work/gan" --count "$count" --seed 7 --out "$work/whole" --progress none --threads 1 >/dev/null \
  || fail "the unsharded reference run failed"
jobs_gone() { [ -z "$(timeout 5 squeue -h -j "$array_id,$merge_id" -o %i 2>/dev/null)" ]; }
wait_for 120 "the array and merge jobs to finish" jobs_gone
merge_state=$(timeout 5 scontrol show job "$merge_id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1)
[ "$merge_state" = "JobState=COMPLETED" ] || fail "merge job $merge_id ended with ${merge_state:-an unknown state}"
for task in 0 1 2; do
  state=$(timeout 5 scontrol show job "${array_id}_$task" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1)
  [ "$state" = "JobState=COMPLETED" ] || fail "array task $task ended with ${state:-an unknown state}"
done

# 6. The merged folder must be the unsharded run, file for file.
hashes() { (cd "$1" && sha256sum manifest.jsonl sample_*.png); }
[ -f "$work/sharded/manifest.jsonl" ] || fail "the merge job wrote no manifest.jsonl"
[ "$(ls "$work/sharded"/sample_*.png | wc -l)" = "$count" ] || fail "expected $count samples in the sharded output"
diff <(hashes "$work/whole") <(hashes "$work/sharded") >&2 || fail "the merged sharded run differs from the unsharded run"
for k in 0 1 2; do [ -f "$work/sharded/manifest.shard-$k-of-3.jsonl" ] || fail "shard $k wrote no manifest"; done
echo "PASSED: SLURM array job of 3 shards + afterok merge job = one unsharded run ($count samples, SHA-256 equal)"
