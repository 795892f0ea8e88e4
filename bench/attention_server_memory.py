#!/usr/bin/python3
"""Long-context attention through the server: B=1, H=8, L=16384, D=64 (the materialised
[L, L] score matrices alone would be 8 * 16384^2 * 4 B = 8.6 GB).

Starts primserve-server, sends one fused SOFTMAX Attend (non-causal and causal), and prints the
server's peak resident memory (VmHWM from /proc) before and after, the call time and GFLOP/s.
Exit status 1 if the peak exceeds 1 GiB or the output is not finite.

    PYTHONPATH=build/python /usr/bin/python3 bench/attention_server_memory.py [build/server/primserve-server]
"""
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

from primserve.v1 import attention_pb2, attention_pb2_grpc, tensor_pb2

HEADS, LEN, DIM = 8, 16384, 64
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
    server_path = sys.argv[1] if len(sys.argv) > 1 else "build/server/primserve-server"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    models = tempfile.mkdtemp(prefix="primserve-bench-")
    server = subprocess.Popen([server_path, f"--address=127.0.0.1:{port}", f"--model_dir={models}",
                               f"--max_message_bytes={MESSAGE_BYTES}"], stderr=subprocess.DEVNULL)
    try:
        options = [("grpc.max_send_message_length", MESSAGE_BYTES), ("grpc.max_receive_message_length", MESSAGE_BYTES)]
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = attention_pb2_grpc.AttentionStub(channel)
        rng = np.random.default_rng(0)
        q, k, v = (rng.standard_normal((1, HEADS, LEN, DIM), dtype=np.float32) for _ in range(3))
        idle = vm_hwm_mib(server.pid)
        print(f"server peak RSS after start-up: {idle:.0f} MiB")
        worst = idle
        for causal in (False, True):
            request = attention_pb2.AttendRequest(query=tensor(q), key=tensor(k), value=tensor(v), causal=causal)
            start = time.perf_counter()
            response = stub.Attend(request, timeout=600)
            seconds = time.perf_counter() - start
            out = np.frombuffer(response.output.data, dtype="<f4")
            flops = 4.0 * HEADS * LEN * LEN * DIM / (2 if causal else 1)
            peak = vm_hwm_mib(server.pid)
            worst = max(worst, peak)
            print(f"L={LEN} causal={int(causal)}: {seconds:.2f} s end to end, {flops / seconds / 1e9:.1f} GFLOP/s, "
                  f"output finite={bool(np.isfinite(out).all())}, server peak RSS {peak:.0f} MiB "
                  f"(request+response {3 * q.nbytes / 2**20 + out.nbytes / 2**20:.0f} MiB of tensors)")
            if not np.isfinite(out).all():
                return 1
        limit = 1024
        print(f"peak {worst:.0f} MiB vs limit {limit} MiB: {'OK' if worst < limit else 'OVER'}")
        return 0 if worst < limit else 1
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
