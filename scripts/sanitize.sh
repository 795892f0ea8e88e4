#!/usr/bin/env bash
# Sanitizer builds that run the test suite (DESIGN.md: no bad input crashes, hangs or leaks).
#   bash scripts/sanitize.sh asan   AddressSanitizer + LeakSanitizer + UndefinedBehaviorSanitizer
#                                   (-fno-sanitize-recover=undefined) with g++, RelWithDebInfo at
#                                   -O1, in ${SANITIZE_BUILD_DIR:-build-asan}: the whole unit and
#                                   end-to-end suite; the e2e tests (C++, CLI, Python, Node) start
#                                   this build's server, so it runs instrumented too.
#   bash scripts/sanitize.sh tsan   ThreadSanitizer with clang-14 and its libomp (whose parallel
#                                   regions TSan understands through libarcher), in
#                                   ${SANITIZE_BUILD_DIR:-build-tsan}: the concurrency-relevant tests.
# Every instrumented process (test binaries and the servers they start) writes its reports to
# <build dir>/sanitizer-logs/; any report fails the run, also one from a server whose exit code
# its test does not look at. Extra arguments go to ctest (asan, e.g. -R Sinusoidal) or to each
# gtest binary (tsan, e.g. --gtest_filter=*Drain*).
#
# Not run under the sanitizers, and why:
#   bench_*_smoke                 benchmarks are not built (PRIMSERVE_BUILD_BENCH=OFF): timing
#                                 runs of kernels the unit tests already cover
#   client_find_package_consumer  installs this build and compiles an uninstrumented consumer
#                                 against it: a packaging test, and the link needs the sanitizer
#                                 runtime the consumer does not ask for
#   tsan only: every test outside TSAN_TESTS below (single-threaded unit tests, script tests
#   whose clients are Python / Node / bash: TSan checks the threads of the instrumented
#   processes, which the C++ e2e tests already drive concurrently).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
shift || true
start=$(date +%s)
jobs=$(nproc)
# The code under test at -O1 (the core library keeps its own -O3); the tests' own sources at -O0
# (PRIMSERVE_TEST_COMPILE_OPTIONS, a ;-list): they are half of what these builds compile, and
# little of what their runs spend their time in. ASan: line tables only (-g1: every report frame
# still has its file and line). TSan keeps -g: its suppressions match gRPC's header functions
# inlined into our code by qualified name, which line tables alone do not record.
test_flags="-O0"

case "$mode" in
  asan)
    BUILD_DIR=${SANITIZE_BUILD_DIR:-build-asan}
    debug_flags="-O1 -g1"
    flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$debug_flags" \
      -DPRIMSERVE_TEST_COMPILE_OPTIONS="$test_flags" \
      -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
      -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" -DPRIMSERVE_BUILD_BENCH=OFF >/dev/null
    cmake --build "$BUILD_DIR" -j"$jobs"
    exclude='^client_find_package_consumer$'
    select=()
    logs=$(cd "$BUILD_DIR" && pwd)/sanitizer-logs
    export ASAN_OPTIONS="detect_leaks=1:strict_init_order=1:log_path=$logs/asan"
    export LSAN_OPTIONS="suppressions=$(pwd)/tests/sanitize/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
    ;;
  tsan)
    BUILD_DIR=${SANITIZE_BUILD_DIR:-build-tsan}
    debug_flags="-O1 -g"
    # Server end-to-end tests (concurrent calls, admission, drain, SIGTERM, shared model store
    # and network cache), the model store's concurrent writers and readers, and the parallel
    # attention kernels; the call tracker runs inside every e2e server.
    TSAN_TARGETS=(primserve-server e2e_server_test e2e_logistic_test e2e_toolkit_test e2e_discriminator_test
                  server_model_store_test core_attention_test)
    # gtest binaries, run directly (ctest knows their cases by test name, not by binary).
    TSAN_TESTS=(e2e_server_test e2e_logistic_test e2e_toolkit_test e2e_discriminator_test server_model_store_test
                core_attention_test)
    flags="-fsanitize=thread -fno-omit-frame-pointer"
    CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$debug_flags" -DPRIMSERVE_TEST_COMPILE_OPTIONS="$test_flags" \
      -DCMAKE_CXX_FLAGS="$flags" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" \
      -DPRIMSERVE_BUILD_BENCH=OFF >/dev/null
    cmake --build "$BUILD_DIR" -j"$jobs" --target "${TSAN_TARGETS[@]}"
    # absl::Mutex happens-before edges (see tests/sanitize/tsan_absl_sync.cc).
    shim=$(cd "$BUILD_DIR" && pwd)/libtsan_absl_sync.so
    clang++-14 -std=c++17 -O1 -g -fPIC -shared -Wall -Wextra -Werror -o "$shim" tests/sanitize/tsan_absl_sync.cc -ldl
    absl_sync=$(ldconfig -p | sed -n 's/.*libabsl_synchronization\.so[^ ]* (libc6,x86-64) => //p' | head -1)
    exported=$(nm -D --defined-only "$absl_sync" | awk '$2 == "T" {print $3}')
    for symbol in $(nm -D --defined-only "$shim" | awk '$2 == "T" {print $3}'); do
      grep -qx "$symbol" <<<"$exported" ||
        { echo "sanitize.sh: $absl_sync does not export $symbol (another Abseil?)" >&2; exit 1; }
    done
    logs=$(cd "$BUILD_DIR" && pwd)/sanitizer-logs
    export LD_PRELOAD=$shim
    export OMP_TOOL_LIBRARIES=/usr/lib/llvm-14/lib/libarcher.so
    # ignore_noninstrumented_modules: interceptors called from uninstrumented libraries (gRPC's
    # epoll and memcpy, libomp, protobuf) do not report, as libarcher asks; our code is instrumented.
    export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:history_size=4:ignore_noninstrumented_modules=1:log_path=$logs/tsan:suppressions=$(pwd)/tests/sanitize/tsan.supp"
    ;;
  *)
    echo "usage: $0 asan|tsan [ctest arguments]" >&2
    exit 2
    ;;
esac
echo "sanitize.sh $mode: built in $(( $(date +%s) - start )) s"

rm -rf "$logs" && mkdir -p "$logs"
rc=0
if [[ "$mode" == asan ]]; then
  (cd "$BUILD_DIR" && ctest --output-on-failure --no-tests=error -j"$jobs" --timeout 900 -E "$exclude" "$@") || rc=$?
else
  for test in "${TSAN_TESTS[@]}"; do
    binary=$(find "$BUILD_DIR/tests" -type f -name "$test" | head -1)
    test_start=$(date +%s)
    if "$binary" "$@" >"$logs/$test.out" 2>&1; then
      echo "sanitize.sh tsan: $test passed in $(( $(date +%s) - test_start )) s"
    else
      echo "sanitize.sh tsan: $test FAILED; output:" >&2
      tail -60 "$logs/$test.out" >&2
      rc=1
    fi
    mv "$logs/$test.out" "$BUILD_DIR/"
  done
fi
unset LD_PRELOAD
reports=$(find "$logs" -type f | sort)
if [[ -n "$reports" ]]; then
  echo "sanitize.sh $mode: sanitizer reports:" >&2
  for report in $reports; do
    echo "==== $report" >&2
    head -80 "$report" >&2
  done
  rc=1
fi
if ((rc != 0)); then
  echo "sanitize.sh $mode: FAILED after $(( $(date +%s) - start )) s" >&2
  exit 1
fi
echo "sanitize.sh $mode: passed in $(( $(date +%s) - start )) s"
