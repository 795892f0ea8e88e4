#!/usr/bin/env bash
# End-to-end test of primserve-cli against a real primserve-server.
#
# Usage: cli_test.sh PATH/TO/primserve-server PATH/TO/primserve-cli
#
# Starts the server on a free local port with a temporary model directory, waits until
# `primserve-cli health` reports SERVING, checks the golden values of MATH.md sections 1 and 2
# through the CLI (text output and .npy files read back with numpy), the exit codes and messages
# of failing calls, and finally that SIGTERM stops the server with exit status 0.
# Needs /usr/bin/python3 with numpy (exit 77, a skip, without it). The server is always stopped
# on exit.
set -euo pipefail

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

WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/primserve_cli_test.XXXXXX")
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

pass() { echo "ok: $*"; }

# Runs the CLI against the test server; stdout to $WORK_DIR/out, stderr to $WORK_DIR/err; sets RC.
run_cli() {
  RC=0
  "$CLI" --address="127.0.0.1:$PORT" --timeout_seconds=30 "$@" >"$WORK_DIR/out" 2>"$WORK_DIR/err" || RC=$?
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

# ------------------------------------------------------------------------------------------------
echo "== starting $SERVER"
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
"$SERVER" --address="127.0.0.1:$PORT" --model_dir="$WORK_DIR/models" >"$WORK_DIR/server.log" 2>&1 &
SERVER_PID=$!

serving=false
for _ in $(seq 100); do  # 100 x 0.2 s: at most ~20 s (plus the 1 s call deadlines).
  kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited during start-up"
  if "$CLI" --address="127.0.0.1:$PORT" --timeout_seconds=1 health >"$WORK_DIR/out" 2>/dev/null; then
    serving=true
    break
  fi
  sleep 0.2
done
$serving || fail "health never reported SERVING on port $PORT"
[[ "$(cat "$WORK_DIR/out")" == "SERVING" ]] || fail "health printed '$(cat "$WORK_DIR/out")'"
pass "health prints SERVING and exits 0 (port $PORT)"

# ------------------------------------------------------------------------------------------------
echo "== sinusoidal (MATH.md section 1)"
run_cli sinusoidal --length=2 --dim=4
[[ $RC -eq 0 ]] || fail "sinusoidal --length=2 --dim=4 exited $RC: $(cat "$WORK_DIR/err")"
"$PYTHON" - "$WORK_DIR/out" <<'EOF' || fail "sinusoidal text output is wrong: $(cat "$WORK_DIR/out")"
import sys
import numpy as np
lines = open(sys.argv[1]).read().splitlines()
assert lines[0] == "shape: [2, 4]", lines[0]
table = np.array([[float(v) for v in line.split()] for line in lines[1:]])
expected = np.array([[0, 1, 0, 1], [0.8414709848, 0.5403023059, 0.0099998333, 0.9999500004]])
assert table.shape == expected.shape, table.shape
assert np.allclose(table, expected, rtol=0, atol=1e-6), table
EOF
pass "sinusoidal --length=2 --dim=4 prints p_0 = [0, 1, 0, 1] and p_1 = [0.84147098, 0.54030231, 0.00999983, 0.99995000]"

# ------------------------------------------------------------------------------------------------
echo "== rope (MATH.md section 2)"
"$PYTHON" -c "import numpy as np; np.save('$WORK_DIR/q.npy', np.array([[1, 2, 3, 4]], dtype=np.float32))"

# check_npy FILE EXPECTED_VALUES...: the .npy holds float32 [1, 4] equal to the values within 1e-6.
check_npy() {
  "$PYTHON" - "$@" <<'EOF'
import sys
import numpy as np
out = np.load(sys.argv[1])
expected = np.array([[float(v) for v in sys.argv[2:]]])
assert out.dtype == np.float32, out.dtype
assert out.shape == expected.shape, out.shape
assert np.allclose(out, expected, rtol=0, atol=1e-6), (out, expected)
EOF
}

run_cli rope --input="$WORK_DIR/q.npy" --positions=1 --output="$WORK_DIR/interleaved.npy"
[[ $RC -eq 0 ]] || fail "rope interleaved exited $RC: $(cat "$WORK_DIR/err")"
check_npy "$WORK_DIR/interleaved.npy" -1.1426396637 1.9220755965 2.9598506679 4.0297995017 ||
  fail "rope interleaved R_1 q is wrong"
pass "rope --positions=1 (interleaved) writes R_1 q = [-1.14263966, 1.92207560, 2.95985067, 4.02979950]"

run_cli rope --input="$WORK_DIR/q.npy" --positions=1 --pairing=half_split --output="$WORK_DIR/half_split.npy"
[[ $RC -eq 0 ]] || fail "rope half_split exited $RC: $(cat "$WORK_DIR/err")"
check_npy "$WORK_DIR/half_split.npy" -1.9841106486 1.9599006675 2.4623779024 4.0197996683 ||
  fail "rope half_split R_1 q is wrong"
pass "rope --positions=1 --pairing=half_split writes R_1 q = [-1.98411065, 1.95990067, 2.46237790, 4.01979967]"

# The inverse undoes the rotation: feed the rotated file back.
run_cli rope --input="$WORK_DIR/interleaved.npy" --positions=1 --inverse --output="$WORK_DIR/back.npy"
[[ $RC -eq 0 ]] || fail "rope --inverse exited $RC: $(cat "$WORK_DIR/err")"
check_npy "$WORK_DIR/back.npy" 1 2 3 4 || fail "rope --inverse did not give q back"
pass "rope --inverse of R_1 q gives q = [1, 2, 3, 4] back"

# ------------------------------------------------------------------------------------------------
echo "== errors"
expect_failure 1 "INVALID_ARGUMENT" "sinusoidal --length=2 --dim=3 (odd dim)" -- sinusoidal --length=2 --dim=3
expect_failure 1 "bad magic" "rope on a file that is not .npy" -- rope --input="$WORK_DIR/server.log"
expect_failure 1 "NOT_FOUND" "rope on a missing file" -- rope --input="$WORK_DIR/missing.npy"
expect_failure 2 "does not apply to rope" "a sinusoidal flag given to rope (usage error)" -- rope --length=2
expect_failure 2 "unknown command" "an unknown command (usage error)" -- frobnicate
expect_failure 2 "pass --output" "printing more than 10000 elements (usage error)" -- sinusoidal --length=10000 --dim=2

# ------------------------------------------------------------------------------------------------
echo "== SIGTERM"
kill -TERM "$SERVER_PID"
for _ in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done  # <= 30 s
kill -0 "$SERVER_PID" 2>/dev/null && fail "the server still runs 30 s after SIGTERM"
SERVER_RC=0
wait "$SERVER_PID" || SERVER_RC=$?
SERVER_PID=""
[[ $SERVER_RC -eq 0 ]] || fail "the server exited $SERVER_RC after SIGTERM, expected 0"
pass "SIGTERM stops the server with exit status 0"

echo "PASS: primserve-cli end-to-end"
