#!/usr/bin/env bash
# The main job: installs the Debian packages, builds, and starts primserve-server on
# 0.0.0.0:50051 with ./models as its model directory. Extra arguments go to the server
# (e.g. --address=0.0.0.0:6000); PRIMSERVE_* environment variables work too (PRIMSERVE_ADDRESS
# and PRIMSERVE_MODEL_DIR replace the two defaults above).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
exec ./build/server/primserve-server --address="${PRIMSERVE_ADDRESS:-0.0.0.0:50051}" \
  --model_dir="${PRIMSERVE_MODEL_DIR:-./models}" "$@"
