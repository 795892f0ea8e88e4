"""The Python client (primserve.Client) on the calls bench/run.sh also times with the C++ client.

One call at a time for --duration seconds per call kind, after a short warmup; appends rows to
--csv with the columns of primserve-load's CSV, labelled client_python (Echo of 4 KiB and
Sinusoidal 16 x 64) and client_python_1m (Echo and ApplyRope of 1 MiB), so that the report sets
them next to the C++ client's client_cpp / client_cpp_1m rows of the same run.

Usage: PYTHONPATH=build/python python3 bench/python_client_bench.py --target=127.0.0.1:50051
"""

import argparse
import os
import time

import numpy as np

import primserve

COLUMNS = ("label,method,concurrency,payload_bytes,seconds,calls,errors,calls_per_s,mb_per_s,p50_ms,p90_ms,"
           "p99_ms,max_ms,mean_ms,stream_mb_per_s")


def measure(call, duration, warmup=0.3):
    """Latencies (ms) and bytes moved of back-to-back calls of `call` (returns bytes moved)."""
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        call()
    latencies, moved = [], 0
    start = time.perf_counter()
    end = start + duration
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        moved += call()
        latencies.append((time.perf_counter() - t0) * 1e3)
    return latencies, moved, time.perf_counter() - start


def row(label, method, payload, latencies, moved, seconds):
    lat = np.sort(np.asarray(latencies))

    def pct(p):  # Nearest rank, as primserve-load.
        return float(lat[max(0, int(np.ceil(p / 100 * len(lat))) - 1)])

    total_s = float(lat.sum()) * 1e-3
    values = [label, method, 1, payload, seconds, len(lat), 0, len(lat) / seconds, moved / seconds / 1e6,
              pct(50), pct(90), pct(99), float(lat[-1]), float(lat.mean()), moved / total_s / 1e6]
    return ",".join(str(v) for v in values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="localhost:50051")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--csv", default="")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    small = rng.uniform(-1, 1, (16, 64)).astype(np.float32)
    big = rng.uniform(-1, 1, (1, 1, 4096, 64)).astype(np.float32)
    rows = []
    with primserve.Client(args.target, timeout=60) as client:
        cases = [
            ("client_python", "echo", 4096, lambda: 2 * client.echo(small).nbytes),
            ("client_python", "sinusoidal", 4096, lambda: client.sinusoidal(16, dim=64).nbytes),
            ("client_python_1m", "echo", 1 << 20, lambda: 2 * client.echo(big).nbytes),
            ("client_python_1m", "apply_rope", 1 << 20, lambda: 2 * client.apply_rope(big).nbytes),
        ]
        for label, method, payload, call in cases:
            latencies, moved, seconds = measure(call, args.duration)
            rows.append(row(label, method, payload, latencies, moved, seconds))
            print(f"python {method:11s} payload {payload:8d}: p50 {np.median(latencies):8.3f} ms, "
                  f"{len(latencies) / seconds:8.1f} calls/s")
    if args.csv:
        fresh = not os.path.exists(args.csv)
        with open(args.csv, "a") as f:
            if fresh:
                f.write(COLUMNS + "\n")
            for r in rows:
                f.write(r + "\n")


if __name__ == "__main__":
    main()
