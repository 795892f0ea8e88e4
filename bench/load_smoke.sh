#!/usr/bin/env bash
# Smoke test of primserve-load (ctest bench_load_smoke): a server on a free loopback port, then
# ~2 s of every method of the generator; fails if any call fails or a method never completes.
# Usage: load_smoke.sh PRIMSERVE_SERVER PRIMSERVE_LOAD
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 PRIMSERVE_SERVER PRIMSERVE_LOAD" >&2
  exit 2
fi
SERVER=$1
LOAD=$2
WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/primserve_load_smoke.XXXXXX")
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK_DIR"
}
trap cleanup EXIT

PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
"$SERVER" --address="127.0.0.1:$PORT" --model_dir="$WORK_DIR/models" --log_level=warning \
  --drain_seconds=1 >"$WORK_DIR/server.log" 2>&1 &
SERVER_PID=$!
ready=0
for _ in $(seq 100); do
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK_DIR/server.log" >&2; echo "FAIL: server exited" >&2; exit 1; }
  if "$LOAD" --target="127.0.0.1:$PORT" --methods=echo --duration=0.05 --warmup=0 --timeout=1 >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.2
done
[[ $ready -eq 1 ]] || { echo "FAIL: the server never answered Echo on port $PORT" >&2; exit 1; }

"$LOAD" --target="127.0.0.1:$PORT" --methods=echo,sinusoidal,apply_rope,attend --concurrency=2 \
  --duration=2 --warmup=0.2 --payload_bytes=65536 --attend_seq=64 --csv="$WORK_DIR/out.csv" \
  --json="$WORK_DIR/out.json" --label=smoke
# One CSV row per method, after the header.
rows=$(($(wc -l <"$WORK_DIR/out.csv") - 1))
[[ $rows -eq 4 ]] || { echo "FAIL: expected 4 CSV rows, got $rows" >&2; exit 1; }
/usr/bin/python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert len(r) == 4 and all(x["calls"] > 0 for x in r)' \
  "$WORK_DIR/out.json"
echo "ok: primserve-load ran every method for 2 s with no error"
