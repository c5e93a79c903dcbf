#!/usr/bin/env bash
# Sharded batch run on one machine: N shards of `medsynth generate` or `medsynth composite` in
# parallel (each --shard K/N --resume), then `medsynth manifest merge`. The union of the shards is
# byte for byte one unsharded run; rerunning after a crash or kill finishes only what is missing.
#
#   scripts/cluster/batch_generate.sh [-n SHARDS] [-j PARALLEL] generate --model M --count 1000 --out DIR [--seed S ...]
#   scripts/cluster/batch_generate.sh -n 4 composite --backgrounds B --lesions L --out DIR
#
# SHARDS defaults to the number of cores, PARALLEL (shards running at once) to SHARDS. Each shard
# logs to DIR/.logs/shard-K-of-N.log with one JSON progress object per line. The binary is
# $MEDSYNTH, else `medsynth` on PATH, else this checkout's .build/release/medsynth.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

shards=$(nproc 2>/dev/null || echo 2)
parallel=""
while getopts "n:j:h" opt; do
  case "$opt" in
    n) shards=$OPTARG ;;
    j) parallel=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || usage
command=$1; shift
case "$command" in generate|composite) ;; *) echo "batch_generate.sh: the command must be generate or composite, got '$command'" >&2; exit 2 ;; esac
[[ "$shards" =~ ^[1-9][0-9]*$ ]] || { echo "batch_generate.sh: -n must be a positive integer, got '$shards'" >&2; exit 2; }
parallel=${parallel:-$shards}
[[ "$parallel" =~ ^[1-9][0-9]*$ ]] || { echo "batch_generate.sh: -j must be a positive integer, got '$parallel'" >&2; exit 2; }

# --out and --count from the arguments (both "--out X" and "--out=X").
out="" count=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --out) out=${args[i+1]:-} ;;
    --out=*) out=${args[i]#--out=} ;;
    --count) count=${args[i+1]:-} ;;
    --count=*) count=${args[i]#--count=} ;;
    --shard|--shard=*) echo "batch_generate.sh: do not pass --shard, the script sets it" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "batch_generate.sh: the $command arguments need --out DIR" >&2; exit 2; }

if [ -n "${MEDSYNTH:-}" ]; then bin=$MEDSYNTH
elif command -v medsynth >/dev/null 2>&1; then bin=$(command -v medsynth)
else bin="$(cd "$(dirname "$0")/../.." && pwd)/.build/release/medsynth"; fi
[ -x "$bin" ] || { echo "batch_generate.sh: no medsynth binary at '$bin' (set MEDSYNTH or run swift build -c release)" >&2; exit 2; }

mkdir -p "$out/.logs"
# Threads per shard: share the cores instead of oversubscribing them.
cores=$(nproc 2>/dev/null || echo 1)
threads=$(( cores / parallel )); [ "$threads" -ge 1 ] || threads=1
thread_args=()
if [ "$command" = generate ]; then thread_args=(--threads "$threads"); fi

pids=() failed=0
run_shard() {
  local k=$1; shift
  local log="$out/.logs/shard-$k-of-$shards.log"
  "$bin" "$command" "$@" --shard "$k/$shards" --resume --progress json "${thread_args[@]}" >"$log" 2>&1
}
wait_one() {  # waits for the oldest running shard; records a failure
  local pid=${pids[0]} k=${shard_of[0]}
  pids=("${pids[@]:1}"); shard_of=("${shard_of[@]:1}")
  if ! wait "$pid"; then
    echo "batch_generate.sh: shard $k/$shards failed; last lines of $out/.logs/shard-$k-of-$shards.log:" >&2
    tail -n 3 "$out/.logs/shard-$k-of-$shards.log" >&2 || true
    failed=1
  fi
}
shard_of=()
for ((k = 0; k < shards; k++)); do
  [ ${#pids[@]} -lt "$parallel" ] || wait_one
  ( run_shard "$k" "${args[@]}" ) &
  pids+=($!); shard_of+=("$k")
  echo "batch_generate.sh: started shard $k/$shards (pid $!)" >&2
done
while [ ${#pids[@]} -gt 0 ]; do wait_one; done
if [ "$failed" -ne 0 ]; then
  echo "batch_generate.sh: some shards failed; fix the cause and rerun the same command (finished work is kept)" >&2
  exit 1
fi

expect_args=()
if [ "$command" = generate ] && [ -n "$count" ]; then expect_args=(--expect "$count"); fi
"$bin" manifest merge "$out" "${expect_args[@]}"
