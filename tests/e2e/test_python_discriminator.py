#!/usr/bin/python3
"""End-to-end test of the Python Discriminator client against a real server.

Checks the MATH.md section 8 goldens (GN 8/13 with ||grad f_hat|| = 25/169, GraN 1.59999999936),
a tanh MLP against a float64 numpy reference (f, ||grad f||, f_hat, and grad f_hat by central
differences of the reference f_hat), Register / restart / Score by name identical, hinge D -
wasserstein D = 2 on GN scores, the error codes, network_from_state_dict on a state_dict of
numpy arrays, and (only where torch is installed; otherwise SKIPPED with a message) on a torch
nn.Sequential against torch's own forward pass and autograd.

    PYTHONPATH=build/python /usr/bin/python3 -m unittest tests/e2e/test_python_discriminator.py -v

Environment: PRIMSERVE_SERVER (server binary; default build/server/primserve-server),
PRIMSERVE_PYTHON_DIR (package root used when `primserve` is not importable; default build/python).
"""

import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

from primserve_test_server import Server, primserve
import grpc
from primserve.discriminator import network_from_state_dict

try:
    import torch
except ImportError:
    torch = None


def tanh_mlp(seed, features=5, hidden=7):
    rng = np.random.default_rng(seed)
    return {"0.weight": rng.standard_normal((hidden, features)) / np.sqrt(features),
            "0.bias": 0.1 * rng.standard_normal(hidden),
            "2.weight": rng.standard_normal((1, hidden)) / np.sqrt(hidden),
            "2.bias": 0.1 * rng.standard_normal(1)}


MLP_LAYERS = [{"type": "linear", "key": "0"}, "tanh", {"type": "linear", "key": "2"}]


def reference(params, x):
    """float64 f, grad_x f and GN f_hat of the tanh MLP for one sample x."""
    w0, b0 = params["0.weight"].astype(np.float32).astype(np.float64), params["0.bias"].astype(np.float32)
    w2, b2 = params["2.weight"].astype(np.float32).astype(np.float64), params["2.bias"].astype(np.float32)
    h = np.tanh(w0 @ x + b0)
    f = float(w2 @ h + b2)
    g = w0.T @ ((1 - h * h) * w2[0])
    n = np.linalg.norm(g)
    return f, g, f / (n + abs(f))


def cpu_has_avx512_bf16():
    """True when this machine (where the test server runs) has native bf16 (avx512_bf16)."""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("flags"):
                return "avx512_bf16" in line.split()
    return False


class NetworkConversionTest(unittest.TestCase):
    """network_from_state_dict alone (no server)."""

    def test_integer_fields_are_never_truncated(self):
        # stride 1.5 was sent as 1, input_shape 5.5 as 5: both are checked and named.
        conv = {"0.weight": np.ones((2, 1, 3, 3)), "0.bias": np.zeros(2)}
        refused = [
            (ValueError, "input_shape[0]", lambda: network_from_state_dict(
                conv, layers=[{"type": "conv2d", "key": "0"}], input_shape=(1.5, 4, 4))),
            (TypeError, "input_shape[2]", lambda: network_from_state_dict(
                conv, layers=[{"type": "conv2d", "key": "0"}], input_shape=[1, 4, True])),
            (ValueError, "layers[0]: stride", lambda: network_from_state_dict(
                conv, layers=[{"type": "conv2d", "key": "0", "stride": 1.5}], input_shape=(1, 4, 4))),
            (ValueError, "layers[1]: padding", lambda: network_from_state_dict(
                conv, layers=["relu", {"type": "conv2d", "key": "0", "padding": 0.5}], input_shape=(1, 4, 4))),
        ]
        for error, name, call in refused:
            with self.subTest(argument=name):
                with self.assertRaises(error) as ctx:
                    call()
                self.assertIn(name, str(ctx.exception))
        network = network_from_state_dict(conv, layers=[{"type": "conv2d", "key": "0", "stride": 2.0}],
                                          input_shape=(np.int64(1), 4.0, 4))
        self.assertEqual(list(network.input_shape), [1, 4, 4])
        self.assertEqual(network.layers[0].conv2d.stride, 2)


class PythonDiscriminatorTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="primserve-e2e-discriminator-")
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        self.models = self.tmp / "models"
        self.server = self.start_server("server.log")
        self.client = primserve.Client(self.server.address, timeout=60)

    def start_server(self, log_name):
        server = Server(self.models, self.tmp / log_name)
        self.addCleanup(lambda: server.process.poll() is None and server.stop())
        return server

    def tearDown(self):
        self.client.close()
        self.assertEqual(self.server.stop(), 0)

    def linear(self):
        return network_from_state_dict({"0.weight": [[3.0, 4.0]], "0.bias": [1.0]},
                                       layers=[{"type": "dense", "key": "0"}], input_shape=(2,))

    def test_math_goldens(self):
        info = self.client.register_discriminator("linear", self.linear())
        self.assertEqual(info, {"input_shape": (2,), "num_layers": 1, "piecewise_linear": True})
        for source in ({"model_name": "linear"}, {"network": self.linear()}):
            out = self.client.score([[1.0, 1.0]], return_input_gradient=True, **source)
            np.testing.assert_array_equal(out["raw_scores"], [8.0])
            np.testing.assert_array_equal(out["gradient_norms"], [5.0])
            self.assertAlmostEqual(float(out["scores"][0]), 0.6153846154, delta=1e-7)   # 8/13
            self.assertEqual(out["input_gradients"].shape, (1, 2))
            self.assertAlmostEqual(float(np.linalg.norm(out["input_gradients"])), 0.1479289941, delta=1e-7)
        gran = self.client.score([[1.0, 1.0]], model_name="linear", normalization="gran", epsilon=1e-8)
        self.assertAlmostEqual(float(gran["scores"][0]), 1.59999999936, delta=2e-7)
        self.assertNotIn("input_gradients", gran)
        none = self.client.score([[1.0, 1.0]], model_name="linear", normalization="none",
                                 return_input_gradient=True)
        np.testing.assert_array_equal(none["input_gradients"], [[3.0, 4.0]])

    def test_tanh_mlp_against_numpy_reference(self):
        params = tanh_mlp(1)
        network = network_from_state_dict(params, layers=MLP_LAYERS, input_shape=(5,))
        x = np.random.default_rng(2).standard_normal((3, 5)).astype(np.float32)
        out = self.client.score(x, network=network, return_input_gradient=True)
        h = 1e-4
        for i in range(3):
            f, g, f_hat = reference(params, x[i].astype(np.float64))
            self.assertAlmostEqual(float(out["raw_scores"][i]), f, delta=1e-5)
            self.assertAlmostEqual(float(out["gradient_norms"][i]), np.linalg.norm(g), delta=1e-5)
            self.assertAlmostEqual(float(out["scores"][i]), f_hat, delta=1e-5)
            # grad f_hat includes the Hessian term for tanh: compare with central differences
            # of the float64 reference (truncation error O(h^2) ~ 1e-8, far below float32's).
            fd = np.array([(reference(params, x[i] + h * e)[2] - reference(params, x[i] - h * e)[2]) / (2 * h)
                           for e in np.eye(5)])
            np.testing.assert_allclose(out["input_gradients"][i], fd, atol=2e-5, rtol=0)

    def test_bf16_precision_against_numpy_reference(self):
        # precision="bf16": bfloat16 products with float32 accumulation (~1e-2 relative error,
        # core/discriminator.h); UNIMPLEMENTED where the CPU lacks avx512_bf16.
        params = tanh_mlp(5, features=9, hidden=13)
        network = network_from_state_dict(params, layers=MLP_LAYERS, input_shape=(9,))
        x = np.random.default_rng(6).standard_normal((17, 9)).astype(np.float32)
        if not cpu_has_avx512_bf16():
            with self.assertRaises(primserve.Error) as raised:
                self.client.score(x, network=network, precision="bf16")
            self.assertEqual(raised.exception.code, grpc.StatusCode.UNIMPLEMENTED)
            return
        out = self.client.score(x, network=network, precision="bf16")
        refs = [reference(params, xi.astype(np.float64)) for xi in x]
        f = np.array([r[0] for r in refs])
        n = np.array([np.linalg.norm(r[1]) for r in refs])
        f_hat = np.array([r[2] for r in refs])
        for name, want in (("raw_scores", f), ("gradient_norms", n), ("scores", f_hat)):
            error = np.linalg.norm(out[name] - want) / np.linalg.norm(want)
            self.assertLess(error, 4e-2, name)
            self.assertGreater(error, 1e-6, f"{name}: BF16 as exact as F32")
        with self.assertRaises(ValueError):
            self.client.score(x, network=network, precision="fp8")
        with self.assertRaises(primserve.Error) as raised:
            self.client.score(x, network=network, precision=9)  # an unknown enum number
        self.assertEqual(raised.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("compute_precision", raised.exception.message)

    def test_register_restart_score_identical_and_losses(self):
        params = tanh_mlp(3)
        self.client.register_discriminator(
            "mlp", network_from_state_dict(params, layers=MLP_LAYERS, input_shape=(5,)))
        x = np.random.default_rng(4).standard_normal((17, 5)).astype(np.float32)
        before = self.client.score(x, model_name="mlp", return_input_gradient=True)
        self.client.close()
        self.assertEqual(self.server.stop(), 0)
        self.server = self.start_server("restarted.log")
        self.client = primserve.Client(self.server.address, timeout=60)
        models, unreadable = self.client.list_models(kind="discriminator")
        self.assertEqual([m["name"] for m in models], ["mlp"])
        self.assertEqual(models[0]["input_shape"], [5])
        self.assertEqual(unreadable, [])
        after = self.client.score(x, model_name="mlp", return_input_gradient=True)
        for key in before:
            np.testing.assert_array_equal(after[key], before[key])
        info, network = self.client.get_model("mlp")
        self.assertEqual(info["kind"], "discriminator")
        self.assertEqual(info["input_shape"], [5])
        self.assertEqual(len(network.layers), 3)

        real, fake = x[:9], 3.0 * x[9:]
        hinge = self.client.gan_losses(real, fake, model_name="mlp", loss="hinge")
        wasserstein = self.client.gan_losses(real, fake, model_name="mlp", loss="wasserstein")
        self.assertAlmostEqual(hinge[0] - wasserstein[0], 2.0, delta=1e-12)
        self.assertEqual(hinge[1], wasserstein[1])
        scores = self.client.score(fake, model_name="mlp")["scores"]
        self.assertAlmostEqual(wasserstein[1], -float(np.mean(scores.astype(np.float64))), delta=1e-6)

    def test_errors(self):
        self.client.register_discriminator("linear", self.linear())
        cases = [
            (lambda: self.client.score([[1.0, 1.0, 1.0]], model_name="linear"),
             grpc.StatusCode.INVALID_ARGUMENT, "inputs.shape"),
            (lambda: self.client.score([[1.0, np.nan]], model_name="linear"),
             grpc.StatusCode.INVALID_ARGUMENT, "inputs"),
            (lambda: self.client.score([[1.0, 1.0]], model_name="nope"), grpc.StatusCode.NOT_FOUND, "nope"),
            (lambda: self.client.score([[1.0, 1.0]], model_name="linear", normalization="gran", epsilon=0),
             grpc.StatusCode.INVALID_ARGUMENT, "epsilon"),
            (lambda: self.client.score([[1.0, 1.0]], model_name="linear", epsilon=1e-3),
             grpc.StatusCode.INVALID_ARGUMENT, "epsilon"),
            (lambda: self.client.register_discriminator("bad", network_from_state_dict(
                {"0.weight": [[1.0, 2.0, 3.0]], "0.bias": [0.0]}, layers=[{"type": "dense", "key": "0"}],
                input_shape=(2,))), grpc.StatusCode.INVALID_ARGUMENT, "network.layers[0] (Dense)"),
        ]
        for call, code, text in cases:
            with self.subTest(text=text):
                with self.assertRaises(primserve.Error) as raised:
                    call()
                self.assertEqual(raised.exception.code, code)
                self.assertIn(text, raised.exception.message)
        with self.assertRaises(ValueError):
            self.client.score([[1.0, 1.0]])  # neither model_name nor network
        fit_x = np.array([[0.0], [1.0], [2.0], [3.0]])
        self.client.fit(fit_x, [0, 0, 1, 1], model_name="logistic")
        with self.assertRaises(primserve.Error) as raised:
            self.client.score([[1.0, 1.0]], model_name="logistic")
        self.assertEqual(raised.exception.code, grpc.StatusCode.FAILED_PRECONDITION)

    def test_torch_sequential(self):
        if torch is None:
            print("\nSKIPPED test_torch_sequential: torch is not installed for this python3 "
                  "(network_from_state_dict on an nn.Sequential is untested here)", file=sys.stderr)
            self.skipTest("torch is not installed")
        nn = torch.nn
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                              nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ELU()), nn.Flatten(),
                              nn.Linear(4 * 3 * 4, 6), nn.Tanh(), nn.Linear(6, 1)).double()
        network = network_from_state_dict(model, input_shape=(3, 5, 7))
        self.assertEqual(len(network.layers), 8)
        x = torch.randn(3, 3, 5, 7, dtype=torch.float64, requires_grad=True)
        f = model(x).reshape(-1)
        (g,) = torch.autograd.grad(f.sum(), x, create_graph=True)
        n = g.reshape(3, -1).norm(dim=1)
        f_hat = f / (n + f.abs())
        (g_hat,) = torch.autograd.grad(f_hat.sum(), x)
        out = self.client.score(x.detach().numpy(), network=network, return_input_gradient=True)
        np.testing.assert_allclose(out["raw_scores"], f.detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(out["gradient_norms"], n.detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(out["scores"], f_hat.detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(out["input_gradients"], g_hat.numpy(), atol=1e-5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
