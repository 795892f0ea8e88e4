#!/usr/bin/python3
"""FitStream of N = 10,000,000 samples, d = 32 features, K = 4 classes, in chunks, through the
server: its peak resident memory (VmHWM from /proc) must stay under 300 MiB, independent of N
(the data alone are 10^7 * 32 * 4 B = 1.2 GiB).

Starts primserve-server, streams the chunks (generated chunk by chunk, so the client's memory is
bounded too), and prints the server's peak RSS before and after, the end-to-end and server fit
times, samples/s, and as a baseline measured in the same run the time numpy takes for the
float32 d x d products X^T X of the same chunks (the dominant work of the statistics). The
model is checked on held-out data: Gaussian classes with identity covariance, where the closed
form is the Bayes rule, so its accuracy must be within 1 point of the Bayes accuracy estimated
with the true parameters. Exit status 1 if the peak reaches the limit or the check fails.

    PYTHONPATH=build/python /usr/bin/python3 bench/logistic_stream_memory.py [build/server/primserve-server] [N] [CHUNK_ROWS]
"""
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

from primserve.v1 import logistic_regression_pb2 as lr_pb2
from primserve.v1 import logistic_regression_pb2_grpc as lr_grpc
from primserve.v1 import tensor_pb2

DIM, CLASSES, CHUNK_ROWS = 32, 4, 100_000  # 12.8 MB of features per message
LIMIT_MIB = 300


def tensor(a):
    a = np.ascontiguousarray(a, dtype="<f4")
    return tensor_pb2.Tensor(shape=a.shape, dtype=tensor_pb2.DATA_TYPE_FLOAT32, data=a.tobytes())


def vm_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM")


def chunk(rng, rows, means):
    labels = rng.integers(0, CLASSES, rows)
    features = rng.standard_normal((rows, DIM), dtype=np.float32) + means[labels]
    return features, labels


def main():
    server_path = sys.argv[1] if len(sys.argv) > 1 else "build/server/primserve-server"
    samples = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
    chunk_rows = int(sys.argv[3]) if len(sys.argv) > 3 else CHUNK_ROWS
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    models = tempfile.mkdtemp(prefix="primserve-bench-")
    server = subprocess.Popen([server_path, f"--address=127.0.0.1:{port}", f"--model_dir={models}"],
                              stderr=subprocess.DEVNULL)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = lr_grpc.LogisticRegressionStub(channel)
        means = (np.random.default_rng(1).standard_normal((CLASSES, DIM)) * 0.4 + 5.0).astype(np.float32)
        idle = vm_hwm_mib(server.pid)
        print(f"server peak RSS after start-up: {idle:.0f} MiB")

        rng = np.random.default_rng(0)
        baseline = [0.0]

        def messages():
            sent = 0
            first = True
            while sent < samples:
                rows = min(chunk_rows, samples - sent)
                features, labels = chunk(rng, rows, means)
                start = time.perf_counter()
                np.dot(features.T, features)  # Baseline: the chunk's float32 d x d product.
                baseline[0] += time.perf_counter() - start
                message = lr_pb2.FitRequest(features=tensor(features), labels=labels.tolist())
                if first:
                    message.num_classes = CLASSES
                    first = False
                sent += rows
                yield message

        start = time.perf_counter()
        response = stub.FitStream(messages(), timeout=3600)
        seconds = time.perf_counter() - start
        peak = vm_hwm_mib(server.pid)
        report = response.report

        # Held-out accuracy of the streamed model vs the Bayes rule (true means, identity covariance).
        test_x, test_y = chunk(np.random.default_rng(2), 200_000, means)
        predicted = stub.Predict(lr_pb2.PredictRequest(model=response.model, features=tensor(test_x)), timeout=600)
        accuracy = float(np.mean(np.asarray(predicted.labels) == test_y))
        distances = ((test_x[:, None, :] - means[None, :, :]) ** 2).sum(-1)
        bayes = float(np.mean(np.argmin(distances, axis=1) == test_y))

        data_mib = samples * DIM * 4 / 2**20
        print(f"FitStream N={samples} d={DIM} K={CLASSES} in chunks of {chunk_rows} rows ({data_mib:.0f} MiB of "
              f"float32 features): {seconds:.2f} s end to end ({samples / seconds / 1e6:.2f} M samples/s, client "
              f"data generation included), server fit {report.seconds:.2f} s ({samples / report.seconds / 1e6:.2f} M "
              f"samples/s)")
        print(f"baseline numpy float32 X^T X of the same chunks: {baseline[0]:.2f} s; server fit / baseline = "
              f"{report.seconds / baseline[0]:.2f}")
        print(f"held-out accuracy {accuracy:.4f} vs Bayes rule {bayes:.4f} (200000 samples); report samples "
              f"{report.samples:.0f}")
        print(f"server peak RSS {peak:.0f} MiB vs limit {LIMIT_MIB} MiB: {'OK' if peak < LIMIT_MIB else 'OVER'}")
        ok = peak < LIMIT_MIB and report.samples == samples and abs(accuracy - bayes) <= 0.01
        return 0 if ok else 1
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
