#!/usr/bin/python3
"""End-to-end test of the Python client's Toolkit calls against a real primserve-server.

The random streams are a documented contract (toolkit.proto): this file re-implements
Philox4x32-10 and the uniform, polar-normal and Bernoulli transforms in numpy from that text and
checks the server's tensors against it (bit for bit where no logarithm is involved, to 1 float
ulp where numpy's log may differ from the server's portable one in the last double bit). It also
checks the MATH.md goldens and the moments of every distribution and scheme.

Run from the repository root, after building primserve-server and primserve_python:

    /usr/bin/python3 tests/e2e/test_python_toolkit.py

Environment: as tests/e2e/test_python_client.py, whose per-test server fixture this reuses.
"""

import math
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_python_client as base  # noqa: E402  (the server fixture; imported as a module so
                                   # unittest does not collect its tests a second time)

import grpc  # noqa: E402

primserve = base.primserve

BLOCK = 16384          # Elements per counter block (toolkit.proto).
STREAM_INIT = 1        # Counter word 3 of InitializeParameters.
STREAM_MASK = 2        # Counter word 3 of ChildTuningMask TASK_FREE.
GAMMA = 0.7737413035499232


# ---------------------------------------------------------------------------------------------
# The stream format of toolkit.proto, in numpy

def philox4x32(counters, key):
    """Philox4x32-10 of an [n, 4] array of 32-bit counters under (k0, k1): [n, 4] uint64 words."""
    c = [counters[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = key
    mask = np.uint64(0xFFFFFFFF)
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0), p1 & mask,
             (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1), p0 & mask]
    return np.stack(c, axis=1)


def block_counters(seed, stream, block, first, count):
    """Philox outputs of counters (j, b mod 2^32, b div 2^32, stream), j in [first, first + count)."""
    j = np.arange(first, first + count, dtype=np.uint64)
    counters = np.stack([j, np.full_like(j, block & 0xFFFFFFFF), np.full_like(j, block >> 32),
                         np.full_like(j, stream)], axis=1)
    return philox4x32(counters, (seed & 0xFFFFFFFF, seed >> 32))


def block_words(seed, stream, block, count):
    return block_counters(seed, stream, block, 0, (count + 3) // 4).reshape(-1)[:count]


def stream_values(n, block_fn):
    return np.concatenate([block_fn(b, min(BLOCK, n - b * BLOCK)) for b in range((n + BLOCK - 1) // BLOCK)])


def uniform_ref(n, seed, half_width):
    def block(b, count):
        w = block_words(seed, STREAM_INIT, b, count).astype(np.float64)
        return (((2.0 * w + 1.0) / 2.0 ** 32 - 1.0) * half_width).astype(np.float32)
    return stream_values(n, block)


def normal_ref(n, seed, scale, truncate):
    def block(b, count):
        out, first = [], 0
        while sum(len(o) for o in out) < count:
            words = block_counters(seed, STREAM_INIT, b, first, 4096)
            first += 4096
            bits = lambda hi, lo: ((words[:, hi] << np.uint64(32)) | words[:, lo]) >> np.uint64(11)
            u = 2.0 * (bits(0, 1).astype(np.float64) / 2.0 ** 53) - 1.0
            v = 2.0 * (bits(2, 3).astype(np.float64) / 2.0 ** 53) - 1.0
            s = u * u + v * v
            ok = (s > 0) & (s < 1)
            u, v, s = u[ok], v[ok], s[ok]
            f = np.sqrt(-2.0 * np.log(s) / s)
            z = np.stack([u * f, v * f], axis=1).reshape(-1)   # u f, v f, in counter order
            if truncate:
                z = z[np.abs(z) <= 2.0]
            out.append(z)
        return (np.concatenate(out)[:count] * scale).astype(np.float32)
    return stream_values(n, block)


def task_free_mask_ref(n, seed, p):
    threshold = np.uint64(np.rint(p * 2.0 ** 32))
    return stream_values(n, lambda b, count: block_words(seed, STREAM_MASK, b, count) < threshold)


class ReferenceTest(unittest.TestCase):
    """The numpy reference alone: Random123's known answers."""

    def test_philox_known_answers(self):
        kats = [((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
                ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
                ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
                 (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1))]
        for counter, key, expected in kats:
            out = philox4x32(np.array([counter], dtype=np.uint64), key)
            self.assertEqual([int(x) for x in out[0]], list(expected))


class ToolkitClientTest(unittest.TestCase):
    """The Toolkit calls against a live server, one server per test (test_python_client's fixture)."""

    setUp = base.PythonClientTest.setUp
    tearDown = base.PythonClientTest.tearDown

    def assertCode(self, code, text, call, *args, **kwargs):
        with self.assertRaises(primserve.Error) as ctx:
            call(*args, **kwargs)
        self.assertEqual(ctx.exception.code, code, ctx.exception.message)
        self.assertIn(text, ctx.exception.message)

    # -- EmbeddingDimension --------------------------------------------------------------------

    def test_embedding_dimension_goldens(self):
        # MATH.md section 4 (4 decimals given).
        for vocab_size, bound, dimension in ((100000, 95.9027, 96), (512, 51.9652, 52),
                                             (5000000, 128.4898, 129)):
            b, d = self.client.embedding_dimension(vocab_size)
            self.assertAlmostEqual(b, bound, delta=5e-5)
            self.assertEqual(d, dimension)
            self.assertIsInstance(d, int)
        b, d = self.client.embedding_dimension(512, coefficient=4.0)
        self.assertAlmostEqual(b, 4.0 * math.log(512), delta=1e-12)
        self.assertEqual(d, 25)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "vocab_size", self.client.embedding_dimension, 1)

    # -- InitializeParameters ------------------------------------------------------------------

    def test_initialize_is_the_documented_stream(self):
        # 3 x 13000 = 39000 elements: three blocks, the last partial.
        shape, seed = (3, 13000), 0xDEADBEEF12345678
        w = self.client.initialize_parameters(shape, "uniform", stddev=0.05, seed=seed)
        self.assertEqual(w.dtype, np.float32)
        self.assertEqual(w.shape, shape)
        np.testing.assert_array_equal(w.reshape(-1), uniform_ref(w.size, seed, math.sqrt(3.0) * 0.05))
        for distribution, truncate in (("normal", False), ("truncated_normal", True)):
            with self.subTest(distribution=distribution):
                w, info = self.client.initialize_parameters(shape, distribution, scheme="xavier", seed=seed,
                                                            return_info=True)
                s = math.sqrt(2.0 / (13000 + 3))
                self.assertAlmostEqual(info["stddev"], s, delta=1e-15)
                scale = s * (1.1368472343385565 if truncate else 1.0)
                # The server's portable log and numpy's may differ in the last double bit: 1 float ulp.
                np.testing.assert_array_max_ulp(w.reshape(-1), normal_ref(w.size, seed, scale, truncate), maxulp=1)

    def test_every_distribution_and_scheme_has_the_target_moments(self):
        # [1000, 1000]: fan_in = fan_out = 1000. 1e6 samples: mean within 0.01 s (10 standard
        # errors), variance within 1% (>= 7 standard errors); truncated samples within
        # 2 s / sqrt(gamma) up to float rounding (2^-24 relative).
        targets = {"lecun": math.sqrt(1 / 1000), "he": math.sqrt(2 / 1000), "xavier": math.sqrt(2 / 2000),
                   "stddev": 0.02}
        seed = 500
        for distribution in ("normal", "uniform", "truncated_normal"):
            for scheme, s in targets.items():
                seed += 1
                with self.subTest(distribution=distribution, scheme=scheme):
                    w = self.client.initialize_parameters(
                        (1000, 1000), distribution, scheme=scheme,
                        stddev=0.02 if scheme == "stddev" else None, seed=seed).astype(np.float64)
                    self.assertLess(abs(w.mean()), 0.01 * s)
                    self.assertAlmostEqual(w.var() / s ** 2, 1.0, delta=0.01)
                    if distribution == "truncated_normal":
                        self.assertLessEqual(np.abs(w).max(), 2 * s / math.sqrt(GAMMA) * (1 + 2.0 ** -24))

    def test_seeds_and_fans(self):
        a = self.client.initialize_parameters((64, 3, 3, 3), "normal", scheme="he", seed=7)
        b = self.client.initialize_parameters((64, 3, 3, 3), "normal", scheme="he", seed=7)
        c = self.client.initialize_parameters((64, 3, 3, 3), "normal", scheme="he", seed=8)
        self.assertEqual(a.tobytes(), b.tobytes())
        self.assertEqual(int(np.sum(a == c)), 0)
        _, info = self.client.initialize_parameters((64, 3, 3, 3), scheme="xavier", return_info=True)
        self.assertEqual((info["fan_in"], info["fan_out"]), (27, 576))  # PyTorch: in * 9, out * 9
        _, info = self.client.initialize_parameters((10,), scheme="he", fan_in=4, return_info=True)
        self.assertAlmostEqual(info["stddev"], math.sqrt(0.5), delta=1e-15)

    def test_initialize_errors(self):
        init = self.client.initialize_parameters
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "shape[1]: expected an extent >= 1, got 0", init, (3, 0))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "shape[0]: expected an extent >= 1, got -2", init, (-2, 3))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "rank 1 to 5", init, (1, 1, 1, 1, 1, 1))
        self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, "above the limit", init, (1 << 20, 1 << 20))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "stddev", init, (3, 3), scheme="stddev")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "stddev", init, (3, 3), stddev=-1.0)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "fan_in", init, (5,))
        with self.assertRaises(ValueError):
            init((3, 3), distribution="cauchy")
        self.assertEqual(self.client.health(), "SERVING")

    def test_integer_arguments_are_never_truncated(self):
        # (4.5, 3) gave a [4, 3] tensor: every integer argument is checked, named in the error.
        init, mask = self.client.initialize_parameters, self.client.child_tuning_mask
        refused = [
            (ValueError, "shape[0]", lambda: init((4.5, 3))),
            (TypeError, "shape[1]", lambda: init([4, True])),
            (ValueError, "fan_in", lambda: init((4, 3), fan_in=2.5)),
            (ValueError, "fan_out", lambda: init((4, 3), scheme="xavier", fan_out=float("inf"))),
            (ValueError, "seed", lambda: init((4, 3), seed=1.5)),
            (ValueError, "seed", lambda: init((4, 3), seed=-1)),
            (ValueError, "seed", lambda: init((4, 3), seed=2**64)),
            (ValueError, "seed", lambda: mask(np.ones(3), 0.5, seed=0.5)),
            (TypeError, "seed", lambda: mask(np.ones(3), 0.5, seed=True)),
            (ValueError, "vocab_size", lambda: self.client.embedding_dimension(512.5)),
        ]
        for error, name, call in refused:
            with self.subTest(argument=name):
                with self.assertRaises(error) as ctx:
                    call()
                self.assertIn(name, str(ctx.exception))
        # Integral floats and numpy integers are the integers they hold; seeds span uint64.
        self.assertEqual(init((4.0, np.int64(3)), seed=9).tobytes(), init((4, 3), seed=9).tobytes())
        self.assertEqual(init((2, 2), seed=2**64 - 1).shape, (2, 2))
        self.assertEqual(self.client.embedding_dimension(512.0), self.client.embedding_dimension(512))

    # -- ChildTuningMask -----------------------------------------------------------------------

    def test_child_tuning_article_example(self):
        # MATH.md section 9: g = [-4, -6], p = 0.5, M = [1, 0] -> [-8, 0] (Fisher [2, 1] picks M).
        masked, kept = self.client.child_tuning_mask([-4.0, -6.0], 0.5, fisher=[2.0, 1.0], rescale=True)
        np.testing.assert_array_equal(masked, np.array([-8.0, 0.0], dtype=np.float32))
        self.assertEqual(kept, 0.5)
        masked, _ = self.client.child_tuning_mask([-4.0, -6.0], 0.5, fisher=[2.0, 1.0])
        np.testing.assert_array_equal(masked, [-4.0, 0.0])

    def test_scalar_gradient_stays_rank_0(self):
        # to_tensor sent a numpy scalar as shape [1].
        masked, kept = self.client.child_tuning_mask(np.float32(2.0), 1.0)
        self.assertEqual(masked.shape, ())
        self.assertEqual((float(masked), kept), (2.0, 1.0))

    def test_task_free_is_the_documented_bernoulli_stream(self):
        rng = np.random.default_rng(8764)
        g = rng.standard_normal((7, 5000)).astype(np.float32)   # 35000 elements: three blocks
        for p, rescale in ((0.3, True), (0.85, False)):
            with self.subTest(p=p, rescale=rescale):
                masked, kept = self.client.child_tuning_mask(g, p, rescale=rescale, seed=123)
                mask = task_free_mask_ref(g.size, 123, p).reshape(g.shape)
                expected = np.where(mask, (g.astype(np.float64) / p if rescale else g).astype(np.float32), 0.0)
                np.testing.assert_array_equal(masked, expected)
                self.assertEqual(kept, mask.mean())
                self.assertAlmostEqual(kept / p, 1.0, delta=0.03)  # 35000 draws: < 2% of p at 3 sigma

    def test_task_driven_keeps_the_top_fraction_with_ties(self):
        rng = np.random.default_rng(1)
        g = rng.standard_normal((13, 17)).astype(np.float32)
        for fisher in (rng.random((13, 17)), np.floor(rng.random((13, 17)) * 5)):  # distinct; heavy ties
            for p in (0.1, 0.5, 0.77, 1.0):
                with self.subTest(p=p, ties=len(np.unique(fisher)) < 10):
                    masked, kept = self.client.child_tuning_mask(g, p, fisher=fisher)
                    f = fisher.astype(np.float32).reshape(-1)
                    k = next(k for k in range(1, f.size + 1) if k / f.size >= p)
                    threshold = np.sort(f)[::-1][k - 1]
                    keep = (f >= threshold).reshape(g.shape)
                    np.testing.assert_array_equal(masked, np.where(keep, g, 0.0))
                    self.assertEqual(kept, keep.mean())
                    self.assertGreaterEqual(kept, p)

    def test_child_tuning_errors(self):
        mask = self.client.child_tuning_mask
        g = np.ones((2, 3))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "keep_probability", mask, g, 0.0)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "keep_probability", mask, g, 1.5)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "fisher.shape", mask, g, 0.5, fisher=np.ones((3, 2)))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "fisher[4]: expected a finite number, got NaN", mask, g,
                        0.5, fisher=np.where(np.arange(6) == 4, np.nan, 1.0).reshape(2, 3))
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "fisher: required", mask, g, 0.5, mode="task_driven")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "gradient[1]", mask, [0.0, np.inf], 0.5)
        with self.assertRaises(ValueError):
            mask(g, 0.5, mode="task_random")
        self.assertEqual(self.client.health("primserve.v1.Toolkit"), "SERVING")


if __name__ == "__main__":
    unittest.main(verbosity=2)
