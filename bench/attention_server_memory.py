#!/usr/bin/python3
"""Long-context attention through the server: B=1, H=8, L=16384, D=64 (the materialised
[L, L] score matrices alone would be 8 * 16384^2 * 4 B = 8.6 GB).

Starts primserve-server and sends ROUNDS rounds of one fused SOFTMAX Attend non-causal and one
causal, printing after each call the server's peak resident memory (VmHWM from /proc), the call
time and GFLOP/s. Exit status 1 if the peak exceeds LIMIT_MIB, if it grows after the first round
by more than half the call's tensor bytes (at least 32 MiB): memory later calls do not reuse,
as when jemalloc kept one arena per thread (server/jemalloc_config.cc: +217 MiB over three more
rounds at L = 4096, +800 MiB at 16384), or if the output is not finite.

    PYTHONPATH=build/python /usr/bin/python3 bench/attention_server_memory.py \
        [build/server/primserve-server] [--len=16384] [--rounds=3] [--limit_mib=1024]
"""
import argparse
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

from primserve.v1 import attention_pb2, attention_pb2_grpc, tensor_pb2

HEADS, DIM = 8, 64
MESSAGE_BYTES = 256 << 20


def tensor(a):
    a = np.ascontiguousarray(a, dtype="<f4")
    return tensor_pb2.Tensor(shape=a.shape, dtype=tensor_pb2.DATA_TYPE_FLOAT32, data=a.tobytes())


def vm_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", nargs="?", default="build/server/primserve-server")
    parser.add_argument("--len", type=int, default=16384, help="query and key length L")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of a non-causal and a causal call")
    parser.add_argument("--limit_mib", type=float, default=1024, help="largest acceptable peak (MiB)")
    args = parser.parse_args()
    length = args.len
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    models = tempfile.mkdtemp(prefix="primserve-bench-")
    server = subprocess.Popen([args.server, f"--address=127.0.0.1:{port}", f"--model_dir={models}",
                               f"--max_message_bytes={MESSAGE_BYTES}"], stderr=subprocess.DEVNULL)
    try:
        options = [("grpc.max_send_message_length", MESSAGE_BYTES), ("grpc.max_receive_message_length", MESSAGE_BYTES)]
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = attention_pb2_grpc.AttentionStub(channel)
        rng = np.random.default_rng(0)
        q, k, v = (rng.standard_normal((1, HEADS, length, DIM), dtype=np.float32) for _ in range(3))
        print(f"server peak RSS after start-up: {vm_hwm_mib(server.pid):.0f} MiB")
        tensor_mib = 4 * q.nbytes / 2**20  # q, k, v and the output.
        after_first_round = peak = 0.0
        for round_index in range(args.rounds):
            for causal in (False, True):
                request = attention_pb2.AttendRequest(query=tensor(q), key=tensor(k), value=tensor(v), causal=causal)
                start = time.perf_counter()
                response = stub.Attend(request, timeout=600)
                seconds = time.perf_counter() - start
                out = np.frombuffer(response.output.data, dtype="<f4")
                flops = 4.0 * HEADS * length * length * DIM / (2 if causal else 1)
                peak = vm_hwm_mib(server.pid)
                print(f"round {round_index + 1} L={length} causal={int(causal)}: {seconds:.2f} s end to end, "
                      f"{flops / seconds / 1e9:.1f} GFLOP/s, output finite={bool(np.isfinite(out).all())}, "
                      f"server peak RSS {peak:.0f} MiB (request+response {tensor_mib:.0f} MiB of tensors)")
                if not np.isfinite(out).all():
                    return 1
            if round_index == 0:
                after_first_round = peak
        growth = peak - after_first_round
        allowed = max(tensor_mib / 2, 32.0)
        grows = growth > allowed
        print(f"peak {peak:.0f} MiB vs limit {args.limit_mib:.0f} MiB: {'OK' if peak < args.limit_mib else 'OVER'}; "
              f"growth after the first round {growth:.0f} MiB (at most {allowed:.0f}): "
              f"{'GROWS' if grows else 'OK'}")
        return 0 if peak < args.limit_mib and not grows else 1
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
