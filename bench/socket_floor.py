#!/usr/bin/env python3
"""The loopback floor under any RPC: a payload sent and returned over one plain TCP socket.

A server thread receives N bytes and sends them back on the same connection; the client times
the round trip into buffers allocated (and touched) once, as gRPC's best case would reuse them.
Printed as GB/s of request + response bytes over the wall time, the figure primserve-load prints.

  /usr/bin/python3 bench/socket_floor.py --bytes=67108864 --repeats=5 --csv=out.csv
"""
import argparse
import csv
import os
import socket
import statistics
import threading
import time


def serve(listener, size, rounds):
    conn, _ = listener.accept()
    buf = memoryview(bytearray(size))
    for _ in range(rounds):
        got = 0
        while got < size:
            got += conn.recv_into(buf[got:])
        conn.sendall(buf)
    conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=64 << 20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--csv", default="")
    parser.add_argument("--label", default="socket")
    args = parser.parse_args()
    warmup = 2
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=serve, args=(listener, args.bytes, warmup + args.repeats), daemon=True).start()
    conn = socket.create_connection(listener.getsockname())
    out = bytearray(os.urandom(1024)) * (args.bytes // 1024) + bytearray(args.bytes % 1024)
    back = memoryview(bytearray(args.bytes))
    seconds = []
    for i in range(warmup + args.repeats):
        start = time.perf_counter()
        conn.sendall(out)
        got = 0
        while got < args.bytes:
            got += conn.recv_into(back[got:])
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    p50 = statistics.median(seconds)
    rate = 2 * args.bytes / p50 / 1e9
    print(f"loopback TCP round trip of {args.bytes} bytes: p50 {p50 * 1e3:.1f} ms, {rate:.2f} GB/s "
          f"(request + response), {args.repeats} runs")
    if args.csv:
        new = not os.path.exists(args.csv)
        with open(args.csv, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["label", "bytes", "p50_ms", "gb_per_s"])
            writer.writerow([args.label, args.bytes, f"{p50 * 1e3:.3f}", f"{rate:.4f}"])


if __name__ == "__main__":
    main()
