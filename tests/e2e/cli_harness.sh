# Shared harness of the CLI end-to-end scripts (sourced, not run): argument and numpy checks, a
# work directory, a server on a free loopback port, and expect_ok / expect_failure helpers.
#
# Usage, at the top of a test script that set -euo pipefail:
#   source "$(dirname "$0")/cli_harness.sh" <test name> "$@"
# Defines SERVER, CLI, PYTHON, WORK_DIR, PORT, RC and start_server, stop_server, fail, pass,
# run_cli, expect_ok, expect_failure; the server is always stopped on exit. Set SERVER_ARGS
# (extra server flags) and CLI_ARGS (global CLI flags of every call, the health probe included)
# before start_server for a secured server.
HARNESS_NAME=$1
shift
if [[ $# -ne 2 ]]; then
  echo "usage: $0 PRIMSERVE_SERVER PRIMSERVE_CLI" >&2
  exit 2
fi
SERVER=$1
CLI=$2
PYTHON=/usr/bin/python3

if ! "$PYTHON" -c 'import numpy' 2>/dev/null; then
  echo "SKIP: $PYTHON with numpy is needed" >&2
  exit 77  # CTest SKIP_RETURN_CODE.
fi

WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/primserve_${HARNESS_NAME}.XXXXXX")
SERVER_PID=""
SERVER_ARGS=()
CLI_ARGS=()

stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n "$SERVER_PID" ]]; then
    local rc=0
    wait "$SERVER_PID" 2>/dev/null || rc=$?
    SERVER_PID=""
    return $rc
  fi
}

cleanup() {
  stop_server || true
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

pass() { echo "ok: $*"; }

start_server() {
  PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  "$SERVER" --address="127.0.0.1:$PORT" --model_dir="$WORK_DIR/models" "${SERVER_ARGS[@]}" >>"$WORK_DIR/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited during start-up"
    if "$CLI" --address="127.0.0.1:$PORT" --timeout_seconds=1 "${CLI_ARGS[@]}" health >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  fail "health never reported SERVING on port $PORT"
}

run_cli() {
  RC=0
  "$CLI" --address="127.0.0.1:$PORT" --timeout_seconds=30 "${CLI_ARGS[@]}" "$@" >"$WORK_DIR/out" 2>"$WORK_DIR/err" || RC=$?
}

expect_ok() {
  local what=$1
  shift
  run_cli "$@"
  [[ $RC -eq 0 ]] || fail "$what exited $RC: $(cat "$WORK_DIR/err")"
}

# expect_failure EXIT_CODE STDERR_SUBSTRING DESCRIPTION -- CLI ARGS...
expect_failure() {
  local code=$1 pattern=$2 what=$3
  shift 4
  run_cli "$@"
  [[ $RC -eq $code ]] || fail "$what: exit $RC, expected $code; stderr: $(cat "$WORK_DIR/err")"
  grep -qF -- "$pattern" "$WORK_DIR/err" || fail "$what: stderr lacks '$pattern': $(cat "$WORK_DIR/err")"
  pass "$what: exit $code, stderr has '$pattern'"
}
