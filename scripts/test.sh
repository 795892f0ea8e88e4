#!/usr/bin/env bash
# The whole test suite: installs the Debian packages, builds with warnings as errors, and runs
# every test (unit, differential, end-to-end over gRPC from C++, the CLI and Python, the
# find_package consumer, deploy manifests, benchmark smoke runs), then fuzzes every service's
# request path and the model-store reader (scripts/fuzz.sh, FUZZ_SECONDS per target), runs the
# suite under ASan + UBSan and the concurrency tests under TSan (scripts/sanitize.sh), then builds
# the container image and tests it running (scripts/container-test.sh, podman). Each stage's wall
# time is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/install-deps.sh
bash scripts/build.sh -DPRIMSERVE_WERROR=ON
(cd build && ctest --output-on-failure -j"$(nproc)")
echo "test.sh: ctest passed after $(( $(date +%s) - start )) s"
stage() {
  local name=$1 stage_start
  shift
  stage_start=$(date +%s)
  "$@"
  echo "test.sh: $name: $(( $(date +%s) - stage_start )) s"
}
stage "fuzz.sh" bash scripts/fuzz.sh
stage "sanitize.sh asan" bash scripts/sanitize.sh asan
stage "sanitize.sh tsan" bash scripts/sanitize.sh tsan
bash scripts/container-test.sh
echo "test.sh: all tests passed in $(( $(date +%s) - start )) s"
