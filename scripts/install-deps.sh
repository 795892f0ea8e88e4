#!/usr/bin/env bash
# Installs the Debian 12 packages primserve builds, tests and runs with (DESIGN.md "Stack").
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

PACKAGES=(
  cmake g++ make pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev
  libeigen3-dev   # header-only dense linear algebra: the Cholesky solve of the analytic logistic fit
  libdnnl-dev ocl-icd-opencl-dev   # dnnl-config.cmake needs OpenCL headers (Debian's oneDNN has the OCL GPU runtime)
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev libomp-14-dev   # scripts/fuzz.sh (libFuzzer) and sanitize.sh tsan (libomp + libarcher)
  prometheus-cpp-dev
  libjemalloc-dev   # primserve-server's malloc: reused, huge-page-backed buffers for large tensors (server/allocator.h)
  python3 python3-grpcio python3-protobuf python3-numpy
  python3-pyflakes   # the python_lint test: undefined names and unused imports in our Python
  openssl
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The Node.js client's test needs node and npm; keep a Node.js the machine already has (e.g. from
# NodeSource, which bundles npm and conflicts with Debian's npm package), else take Debian's.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if ((${#missing[@]} == 0)); then
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
