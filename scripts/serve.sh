#!/usr/bin/env bash
# The main job: installs the Debian packages, builds, and starts primserve-server on
# 0.0.0.0:50051 with ./models as its model directory. Extra arguments go to the server
# (e.g. --address=0.0.0.0:6000); PRIMSERVE_* environment variables work too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
exec ./build/server/primserve-server --address=0.0.0.0:50051 --model_dir=./models "$@"
