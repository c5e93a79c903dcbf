#!/usr/bin/env bash
# Submits a sharded run to SLURM: an array job of N shards and the manifest merge as a job that
# depends on it (afterok). Prints the two job ids ("ARRAY_ID MERGE_ID") on stdout.
#
#   scripts/cluster/slurm_submit.sh N generate --model M --count 1000 --out DIR [--seed S ...]
#   scripts/cluster/slurm_submit.sh N composite --backgrounds B --lesions L --out DIR
#
# Extra sbatch options (partition, account, time) go in SBATCH_EXTRA, e.g.
# SBATCH_EXTRA="--partition=cpu --account=lab". Logs: DIR/.logs/slurm-<job>_<task>.out.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
shards=$1; shift
[[ "$shards" =~ ^[1-9][0-9]*$ ]] || { echo "slurm_submit.sh: the shard count must be a positive integer, got '$shards'" >&2; exit 2; }
command=$1
out="" count=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --out) out=${args[i+1]:-} ;;
    --out=*) out=${args[i]#--out=} ;;
    --count) count=${args[i+1]:-} ;;
    --count=*) count=${args[i]#--count=} ;;
  esac
done
[ -n "$out" ] || { echo "slurm_submit.sh: the $command arguments need --out DIR" >&2; exit 2; }
mkdir -p "$out/.logs"
read -r -a extra <<< "${SBATCH_EXTRA:-}"
array_id=$(sbatch --parsable "${extra[@]}" --array="0-$((shards - 1))" --output="$out/.logs/slurm-%A_%a.out" \
  "$here/slurm_generate.sbatch" "$@")
array_id=${array_id%%;*}
merge_args=("$out"); [ "$command" = generate ] && [ -n "$count" ] && merge_args+=("$count")
merge_id=$(sbatch --parsable "${extra[@]}" --dependency="afterok:$array_id" --kill-on-invalid-dep=yes \
  --output="$out/.logs/slurm-%j-merge.out" "$here/slurm_merge.sbatch" "${merge_args[@]}")
merge_id=${merge_id%%;*}
echo "submitted array job $array_id ($shards shards) and merge job $merge_id (after all succeed)" >&2
echo "$array_id $merge_id"
