#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz; clang-14, ASan + UBSan) into ${FUZZ_BUILD_DIR:-build-fuzz}
# and runs each for FUZZ_SECONDS (default 60) on a copy of its seed corpus
# (tests/fuzz/corpus/<target>), FUZZ_JOBS (default: the core count) at a time. Fails on any
# crash, leak, timeout (-timeout=10 per input), out-of-memory (-rss_limit_mb=2048, also a single
# allocation above it) or sanitizer report; the reproducer is left in
# <build dir>/fuzz-runs/<target>/ and its path printed.
#   bash scripts/fuzz.sh                      # every target
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh attention_fuzzer
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-$(nproc)}
TARGETS=(position_encoding_fuzzer attention_fuzzer logistic_fuzzer discriminator_fuzzer toolkit_fuzzer
         model_store_fuzzer)
if (($# > 0)); then TARGETS=("$@"); fi
start=$(date +%s)

CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRIMSERVE_FUZZ=ON \
  -DPRIMSERVE_BUILD_TESTS=OFF -DPRIMSERVE_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${TARGETS[@]}"
echo "fuzz.sh: built in $(( $(date +%s) - start )) s"

runs=$(cd "$BUILD_DIR" && pwd)/fuzz-runs
# Model-store writes fsync; on tmpfs that costs nothing.
scratch=${TMPDIR:-/tmp}
if [[ -d /dev/shm && -w /dev/shm ]]; then scratch=/dev/shm; fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1

# One target: copy its corpus, fuzz, judge the log. Prints one summary line.
run_one() {
  local target=$1 dir="$runs/$1"
  rm -rf "$dir" && mkdir -p "$dir/corpus"
  cp tests/fuzz/corpus/"$target"/* "$dir/corpus/"
  local seeds
  seeds=$(ls "$dir/corpus" | wc -l)
  local rc=0 tmp
  tmp=$(mktemp -d "$scratch/primserve-fuzz-$target.XXXXXX")
  TMPDIR=$tmp "$BUILD_DIR/tests/fuzz/$target" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$dir/" "$dir/corpus" >"$dir/log" 2>&1 || rc=$?
  rm -rf "$tmp"
  local execs corpus
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  corpus=$(ls "$dir/corpus" | wc -l)
  if ((rc != 0)) || grep -qE "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY: " "$dir/log"; then
    echo "fuzz.sh: $target FAILED (exit $rc) after ${execs:-?} executions; log $dir/log, reproducer(s):" \
         $(ls "$dir" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' | sed "s|^|$dir/|")
    grep -E -m5 -A12 "ERROR: |runtime error:" "$dir/log" || tail -30 "$dir/log"
    touch "$dir/FAILED"
    return 1
  fi
  echo "fuzz.sh: $target: ${execs:-?} executions in ${FUZZ_SECONDS} s, corpus $seeds seeds -> $corpus inputs"
}

for target in "${TARGETS[@]}"; do
  while (( $(jobs -rp | wc -l) >= FUZZ_JOBS )); do wait -n || true; done
  run_one "$target" &
done
wait
if compgen -G "$runs/*/FAILED" >/dev/null; then
  echo "fuzz.sh: FAILED after $(( $(date +%s) - start )) s" >&2
  exit 1
fi
echo "fuzz.sh: ${#TARGETS[@]} targets passed in $(( $(date +%s) - start )) s"
