#!/usr/bin/env bash
# Sanitizer fuzz job for every reader of untrusted files (issue 16).
#
#   bash scripts/fuzz.sh [TOTAL_INPUTS]          # default 1,000,000
#
# Builds the in-process driver `medsynth-fuzz` (Sources/medsynth-fuzz) with AddressSanitizer and
# checked -O (Package.swift builds every module checked) in its own scratch path .build-fuzz,
# then feeds it mutants of every committed fixture (PNG, JPEG, DICOM in all its encodings, NIfTI,
# safetensors, NPY) plus crafted manifests, in batches. Input i is a function of (FUZZ_SEED, i), so
# every finding is reproduced with `medsynth-fuzz --dump i --seed S SEEDS...`.
#
# Limits: per input FUZZ_TIMEOUT_MS (default 5000 ms; the driver's watchdog saves the input and
# exits 124), memory FUZZ_MEMORY_MB (default 2048) through ASan's hard_rss_limit_mb and
# max_allocation_size_mb (ulimit -v cannot be used with ASan's shadow memory). A batch that dies
# (sanitizer report, trap, signal) is resumed after the input that killed it.
#
# Environment: FUZZ_SEED (1), FUZZ_BATCH (20000 inputs per process), FUZZ_OUT (.build-fuzz/findings),
# FUZZ_SKIP_BUILD=1 to reuse the last build. Runs under nice -n 10.
# Report: counts of inputs, decoded / refused (MedSynthError) / other errors per reader, crashes,
# sanitizer reports, timeouts, peak RSS; findings (inputs + logs) in FUZZ_OUT.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOTAL="${1:-1000000}"
SEED="${FUZZ_SEED:-1}"
BATCH="${FUZZ_BATCH:-20000}"
TIMEOUT_MS="${FUZZ_TIMEOUT_MS:-5000}"
MEMORY_MB="${FUZZ_MEMORY_MB:-2048}"
SCRATCH="$ROOT/.build-fuzz"
OUT="${FUZZ_OUT:-$SCRATCH/findings}"
mkdir -p "$OUT"

if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
    echo "fuzz: building medsynth-fuzz with -sanitize=address and checked -O in $SCRATCH" >&2
    env -u MEDSYNTH_UNCHECKED_ENGINE nice -n 10 swift build -c release --package-path "$ROOT" --scratch-path "$SCRATCH" \
        --sanitize=address --product medsynth-fuzz >&2 || { echo "fuzz: build failed" >&2; exit 2; }
fi
BIN="$SCRATCH/release/medsynth-fuzz"

# Seeds: every fixture of the readers' tests, plus manifests and an NPY made here.
SEEDS="$OUT/seeds"
rm -rf "$SEEDS"
mkdir -p "$SEEDS"
cat > "$SEEDS/generate.jsonl" <<'EOF'
{"file":"sample_000000.png","class":"healthy","seed":7,"sample_index":0,"model_id":"m","model_kind":"dcgan","source":"synthetic"}
{"file":"sample_000001.png","class":"lesion","seed":7,"sample_index":1,"model_id":"m","model_kind":"dcgan","source":"synthetic"}
{"file":"sample_000002.png","class":"healthy","seed":7,"sample_index":2,"model_id":"m","model_kind":"dcgan","source":"synthetic"}
EOF
cat > "$SEEDS/composite.jsonl" <<'EOF'
{"file":"sample_000000.png","mask":"sample_000001.png","index":0,"instance":1,"seed":3,"model_id":"compositor"}
{"file":"sample_000000.png","mask":"sample_000002.png","index":0,"instance":2,"seed":3,"model_id":"compositor"}
EOF
# Fixtures above 200 KB and the decompression bombs (each costs seconds under ASan; their unit
# tests cover them) are left out so the budget goes to many small mutants.
for folder in MedicalFormatsTests ImagingTests LayersTests GeneratorsTests EvaluationTests CompositorTests; do
    [ -d "$ROOT/Tests/$folder/Fixtures" ] || continue
    find "$ROOT/Tests/$folder/Fixtures" -type f -size -200k ! -name '*bomb*' ! -name '*20M*' ! -name '*.json' ! -name '*.txt' |
        while read -r file; do cp "$file" "$SEEDS/$folder-$(basename "$file")"; done
done
SEED_PATHS=("$SEEDS")

# Swift traps (bounds, overflow) are SIGILL: left to the default action (exit 132) so they count
# as crashes; Swift's own crash backtracer is off (under ASan it cannot suspend threads and exits 1).
export ASAN_OPTIONS="detect_leaks=0:hard_rss_limit_mb=$MEMORY_MB:max_allocation_size_mb=$MEMORY_MB:allocator_may_return_null=0:abort_on_error=0:handle_segv=1:handle_abort=1:handle_sigill=0:handle_sigfpe=1:handle_sigbus=1"
export SWIFT_BACKTRACE=enable=no
STATE="$OUT/state"
SUMMARIES="$OUT/summaries.jsonl"
: > "$SUMMARIES"
crashes=0; sanitizer=0; timeouts=0; died_inputs=0; peak_kb=0
start=0
begin=$(date +%s)
while [ "$start" -lt "$TOTAL" ]; do
    count=$(( TOTAL - start < BATCH ? TOTAL - start : BATCH ))
    echo "-1" > "$STATE"
    nice -n 10 /usr/bin/time -f "%M" -o "$OUT/time.txt" \
        "$BIN" --count "$count" --start "$start" --seed "$SEED" --state "$STATE" --out "$OUT" \
        --timeout-ms "$TIMEOUT_MS" "${SEED_PATHS[@]}" > "$OUT/summary.json" 2> "$OUT/stderr.txt"
    rc=$?
    rss=$(tail -n 1 "$OUT/time.txt" 2>/dev/null | tr -dc '0-9'); rss=${rss:-0}
    [ "$rss" -gt "$peak_kb" ] && peak_kb=$rss
    # A batch is complete only when it printed its summary (exit 1 = some "other errors").
    if { [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ]; } && tail -n 1 "$OUT/summary.json" | grep -q '"counts"'; then
        tail -n 1 "$OUT/summary.json" >> "$SUMMARIES"
        start=$(( start + count ))
        continue
    fi
    index=$(tr -dc '0-9' < "$STATE"); index=${index:-$start}
    died_inputs=$(( died_inputs + index - start + 1 ))
    if [ "$rc" -eq 124 ]; then
        timeouts=$(( timeouts + 1 ))
        kind=timeout
    elif grep -q "AddressSanitizer\|LeakSanitizer\|UndefinedBehaviorSanitizer" "$OUT/stderr.txt"; then
        sanitizer=$(( sanitizer + 1 ))
        kind=sanitizer
    else
        crashes=$(( crashes + 1 ))
        kind=crash
    fi
    [ "$kind" = timeout ] || "$BIN" --dump "$index" --seed "$SEED" --out "$OUT" "${SEED_PATHS[@]}" > /dev/null 2>&1
    cp "$OUT/stderr.txt" "$OUT/$kind-$index.log"
    echo "fuzz: $kind at input $index (exit $rc, $(ls "$OUT" | grep -m1 -- "-$index-")): $(grep -m1 -E 'ERROR|Fatal|TIMEOUT|failure|error' "$OUT/stderr.txt" | cut -c1-200)" >&2
    start=$(( index + 1 ))
done
seconds=$(( $(date +%s) - begin ))

python3 - "$SUMMARIES" "$TOTAL" "$crashes" "$sanitizer" "$timeouts" "$died_inputs" "$peak_kb" "$seconds" "$OUT" <<'EOF'
import json, sys
path, total, crashes, sanitizer, timeouts, died, peak_kb, seconds, out = sys.argv[1:]
counts, unexpected, slowest, driver_peak = {}, [], {"ms": 0}, 0
for line in open(path):
    line = line.strip()
    if not line:
        continue
    s = json.loads(line)
    for reader, c in s["counts"].items():
        acc = counts.setdefault(reader, {"decoded": 0, "rejected": 0, "unexpected": 0})
        for k, v in c.items():
            acc[k] += v
    unexpected += s["unexpected"]
    driver_peak = max(driver_peak, s["peak_rss_kb"])
    if s["slowest"]["ms"] > slowest["ms"]:
        slowest = s["slowest"]
summarized = sum(sum(c.values()) for c in counts.values())
print(f"fuzz: {total} inputs in {seconds} s ({summarized} in completed batches, {died} in batches ended by a finding)")
for reader, c in sorted(counts.items()):
    print(f"  {reader:12s} decoded {c['decoded']:>8d}  refused with MedSynthError {c['rejected']:>8d}  other errors {c['unexpected']:>4d}")
print(f"  crashes {crashes}, sanitizer reports {sanitizer}, timeouts {timeouts}, other errors {len(unexpected)}")
print(f"  peak RSS per batch (with ASan shadow) {int(peak_kb) // 1024} MB; driver ru_maxrss {driver_peak // 1024} MB")
print(f"  slowest input: {slowest}")
for u in unexpected[:20]:
    print("  other error:", u)
print(f"  findings and logs: {out}")
EOF
[ "$crashes" -eq 0 ] && [ "$sanitizer" -eq 0 ] && [ "$timeouts" -eq 0 ]
