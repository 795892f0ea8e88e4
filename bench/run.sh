#!/usr/bin/env bash
# The performance suite in one command: bash bench/run.sh
#
#   1. builds in Release in its own directory (BUILD_DIR, default build-bench), bench on;
#   2. runs every Google Benchmark suite (each prints its ratio to a baseline of the same run);
#   3. starts a server on loopback and runs the primserve-load sweeps (small calls vs Echo,
#      concurrency, payload size with ApplyRope vs Echo up to 64 MiB) and the Python client next
#      to the C++ client on the same calls, each REPEATS times;
#   4. writes bench/report.md and its plots (bench/report/*.png) from the raw results, which are
#      kept in OUT_DIR (default $BUILD_DIR/bench-results).
#
# Environment: BUILD_DIR, OUT_DIR, REPEATS (default 3), ATTENTION_REPETITIONS (default 3), KERNELS=0 (skip step 2 and reuse the
# suites' results already in OUT_DIR), E2E=0 (skip step 3 likewise), JOBS (build parallelism),
# AB_SERVERS="label=/path/to/primserve-server ..." (other server builds, e.g. of an older
# commit, alternated with this one on the 64 MiB calls: the report's before/after table).
# Bench-only dependency: python3-matplotlib (Debian) for the plots, installed here if missing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
OUT_DIR=${OUT_DIR:-$BUILD_DIR/bench-results}
REPEATS=${REPEATS:-3}
KERNELS=${KERNELS:-1}
E2E=${E2E:-1}
JOBS=${JOBS:-$(nproc)}
PYTHON=/usr/bin/python3
mkdir -p "$OUT_DIR"

if ! "$PYTHON" -c 'import matplotlib' 2>/dev/null; then
  echo "== installing python3-matplotlib (bench-only dependency, for the report's plots)"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get install -y --no-install-recommends python3-matplotlib
fi

echo "== build (Release) in $BUILD_DIR"
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DPRIMSERVE_BUILD_BENCH=ON \
  -DPRIMSERVE_BUILD_TESTS=OFF >"$OUT_DIR/cmake.log"
SUITES=(rope attention logistic discriminator toolkit)
cmake --build "$BUILD_DIR" -j"$JOBS" --target primserve-server primserve-load primserve_python \
  "${SUITES[@]/%/_benchmark}"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
  echo "isa: $(grep -m1 '^flags' /proc/cpuinfo | grep -ow 'avx2\|avx512f\|avx512_bf16\|avx512_vnni' | tr '\n' ' ')(oneDNN picks its kernels by these; BF16 needs avx512_bf16)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "repeats: $REPEATS"
} >"$OUT_DIR/machine.txt"

if [[ $KERNELS -eq 1 ]]; then
  for suite in "${SUITES[@]}"; do
    echo "== ${suite}_benchmark"
    # Attention's ratios set a compute-bound kernel against a memory-bound baseline (unfused) and
    # a matmul, and single runs of either swing by 10% here: its report takes medians of
    # ATTENTION_REPETITIONS runs, interleaved in random order so drift hits every benchmark alike.
    extra=()
    if [[ $suite == attention ]]; then
      extra=(--benchmark_repetitions="${ATTENTION_REPETITIONS:-3}" --benchmark_enable_random_interleaving=true)
    fi
    "$BUILD_DIR/bench/${suite}_benchmark" --benchmark_out="$OUT_DIR/${suite}.json" \
      --benchmark_out_format=json "${extra[@]}" | tee "$OUT_DIR/${suite}.txt"
  done
fi

SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT
PORT=""
# start_server FLAGS...: a server on a free loopback port, ready when Echo answers.
start_server() {
  stop_server
  PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  local binary=${SERVER_BIN:-$BUILD_DIR/server/primserve-server}
  echo "-- $binary --address=127.0.0.1:$PORT --log_level=warning $*" | tee -a "$OUT_DIR/servers.txt"
  "$binary" --address="127.0.0.1:$PORT" --model_dir="$OUT_DIR/models" \
    --log_level=warning --drain_seconds=1 "$@" >>"$OUT_DIR/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 150); do
    if "$BUILD_DIR/bench/primserve-load" --target="127.0.0.1:$PORT" --methods=echo --duration=0.05 \
      --warmup=0 --timeout=1 >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "server did not start; see $OUT_DIR/server.log" >&2
  exit 1
}
load() {
  "$BUILD_DIR/bench/primserve-load" --target="127.0.0.1:$PORT" --csv="$OUT_DIR/load.csv" "$@"
}

if [[ $E2E -eq 1 ]]; then
  echo "== attention at L = 16384 through the server: peak resident memory"
  PYTHONPATH="$BUILD_DIR/python" "$PYTHON" "$ROOT/bench/attention_server_memory.py" \
    "$BUILD_DIR/server/primserve-server" | tee "$OUT_DIR/attention_memory.txt"
  rm -f "$OUT_DIR/load.csv" "$OUT_DIR/python.csv" "$OUT_DIR/servers.txt" "$OUT_DIR/socket.csv" "$OUT_DIR/ab.csv"
  BIG=$((200 << 20))
  # Small calls: two single-threaded compute workers, so that concurrent small calls are not
  # serialised behind one worker (README "Execution model").
  start_server --compute_workers=2 --compute_threads=1
  for rep in $(seq "$REPEATS"); do
    echo "== small calls, repeat $rep: Sinusoidal 16x64 and Echo of its 4 KiB in one mixed run"
    load --label=small --methods=echo,sinusoidal --payload_bytes=4096 --concurrency=1 --duration=5
    for c in 1 2 4 8 16; do
      echo "== concurrency $c, repeat $rep"
      load --label=scaling --methods=sinusoidal --concurrency="$c" --duration=3
      load --label=scaling --methods=echo --payload_bytes=4096 --concurrency="$c" --duration=3
    done
  done
  echo "== Python client next to the C++ client (same calls, one at a time)"
  for rep in $(seq "$REPEATS"); do
    load --label=client_cpp --methods=echo,sinusoidal --payload_bytes=4096 --concurrency=1 --duration=3
    load --label=client_cpp_1m --methods=echo,apply_rope --payload_bytes=$((1 << 20)) --concurrency=1 --duration=3
    PYTHONPATH="$BUILD_DIR/python" "$PYTHON" "$ROOT/bench/python_client_bench.py" --target="127.0.0.1:$PORT" \
      --duration=3 --csv="$OUT_DIR/python.csv"
  done
  # Large tensors: the default execution model (one worker on every core) and 200 MiB messages.
  start_server --max_message_bytes=$BIG
  for rep in $(seq "$REPEATS"); do
    for bytes in 4096 65536 1048576 16777216 67108864; do
      echo "== payload $bytes bytes, repeat $rep: ApplyRope and Echo in one mixed run"
      load --label=payload --methods=echo,apply_rope --payload_bytes="$bytes" --concurrency=1 --duration=4 \
        --max_message_bytes=$BIG
    done
  done
  echo "== loopback TCP floor: the same payloads over one plain socket, no RPC"
  for bytes in 1048576 16777216 67108864; do
    "$PYTHON" "$ROOT/bench/socket_floor.py" --bytes="$bytes" --repeats=$((REPEATS * 3)) --csv="$OUT_DIR/socket.csv"
  done
  if [[ -n "${AB_SERVERS:-}" ]]; then
    for rep in $(seq "$REPEATS"); do
      for entry in "now=$BUILD_DIR/server/primserve-server" $AB_SERVERS; do
        echo "== before/after, repeat $rep: ${entry%%=*}"
        SERVER_BIN=${entry#*=} start_server --max_message_bytes=$BIG
        "$BUILD_DIR/bench/primserve-load" --target="127.0.0.1:$PORT" --csv="$OUT_DIR/ab.csv" --label="${entry%%=*}" \
          --methods=echo,apply_rope --payload_bytes=67108864 --concurrency=1 --duration=5 --max_message_bytes=$BIG
      done
    done
  fi
  stop_server
fi

echo "== report"
"$PYTHON" "$ROOT/bench/make_report.py" --results="$OUT_DIR" --out="$ROOT/bench"
echo "wrote $ROOT/bench/report.md"
