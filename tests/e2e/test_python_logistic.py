#!/usr/bin/python3
"""End-to-end test of the Python LogisticRegression / Models client against real servers.

Checks the MATH.md section 5 golden, FitStream == Fit, FitFromStatistics over three shards ==
Fit, the sharded fit over three local servers (round_robin) == a single Fit, persistence across
a restart (Predict by name bit-identical), the scikit-learn-like wrapper, and the error codes.

    PYTHONPATH=build/python /usr/bin/python3 -m unittest tests/e2e/test_python_logistic.py -v

Environment: PRIMSERVE_SERVER (server binary; default build/server/primserve-server),
PRIMSERVE_PYTHON_DIR (package root used when `primserve` is not importable; default build/python).
"""

import tempfile
import time
import unittest
from pathlib import Path

import numpy as np

from primserve_test_server import Server, primserve
import grpc

GOLDEN_X = np.array([[1, 2], [2, 0.5], [0, 1], [3, 3], [2.5, 1], [1.5, 2.5]])
GOLDEN_Y = np.array([0, 0, 0, 1, 1, 1])


def gaussians(n, d, k, seed):
    """n samples of k Gaussian classes in d dimensions, away from the origin."""
    rng = np.random.default_rng(seed)
    means = 1.5 * rng.standard_normal((k, d)) + 10.0
    y = np.arange(n) * 7 % k
    return (means[y] + rng.standard_normal((n, d))).astype(np.float32), y


class PythonLogisticTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="primserve-e2e-logistic-")
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        self.models = self.tmp / "models"
        self.server = self.start_server("server.log")
        self.client = primserve.Client(self.server.address, timeout=60)

    def start_server(self, log_name, extra=(), model_dir=None):
        server = Server(model_dir or self.models, self.tmp / log_name, extra)
        self.addCleanup(lambda: server.process.poll() is None and server.stop())
        return server

    def tearDown(self):
        self.client.close()
        self.assertEqual(self.server.stop(), 0, self.server.log_text()[-2000:])

    def assertSameModel(self, a, b, features, atol=1e-5):
        """Same predictions (weights are defined up to a shared shift, so never compared)."""
        pa, la = self.client.predict(features, model=a)
        pb, lb = self.client.predict(features, model=b)
        np.testing.assert_allclose(pa, pb, atol=atol, rtol=0)
        np.testing.assert_array_equal(la, lb)

    def test_golden_and_predict_by_name(self):
        model, report = self.client.fit(GOLDEN_X, GOLDEN_Y, model_name="golden")
        self.assertEqual(model["weights"].shape, (2, 2))
        w, b = model["weights"], model["bias"]
        np.testing.assert_allclose(w[1] - w[0], [2.8093645485, 2.1511705686], atol=2e-5)
        self.assertAlmostEqual(float(b[1] - b[0]), -8.2675585284, delta=5e-5)
        np.testing.assert_array_equal(model["priors"], [0.5, 0.5])
        self.assertEqual(report["samples"], 6)
        self.assertTrue(report["converged"])
        proba, labels = self.client.predict([[2.0, 2.0]], model_name="golden")
        self.assertAlmostEqual(float(proba[0, 1]), 0.8393651028, delta=2e-6)
        np.testing.assert_array_equal(labels, [1])
        inline, _ = self.client.predict([[2.0, 2.0]], model=model)
        np.testing.assert_array_equal(inline, proba)
        # TOTAL covariance runs and differs from POOLED_WITHIN on this data.
        total, _ = self.client.fit(GOLDEN_X, GOLDEN_Y, covariance="total")
        self.assertFalse(np.allclose(total["weights"][1] - total["weights"][0], w[1] - w[0]))

    def test_fit_stream_and_three_shards_equal_fit(self):
        x, y = gaussians(2001, 9, 4, 1)
        model, _ = self.client.fit(x, y)
        for rows in (1, 150, 2001):
            with self.subTest(rows=rows):
                streamed, report = self.client.fit_stream((x[i:i + rows], y[i:i + rows])
                                                          for i in range(0, len(x), rows))
                self.assertEqual(report["samples"], 2001)
                self.assertTrue(np.isnan(report["train_accuracy"]))
                self.assertSameModel(streamed, model, x)
        bounds = [0, 700, 1300, 2001]
        shards = [self.client.compute_statistics(x[a:b], y[a:b]) for a, b in zip(bounds, bounds[1:])]
        merged, report = self.client.fit_from_statistics(shards)
        self.assertEqual(report["samples"], 2001)
        self.assertSameModel(merged, model, x)

    def test_fit_stream_raises_the_iterators_own_exception_and_stores_nothing(self):
        # gRPC alone reports UNKNOWN "Exception iterating requests!" and loses the exception.
        x, y = gaussians(300, 3, 2, 5)
        broke = RuntimeError("my data loader broke")

        def loader():
            yield x[:100], y[:100]
            yield x[100:200], y[100:200]
            raise broke

        with self.assertRaises(RuntimeError) as ctx:
            self.client.fit_stream(loader(), model_name="broken")
        self.assertIs(ctx.exception, broke)
        # The client's own conversion error in a later chunk: the same ValueError as fit's.
        with self.assertRaises(ValueError) as ctx:
            self.client.fit_stream([(x[:100], y[:100]), (x[100:], y[100:] + 0.5)], model_name="broken")
        self.assertIn("labels must be integers 0..K-1", str(ctx.exception))
        # No rows at all is a clear local error, not the server's "features.shape: ... dim = 0".
        for chunks in (iter([]), [], [(np.zeros((0, 3)), [])]):
            with self.subTest(chunks=chunks):
                with self.assertRaises(ValueError) as ctx:
                    self.client.fit_stream(chunks, model_name="broken")
                self.assertIn("fit_stream: the stream held no rows", str(ctx.exception))
        # The broken streams were cancelled, not half-closed (which would fit and store the rows
        # sent so far): nothing is stored, and the only FitStream the server completed is the last.
        self.assertEqual(self.client.list_models(), ([], []))
        self.assertEqual([p.name for p in self.models.glob("*.model")], [])
        _, report = self.client.fit_stream(((x[i:i + 100], y[i:i + 100]) for i in range(0, 300, 100)),
                                           model_name="whole")
        self.assertEqual(report["samples"], 300)
        self.assertEqual([m["name"] for m in self.client.list_models()[0]], ["whole"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "FitStream OK" not in self.server.log_text():
            time.sleep(0.05)
        self.assertEqual(self.server.log_text().count("FitStream OK"), 1, self.server.log_text()[-3000:])

    def test_fit_stream_message_that_does_not_parse_fails_the_fit(self):
        # A gRPC ServerReader reads such a message as the end of the stream: the server fitted and
        # stored the rows before it, and answered OK.
        from primserve.tensors import to_tensor
        from primserve.v1 import logistic_regression_pb2 as lr_pb2
        x, y = gaussians(300, 3, 2, 6)
        first = lr_pb2.FitRequest(features=to_tensor(x[:100]), labels=y[:100].tolist(), model_name="cut")
        second = lr_pb2.FitRequest(features=to_tensor(x[100:]), labels=y[100:].tolist()).SerializeToString()
        with grpc.insecure_channel(self.server.address) as channel:
            fit_stream = channel.stream_unary("/primserve.v1.LogisticRegression/FitStream",
                                              request_serializer=lambda b: b,
                                              response_deserializer=lr_pb2.FitResponse.FromString)
            for bad in (second[:len(second) // 2], b"\xff\xff"):
                with self.subTest(bad=bad[:8]):
                    with self.assertRaises(grpc.RpcError) as ctx:
                        fit_stream(iter([first.SerializeToString(), bad, second]), timeout=30)
                    self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                    self.assertIn("FitStream message 2: cannot parse", ctx.exception.details())
            self.assertEqual(self.client.list_models(), ([], []))
            # The same messages, whole, fit all 300 rows.
            response = fit_stream(iter([first.SerializeToString(), second]), timeout=30)
        self.assertEqual(response.report.samples, 300)
        self.assertEqual([m["name"] for m in self.client.list_models()[0]], ["cut"])

    def test_integer_arguments_and_labels_are_never_wrapped_or_truncated(self):
        # uint64 labels >= 2**63 wrapped to negative numbers (the server saw -9223372036854775803).
        big = np.array([0, 0, 0, 1, 1, 2**63 + 5], dtype=np.uint64)
        for call in (lambda: self.client.fit(GOLDEN_X, big),
                     lambda: self.client.compute_statistics(GOLDEN_X, big),
                     lambda: self.client.fit_stream([(GOLDEN_X, big)])):
            with self.assertRaises(ValueError) as ctx:
                call()
            self.assertIn("9223372036854775813", str(ctx.exception))
            self.assertIn("labels", str(ctx.exception))
        with self.assertRaises(ValueError) as ctx:
            self.client.fit(GOLDEN_X, [0, 0, 0, 1, 1, 1e300])
        self.assertIn("labels", str(ctx.exception))
        model, _ = self.client.fit(GOLDEN_X, GOLDEN_Y.astype(np.uint64))
        self.assertSameModel(model, self.client.fit(GOLDEN_X, GOLDEN_Y)[0], GOLDEN_X)
        refused = [
            (ValueError, "num_classes", lambda: self.client.fit(GOLDEN_X, GOLDEN_Y, num_classes=2.5)),
            (TypeError, "num_classes", lambda: self.client.fit(GOLDEN_X, GOLDEN_Y, num_classes=True)),
            (ValueError, "max_iterations", lambda: self.client.fit(GOLDEN_X, GOLDEN_Y, solver="maximum_likelihood",
                                                                   max_iterations=10.5)),
            (ValueError, "num_classes", lambda: self.client.compute_statistics(GOLDEN_X, GOLDEN_Y, 2.5)),
            (ValueError, "num_shards", lambda: self.client.fit_sharded(GOLDEN_X, GOLDEN_Y, num_shards=1.5)),
            (ValueError, "num_shards", lambda: self.client.fit_sharded(GOLDEN_X, GOLDEN_Y, num_shards=0)),
            (ValueError, "chunk_rows", lambda: primserve.LogisticRegression(self.client, chunk_rows=2.5)
             .fit(GOLDEN_X, GOLDEN_Y)),
            (TypeError, "chunk_rows", lambda: primserve.LogisticRegression(self.client, chunk_rows=True)
             .fit(GOLDEN_X, GOLDEN_Y)),
        ]
        for error, name, call in refused:
            with self.subTest(argument=name):
                with self.assertRaises(error) as ctx:
                    call()
                self.assertIn(name, str(ctx.exception))
        model, report = self.client.fit(GOLDEN_X, GOLDEN_Y, num_classes=2.0)
        self.assertEqual(report["samples"], 6)
        self.assertEqual(self.client.list_models(), ([], []))

    def test_sharded_fit_across_three_servers_equals_single_fit(self):
        others = [self.start_server(f"replica{i}.log", ["--log_level=debug"], self.tmp / f"models{i}")
                  for i in range(3)]
        x, y = gaussians(3000, 6, 3, 2)
        model, _ = self.client.fit(x, y)
        address = "ipv4:" + ",".join(s.address for s in others)
        computed = lambda: [s.log_text().count("ComputeStatistics: ") for s in others]
        with primserve.Client(address, timeout=60) as many:
            grpc.channel_ready_future(many._channel).result(timeout=10)
            # round_robin only uses READY subchannels: send tiny calls until every replica has
            # answered one (bounded), then count only the sharded fit's calls.
            tx, ty = gaussians(30, 6, 3, 7)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and min(computed()) == 0:
                many.compute_statistics(tx, ty)
                time.sleep(0.02)
            before = computed()
            sharded, report = many.fit_sharded(x, y, num_shards=6)
        self.assertEqual(report["samples"], 3000)
        self.assertSameModel(sharded, model, x)
        counts = [after - was for after, was in zip(computed(), before)]
        self.assertEqual(sum(counts), 6, counts)
        self.assertTrue(all(c >= 1 for c in counts), f"shards per server: {counts}")
        for s in others:
            self.assertEqual(s.stop(), 0)

    def test_persistence_across_restart(self):
        x, y = gaussians(500, 5, 3, 3)
        self.client.fit(x, y, model_name="kept")
        before, labels_before = self.client.predict(x[:20], model_name="kept")
        self.client.close()
        self.assertEqual(self.server.stop(), 0)
        self.server = self.start_server("restarted.log")
        self.client = primserve.Client(self.server.address, timeout=60)
        models, unreadable = self.client.list_models()
        self.assertEqual([m["name"] for m in models], ["kept"])
        self.assertEqual((models[0]["num_classes"], models[0]["num_features"]), (3, 5))
        self.assertEqual(models[0]["input_shape"], [])
        self.assertEqual(unreadable, [])
        after, labels_after = self.client.predict(x[:20], model_name="kept")
        np.testing.assert_array_equal(after, before)
        np.testing.assert_array_equal(labels_after, labels_before)
        info, model = self.client.get_model("kept")
        self.assertEqual(info["kind"], "logistic")
        self.assertEqual(model["weights"].shape, (3, 5))
        self.client.delete_model("kept")
        self.assertEqual(self.client.list_models(), ([], []))

    def test_scikit_learn_like_wrapper(self):
        x, y = gaussians(600, 4, 3, 4)
        names = np.array(["cat", "dog", "eel"])[y]
        clf = primserve.LogisticRegression(self.client, model_name="wrapped").fit(x, names)
        self.assertEqual(list(clf.classes_), ["cat", "dog", "eel"])
        self.assertEqual(clf.coef_.shape, (3, 4))
        self.assertEqual(clf.intercept_.shape, (3,))
        proba = clf.predict_proba(x[:10])
        self.assertEqual(proba.shape, (10, 3))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
        self.assertGreater(clf.score(x, names), 0.9)
        np.testing.assert_array_equal(clf.predict(x[:10]), clf.classes_[np.argmax(proba, axis=1)])
        self.assertEqual([m["name"] for m in self.client.list_models()[0]], ["wrapped"])
        streamed = primserve.LogisticRegression(self.server.address, chunk_rows=128).fit(x, names)
        np.testing.assert_allclose(streamed.predict_proba(x), clf.predict_proba(x), atol=1e-5)
        ml = primserve.LogisticRegression(self.client, solver="maximum_likelihood", l2=1e-3).fit(x, names)
        self.assertTrue(ml.report_["converged"], ml.report_["solver_message"])
        self.assertGreater(ml.report_["iterations"], 0)

    def test_errors(self):
        cases = [
            (lambda: self.client.fit(GOLDEN_X, GOLDEN_Y, model_name="../x"),
             grpc.StatusCode.INVALID_ARGUMENT, "model_name"),
            (lambda: self.client.predict(GOLDEN_X, model_name="missing"), grpc.StatusCode.NOT_FOUND, "missing"),
            (lambda: self.client.predict(GOLDEN_X), grpc.StatusCode.INVALID_ARGUMENT, "neither"),
            (lambda: self.client.fit(np.where(GOLDEN_X > 2.9, np.nan, GOLDEN_X), GOLDEN_Y),
             grpc.StatusCode.INVALID_ARGUMENT, "features"),
            (lambda: self.client.fit(GOLDEN_X, [0, 0, 0, 1, 1, 5], num_classes=2),
             grpc.StatusCode.INVALID_ARGUMENT, "labels"),
            (lambda: self.client.fit(GOLDEN_X[:, :0], GOLDEN_Y), grpc.StatusCode.INVALID_ARGUMENT, "features"),
            (lambda: self.client.fit(np.c_[GOLDEN_X, np.ones(6)], GOLDEN_Y),
             grpc.StatusCode.FAILED_PRECONDITION, "ridge"),
            (lambda: self.client.fit_stream([(GOLDEN_X, GOLDEN_Y), (np.ones((2, 3)), [0, 1])], model_name="no"),
             grpc.StatusCode.INVALID_ARGUMENT, "features.shape"),
            (lambda: self.client.fit(GOLDEN_X, GOLDEN_Y, solver="maximum_likelihood"),
             grpc.StatusCode.FAILED_PRECONDITION, "separable"),
            (lambda: self.client.delete_model(".."), grpc.StatusCode.INVALID_ARGUMENT, "name"),
        ]
        for call, code, text in cases:
            with self.subTest(text=text):
                with self.assertRaises(primserve.Error) as ctx:
                    call()
                self.assertEqual(ctx.exception.code, code, ctx.exception.message)
                self.assertIn(text, ctx.exception.message)
        self.assertEqual(self.client.list_models(), ([], []))  # Nothing was stored.
        self.assertFalse((self.tmp / "x.model").exists())
        with self.assertRaises(ValueError):
            self.client.fit(GOLDEN_X, GOLDEN_Y, solver="newton")
        with self.assertRaises(ValueError):
            self.client.fit(GOLDEN_X, GOLDEN_Y + 0.5)
        self.assertEqual(self.client.health(), "SERVING")


if __name__ == "__main__":
    unittest.main(verbosity=2)
