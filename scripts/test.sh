#!/usr/bin/env bash
# The whole test suite: installs the Debian packages, builds with warnings as errors, and runs
# every test (unit, differential, end-to-end over gRPC from C++, the CLI and Python, the
# find_package consumer, deploy manifests, benchmark smoke runs), then builds the container
# image and tests it running (scripts/container-test.sh, podman).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/install-deps.sh
bash scripts/build.sh -DPRIMSERVE_WERROR=ON
(cd build && ctest --output-on-failure -j"$(nproc)")
echo "test.sh: ctest passed after $(( $(date +%s) - start )) s"
bash scripts/container-test.sh
echo "test.sh: all tests passed in $(( $(date +%s) - start )) s"
