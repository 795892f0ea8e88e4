#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/) from small valid and
near-valid requests, in the layout of tests/fuzz/fuzz_util.h: byte 0 selects the RPC, the rest
is the serialized request (FitStream: 2-byte little-endian length-prefixed messages).

Usage: PYTHONPATH=build/python /usr/bin/python3 tests/fuzz/make_corpus.py [tests/fuzz/corpus]
(build/python holds the generated protobuf modules of a normal build). Deterministic: the same
protos give the same files, named by content hash.
"""
import hashlib
import os
import struct
import sys

from primserve.v1 import attention_pb2 as att
from primserve.v1 import discriminator_pb2 as dis
from primserve.v1 import logistic_regression_pb2 as log
from primserve.v1 import models_pb2 as mod
from primserve.v1 import position_encoding_pb2 as pe
from primserve.v1 import toolkit_pb2 as tk


def tensor(t, shape, values, raw=False):
    t.shape.extend(shape)
    if raw:
        t.data = struct.pack("<%df" % len(values), *values)
    else:
        t.values.extend(values)
    return t


def seq(n, scale=0.25, offset=0.0):
    return [offset + scale * ((i * 7) % 11 - 5) for i in range(n)]


def position_encoding():
    out = []
    r = pe.SinusoidalRequest(length=4, dim=8)
    out.append((0, r))
    out.append((0, pe.SinusoidalRequest(positions=[0.5, -1.0, 3.0], dim=4, base=100.0,
                                        layout=pe.SINUSOIDAL_LAYOUT_SPLIT)))
    r = pe.ApplyRopeRequest()
    tensor(r.input, [2, 3, 4], seq(24))
    out.append((1, r))
    r = pe.ApplyRopeRequest(kind=pe.ROPE_KIND_ROPE_2D, grid_height=2, grid_width=2,
                            pairing=pe.ROPE_PAIRING_HALF_SPLIT, rotary_dim=4, inverse=True)
    tensor(r.input, [4, 8], seq(32), raw=True)
    out.append((1, r))
    r = pe.ApplyRopeRequest(positions=[0.0, 1.5, 2.0])
    tensor(r.input, [3, 2], seq(6))
    out.append((1, r))
    return out


def attention():
    out = []
    r = att.AttendRequest(causal=True, return_weights=True)
    tensor(r.query, [1, 2, 3, 4], seq(24))
    tensor(r.key, [1, 1, 3, 4], seq(12, 0.5))
    tensor(r.value, [1, 1, 3, 2], seq(6, 1.0), raw=True)
    out.append((0, r))
    r = att.AttendRequest(kind=att.ATTENTION_KIND_LINEAR, key_lengths=[2, 3])
    tensor(r.query, [2, 1, 2, 2], seq(8))
    tensor(r.key, [2, 1, 3, 2], seq(12))
    tensor(r.value, [2, 1, 3, 2], seq(12))
    out.append((0, r))
    r = att.AttendRequest(scale=0.5)
    tensor(r.query, [1, 1, 2, 4], seq(8))
    tensor(r.key, [1, 1, 2, 4], seq(8))
    tensor(r.value, [1, 1, 2, 4], seq(8))
    tensor(r.bias, [1, 1, 2, 2], [0.0, float("-inf"), 0.5, 0.0])
    r.rope.kind = pe.ROPE_KIND_ROPE_1D
    r.rope.key_positions.extend([0.0, 1.0])
    out.append((0, r))
    out.append((1, att.EstimateCostRequest(seq_len=512, head_size=64, num_heads=8)))
    out.append((1, att.EstimateCostRequest(seq_len=1, head_size=1, num_heads=1, ffn_multiplier=2.5,
                                           linear_head_multiplier=1.0)))
    return out


def logistic():
    out = []
    features = [0.0, 1.0, 1.0, 0.0, 2.0, 2.5, -1.0, 0.5, 1.5, -0.5, 0.25, 3.0]
    labels = [0, 1, 2, 0, 1, 2]
    r = log.FitRequest(labels=labels, ridge=0.01)
    tensor(r.features, [6, 2], features)
    out.append((0, r))
    r = log.FitRequest(labels=labels, solver=log.SOLVER_MAXIMUM_LIKELIHOOD, l2=0.1, max_iterations=20,
                       model_name="fitted")
    tensor(r.features, [6, 2], features, raw=True)
    out.append((0, r))
    # FitStream: options first, then two data chunks.
    first = log.FitRequest(num_classes=3, covariance=log.COVARIANCE_TOTAL, ridge=0.1, model_name="iris")
    chunk1 = log.FitRequest(labels=labels[:3])
    tensor(chunk1.features, [3, 2], features[:6])
    chunk2 = log.FitRequest(labels=labels[3:])
    tensor(chunk2.features, [3, 2], features[6:], raw=True)
    stream = b"".join(struct.pack("<H", len(m)) + m for m in
                      (first.SerializeToString(), chunk1.SerializeToString(), chunk2.SerializeToString()))
    out.append((1, stream))
    r = log.ComputeStatisticsRequest(labels=labels, num_classes=3)
    tensor(r.features, [6, 2], features)
    out.append((2, r))
    r = log.FitFromStatisticsRequest(num_classes=3, ridge=0.5)
    s = r.statistics.add(dim=2, counts=[1, 1], class_shifts=[0, 0, 1, 1], class_sums=[0.5, 1, 2, 1],
                         scatter=[1, 0.1, 0.1, 2])
    r.statistics.add().CopyFrom(s)
    out.append((3, r))
    r = log.PredictRequest(model_name="iris")
    tensor(r.features, [2, 2], [0.5, 1.0, -1.0, 2.0])
    out.append((4, r))
    r = log.PredictRequest()
    tensor(r.model.weights, [2, 3], seq(6))
    tensor(r.model.bias, [2], [0.0, 0.5])
    tensor(r.features, [1, 3], [1.0, 2.0, 3.0])
    out.append((4, r))
    r = log.PredictRequest(model_name="disc")  # a model of the wrong kind
    tensor(r.features, [1, 2], [1.0, 2.0])
    out.append((4, r))
    return out


def network(n, conv=False):
    if conv:
        n.input_shape.extend([1, 4, 4])
        c = n.layers.add().conv2d
        tensor(c.weight, [2, 1, 3, 3], seq(18))
        tensor(c.bias, [2], [0.0, 0.1])
        c.stride = 1
        c.padding = 1
        n.layers.add().activation.kind = dis.ACTIVATION_KIND_ELU
        n.layers.add().flatten.SetInParent()
        d = n.layers.add().dense
        tensor(d.weight, [1, 32], seq(32, 0.1))
        tensor(d.bias, [1], [0.0])
    else:
        n.input_shape.extend([3])
        d = n.layers.add().dense
        tensor(d.weight, [2, 3], seq(6), raw=True)
        tensor(d.bias, [2], [0.1, -0.1])
        a = n.layers.add().activation
        a.kind = dis.ACTIVATION_KIND_LEAKY_RELU
        a.alpha = 0.1
        d = n.layers.add().dense
        tensor(d.weight, [1, 2], [1.0, -1.0])
        tensor(d.bias, [1], [0.0])
    return n


def discriminator():
    out = []
    r = dis.RegisterRequest(name="new-disc")
    network(r.network)
    out.append((0, r))
    r = dis.ScoreRequest(model_name="disc", return_input_gradient=True)
    tensor(r.inputs, [2, 2], [0.5, -1.0, 2.0, 0.0])
    out.append((1, r))
    r = dis.ScoreRequest(normalization=dis.NORMALIZATION_GRAN, epsilon=1e-3)
    network(r.network, conv=True)
    tensor(r.inputs, [1, 1, 4, 4], seq(16))
    out.append((1, r))
    r = dis.ScoreRequest(normalization=dis.NORMALIZATION_NONE)
    network(r.network)
    tensor(r.inputs, [1, 3], [1.0, 2.0, 3.0], raw=True)
    out.append((1, r))
    r = dis.LossesRequest(model_name="disc", loss=dis.LOSS_BCE)
    tensor(r.real_inputs, [2, 2], [0.5, -1.0, 2.0, 0.0])
    tensor(r.fake_inputs, [1, 2], [0.0, 1.0])
    out.append((2, r))
    r = dis.LossesRequest(loss=dis.LOSS_WASSERSTEIN)
    network(r.network)
    tensor(r.real_inputs, [1, 3], [1.0, 2.0, 3.0])
    tensor(r.fake_inputs, [1, 3], [0.0, 0.0, 1.0])
    out.append((2, r))
    return out


def toolkit():
    out = []
    out.append((0, tk.EmbeddingDimensionRequest(vocab_size=30000)))
    out.append((0, tk.EmbeddingDimensionRequest(vocab_size=2, coefficient=1.5)))
    out.append((1, tk.InitializeParametersRequest(shape=[4, 3], seed=7)))
    out.append((1, tk.InitializeParametersRequest(shape=[2, 3, 2, 2], distribution=tk.INIT_DISTRIBUTION_TRUNCATED_NORMAL,
                                                  scheme=tk.INIT_SCHEME_HE, seed=1)))
    out.append((1, tk.InitializeParametersRequest(shape=[5], distribution=tk.INIT_DISTRIBUTION_UNIFORM,
                                                  scheme=tk.INIT_SCHEME_STDDEV, stddev=0.02)))
    r = tk.ChildTuningMaskRequest(keep_probability=0.5, rescale=True, seed=3)
    tensor(r.gradient, [2, 3], seq(6))
    out.append((2, r))
    r = tk.ChildTuningMaskRequest(mode=tk.CHILD_TUNING_MODE_TASK_DRIVEN, keep_probability=0.25)
    tensor(r.gradient, [4], [1.0, -2.0, 3.0, -4.0], raw=True)
    tensor(r.fisher, [4], [0.5, 0.1, 2.0, 0.0])
    out.append((2, r))
    return out


def model_file(model):
    """A whole model file (header + payload), as server/model_store.h lays it out."""
    payload = model.SerializeToString()
    head = b"PSMODEL\n" + struct.pack("<IIQ", 1, model.kind, len(payload))
    return head + struct.pack("<II", crc32c(head + payload), 0) + payload


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def model_store():
    logistic_model = mod.StoredModel(kind=mod.MODEL_KIND_LOGISTIC, created_unix_micros=1700000000000000)
    tensor(logistic_model.logistic.weights, [2, 3], seq(6))
    tensor(logistic_model.logistic.bias, [2], [0.0, 1.0], raw=True)
    logistic_model.logistic.priors.extend([0.5, 0.5])
    disc_model = mod.StoredModel(kind=mod.MODEL_KIND_DISCRIMINATOR)
    network(disc_model.discriminator, conv=True)
    out = []
    for model in (logistic_model, disc_model):
        out.append((0, model_file(model)))                              # a whole, valid file
        out.append((1 + 2 * model.kind, model.SerializeToString()))     # payload; harness adds the header
    return out


TARGETS = {
    "position_encoding_fuzzer": position_encoding,
    "attention_fuzzer": attention,
    "logistic_fuzzer": logistic,
    "discriminator_fuzzer": discriminator,
    "toolkit_fuzzer": toolkit,
    "model_store_fuzzer": model_store,
}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    assert crc32c(b"123456789") == 0xE3069283
    for target, make in TARGETS.items():
        directory = os.path.join(root, target)
        os.makedirs(directory, exist_ok=True)
        for selector, message in make():
            payload = message if isinstance(message, bytes) else message.SerializeToString()
            data = bytes([selector]) + payload
            name = hashlib.sha1(data).hexdigest()[:16]
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
        print("%s: %d seeds" % (target, len(os.listdir(directory))))


if __name__ == "__main__":
    main()
