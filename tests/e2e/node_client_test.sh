#!/usr/bin/env bash
# End-to-end test of the Node.js client (client/node) against a real primserve-server.
#
# Usage: node_client_test.sh PATH/TO/primserve-server REPO_ROOT
#
# Installs the client's locked dependencies with `npm ci` (client/node/package-lock.json, into
# client/node/node_modules; nothing else is downloaded), starts the server on a free local port
# with a temporary model directory, waits until the port accepts connections, runs
# client/node/smoke.js (one RPC or more of every service, MATH.md goldens, health, a bad request),
# then stops the server with SIGTERM and checks that it exits 0. Without node or npm on PATH it
# prints SKIPPED and exits 77 (a CTest skip). The server is always stopped on exit.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 PRIMSERVE_SERVER REPO_ROOT" >&2
  exit 2
fi
SERVER=$1
ROOT=$2
CLIENT_DIR="$ROOT/client/node"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIPPED: $tool is not on PATH; the Node.js client test needs node and npm" >&2
    exit 77  # CTest SKIP_RETURN_CODE.
  fi
done

WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/primserve_node_test.XXXXXX")
SERVER_PID=""

cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK_DIR"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  if [[ -f "$WORK_DIR/server.log" ]]; then
    echo "--- server log (last 20 lines) ---" >&2
    tail -n 20 "$WORK_DIR/server.log" >&2
  fi
  exit 1
}

echo "== node $(node --version), npm $(npm --version)"
# `npm ci` replaces client/node/node_modules in the source tree: runs from several build trees
# at once take turns (the lock is released when this script exits).
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/primserve_node_client_test.lock"
  flock 9
fi
echo "== npm ci --prefix $CLIENT_DIR"
# --ignore-scripts: nothing the client needs runs at install time.
npm ci --prefix "$CLIENT_DIR" --ignore-scripts --no-audit --no-fund >"$WORK_DIR/npm.log" 2>&1 ||
  { cat "$WORK_DIR/npm.log" >&2; fail "npm ci failed"; }
tail -n 1 "$WORK_DIR/npm.log"

echo "== starting $SERVER"
PORT=$(node -e 'const s = require("net").createServer();
s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')
"$SERVER" --address="127.0.0.1:$PORT" --model_dir="$WORK_DIR/models" >"$WORK_DIR/server.log" 2>&1 9>&- &
SERVER_PID=$!

listening=false
for _ in $(seq 200); do  # 200 x 0.1 s: at most ~20 s.
  kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited during start-up"
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    listening=true
    break
  fi
  sleep 0.1
done
$listening || fail "the server never accepted connections on port $PORT"
echo "ok: the server accepts connections on 127.0.0.1:$PORT"

echo "== node client/node/smoke.js 127.0.0.1:$PORT"
node "$CLIENT_DIR/smoke.js" "127.0.0.1:$PORT" || fail "smoke.js failed"

echo "== SIGTERM"
kill -TERM "$SERVER_PID"
for _ in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done  # ~30 s.
kill -0 "$SERVER_PID" 2>/dev/null && fail "the server still runs 30 s after SIGTERM"
RC=0
wait "$SERVER_PID" || RC=$?
SERVER_PID=""
[[ $RC -eq 0 ]] || fail "the server exited $RC after SIGTERM, expected 0"
echo "ok: the server exited 0 after SIGTERM"
echo "PASS: Node.js client"
