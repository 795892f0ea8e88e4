#!/usr/bin/env bash
# Builds the Dockerfile and tests the running image with the shared container-test tool
# (podman; no Docker engine or registry needed): the image runs as a non-root user, the server
# answers health and computes a MATH.md golden for the host's CLI over the published port, the
# image's HEALTHCHECK passes, and SIGTERM stops it with exit code 0.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOL=${CONTAINER_TEST:-$(cd .. && pwd)/shared/tools/container-test}
[[ -x "$TOOL" ]] || TOOL=/work/shared/tools/container-test   # the workplace's usual place
if [[ ! -x "$TOOL" ]]; then
  # The tool ships with the workplace, beside the checkout; a machine without it cannot run
  # images (no Docker engine), so say so loudly rather than fail the rest of the suite.
  echo "container-test.sh: SKIPPED: the container-test tool is not at $TOOL (set CONTAINER_TEST)" >&2
  exit 0
fi
CLI=$(pwd)/${CLI:-build/client/cli/primserve-cli}
IMAGE=${IMAGE:-localhost/primserve:test}
start=$(date +%s)
log=$(mktemp)
export IMAGE
CHECK="$CLI --address=127.0.0.1:50051 --timeout_seconds=3 health && $CLI --address=127.0.0.1:50051 sinusoidal --length=2 --dim=4 | grep -q 0.841470957" \
  PORT=50051 "$TOOL" . 2>&1 | tee "$log"
grep -q "container-test: CHECK succeeded" "$log" || { echo "container-test.sh: the server check failed" >&2; exit 1; }
grep -q "container-test: HEALTHCHECK healthy" "$log" || { echo "container-test.sh: HEALTHCHECK failed" >&2; exit 1; }
grep -q "container-test: exit code 0" "$log" || { echo "container-test.sh: SIGTERM did not exit 0" >&2; exit 1; }
user=$(CONTAINERS_CONF=${TMPDIR:-/tmp}/container-test/containers.conf podman image inspect --format '{{.Config.User}}' "$IMAGE")
if [[ -z "$user" || "$user" == root || "$user" == 0* ]]; then
  echo "container-test.sh: image user is '$user', expected non-root" >&2
  exit 1
fi
# The Deployment's preStop hook runs /bin/sleep inside the image.
if ! CONTAINERS_CONF=${TMPDIR:-/tmp}/container-test/containers.conf podman run --rm --no-healthcheck --entrypoint /bin/sleep "$IMAGE" 0; then
  echo "container-test.sh: the image has no /bin/sleep for the Deployment's preStop hook" >&2
  exit 1
fi
echo "container-test.sh: passed in $(( $(date +%s) - start )) s (image user $user)"
