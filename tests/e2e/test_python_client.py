#!/usr/bin/python3
"""End-to-end test of the primserve Python client against a real primserve-server.

Each test starts the server binary on a free local port (with a model directory in a temporary
directory), waits for health SERVING, checks results against the golden values of MATH.md and
against float64 numpy references written here, and stops the server with SIGTERM (exit code 0).

Run from the repository root, after building primserve-server and primserve_python:

    PYTHONPATH=build/python /usr/bin/python3 -m unittest tests/e2e/test_python_client.py -v
    /usr/bin/python3 tests/e2e/test_python_client.py          # finds build/python by itself

Environment: PRIMSERVE_SERVER (server binary; default build/server/primserve-server),
PRIMSERVE_PYTHON_DIR (package root used when `primserve` is not importable; default build/python).
"""

import tempfile
import unittest
from pathlib import Path

import numpy as np

from primserve_test_server import Server, primserve
import grpc

from primserve.v1 import tensor_pb2

# Numbers on the wire are float32; references are float64.
ATOL = 2e-6
RTOL = 2e-6


# ---------------------------------------------------------------------------------------------
# float64 numpy references (MATH.md sections 1-3 and 6)

def sinusoidal_ref(positions, dim, base=10000.0, layout="interleaved"):
    pos = np.asarray(positions, dtype=np.float64)
    theta = base ** (-2.0 * np.arange(dim // 2) / dim)
    angle = pos[:, None] * theta[None, :]
    if layout == "split":
        return np.concatenate([np.sin(angle), np.cos(angle)], axis=1)
    out = np.empty((len(pos), dim))
    out[:, 0::2] = np.sin(angle)
    out[:, 1::2] = np.cos(angle)
    return out


def rope_ref(x, positions=None, pairing="interleaved", base=10000.0, rotary_dim=0, inverse=False):
    """1-D RoPE of x [..., seq, dim] in float64; positions default to 0..seq-1."""
    x = np.asarray(x, dtype=np.float64)
    seq, dim = x.shape[-2:]
    r = rotary_dim or dim
    pos = np.arange(seq, dtype=np.float64) if positions is None else np.asarray(positions, np.float64)
    theta = base ** (-2.0 * np.arange(r // 2) / r)
    angle = pos[:, None] * theta[None, :] * (-1.0 if inverse else 1.0)  # [seq, r/2]
    cos, sin = np.cos(angle), np.sin(angle)
    if pairing == "interleaved":
        a, b = np.arange(0, r, 2), np.arange(1, r, 2)
    else:
        a, b = np.arange(r // 2), np.arange(r // 2, r)
    out = x.copy()
    out[..., a] = x[..., a] * cos - x[..., b] * sin
    out[..., b] = x[..., b] * cos + x[..., a] * sin
    return out


def rope2d_ref(x, positions_x, positions_y, pairing="interleaved", base=10000.0):
    """2-D RoPE: row position x rotates features [0, d/2), column position y rotates [d/2, d)."""
    x = np.asarray(x, dtype=np.float64)
    half = x.shape[-1] // 2
    return np.concatenate([rope_ref(x[..., :half], positions_x, pairing, base),
                           rope_ref(x[..., half:], positions_y, pairing, base)], axis=-1)


def attention_ref(q, k, v, kind="softmax", causal=False, key_lengths=None, bias=None, scale=0.0):
    """Attention in float64 (MATH.md section 6): returns (output, weights); weights None for linear.

    Grouped-query heads by repetition, masks as booleans, fully masked rows give zeros.
    """
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    batch, heads, q_len, head_dim = q.shape
    k_len = k.shape[2]
    group = heads // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    i = np.arange(q_len)[:, None]
    j = np.arange(k_len)[None, :]
    mask = np.ones((batch, 1, q_len, k_len), dtype=bool)
    if causal:
        mask &= (j <= i + (k_len - q_len))[None, None]
    if key_lengths is not None:
        mask &= (j[None, None] < np.asarray(key_lengths)[:, None, None, None])
    if kind == "linear":
        phi = lambda x: np.where(x > 0, x + 1.0, np.exp(x))  # elu + 1
        sim = np.einsum("bhid,bhjd->bhij", phi(q), phi(k)) * mask
        denom = sim.sum(-1, keepdims=True)
        weights = np.divide(sim, denom, out=np.zeros_like(sim), where=denom > 0)
        return weights @ v, None
    logits = np.einsum("bhid,bhjd->bhij", q, k) * (scale or 1.0 / np.sqrt(head_dim))
    if bias is not None:
        logits = logits + np.asarray(bias, dtype=np.float64)
    logits = np.where(mask, logits, -np.inf)
    row_max = logits.max(-1, keepdims=True)
    e = np.exp(logits - np.where(np.isfinite(row_max), row_max, 0.0))
    denom = e.sum(-1, keepdims=True)
    weights = np.divide(e, denom, out=np.zeros_like(e), where=denom > 0)
    return weights @ v, weights


# ---------------------------------------------------------------------------------------------

class TensorConversionTest(unittest.TestCase):
    """The wire conversion alone (no server)."""

    def test_round_trip_converts_to_float32_c_order(self):
        x = np.arange(24, dtype=np.float64).reshape(2, 3, 4).transpose(2, 0, 1)  # not C order
        t = primserve.to_tensor(x)
        self.assertEqual(list(t.shape), [4, 2, 3])
        self.assertEqual(len(t.data), 24 * 4)
        self.assertEqual(len(t.values), 0)
        y = primserve.from_tensor(t)
        self.assertEqual(y.dtype, np.float32)
        np.testing.assert_array_equal(y, x.astype(np.float32))

    def test_reads_values_and_bfloat16(self):
        t = tensor_pb2.Tensor(shape=[2, 2], values=[1.0, -2.5, 0.0, 3.0])
        np.testing.assert_array_equal(primserve.from_tensor(t), [[1.0, -2.5], [0.0, 3.0]])
        # bfloat16 = upper 16 bits of the float32: 1.0 -> 0x3f80, -2.0 -> 0xc000.
        t = tensor_pb2.Tensor(shape=[2], dtype=tensor_pb2.DATA_TYPE_BFLOAT16,
                              data=bytes([0x80, 0x3F, 0x00, 0xC0]))
        np.testing.assert_array_equal(primserve.from_tensor(t), [1.0, -2.0])
        with self.assertRaises(ValueError):
            primserve.from_tensor(tensor_pb2.Tensor(shape=[3], values=[1.0, 2.0]))

    def test_scalars_stay_rank_0(self):
        # np.ascontiguousarray made them shape [1].
        for scalar in (np.zeros(()), np.float32(2.0), np.float64(-1.5), 3, 0.25):
            with self.subTest(scalar=repr(scalar)):
                t = primserve.to_tensor(scalar)
                self.assertEqual(list(t.shape), [])
                self.assertEqual(len(t.data), 4)
                y = primserve.from_tensor(t)
                self.assertEqual(y.shape, ())
                self.assertEqual(float(y), float(np.float32(scalar)))


class ChannelOptionTest(unittest.TestCase):
    """Client(...) arguments that become gRPC channel options (no server: no call is made)."""

    def test_integer_options_clamp_to_int_max_or_fail_clearly(self):
        # gRPC's channel arguments are C ints: 2**32 raised an opaque OverflowError from cygrpc.
        for value in (2**31 - 1, 2**31, 2**32, np.int64(2**40), float(2**33), -1):  # -1: no limit, as in gRPC.
            with self.subTest(max_message_bytes=value):
                primserve.Client("127.0.0.1:1", max_message_bytes=value).close()
        for value, error in ((-2, ValueError), (1.5, ValueError), (float("inf"), ValueError),
                             (True, TypeError), ("64", TypeError), (None, TypeError)):
            with self.subTest(max_message_bytes=value):
                with self.assertRaises(error) as ctx:
                    primserve.Client("127.0.0.1:1", max_message_bytes=value)
                self.assertIn("max_message_bytes", str(ctx.exception))
        for value, error in ((2.5, ValueError), (-1, ValueError), (True, TypeError)):
            with self.subTest(max_attempts=value):
                with self.assertRaises(error) as ctx:
                    primserve.Client("127.0.0.1:1", max_attempts=value)
                self.assertIn("max_attempts", str(ctx.exception))


class PythonClientTest(unittest.TestCase):
    """The client against a live server, one server per test."""

    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="primserve-e2e-")
        self.addCleanup(tmp.cleanup)
        self.tmpdir = Path(tmp.name)
        self.server = Server(self.tmpdir / "models", self.tmpdir / "server.log")
        self.addCleanup(lambda: self.server.process.poll() is None and self.server.stop())
        self.client = primserve.Client(self.server.address, timeout=30)

    def tearDown(self):
        self.client.close()
        self.assertEqual(self.server.stop(), 0, f"server exit code after SIGTERM:\n{self.server.log_text()}")

    def assertClose(self, actual, expected, atol=ATOL, rtol=RTOL):
        self.assertIsInstance(actual, np.ndarray)
        self.assertEqual(actual.dtype, np.float32)
        self.assertEqual(actual.shape, np.shape(expected))
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)

    # -- health ----------------------------------------------------------------------------

    def test_health(self):
        self.assertEqual(self.client.health(), "SERVING")
        self.assertEqual(self.client.health("primserve.v1.PositionEncoding"), "SERVING")
        self.assertEqual(self.client.health("primserve.v1.Attention"), "SERVING")

    def test_max_message_bytes_above_int_max_is_clamped(self):
        with primserve.Client(self.client.address, max_message_bytes=2**32, timeout=30) as big:
            self.assertEqual(big.health(), "SERVING")
            x = np.arange(6.0).reshape(2, 3)
            self.assertClose(big.echo(x), x, atol=0, rtol=0)

    # -- Echo --------------------------------------------------------------------------------

    def test_echo_keeps_rank_0(self):
        for scalar in (np.zeros(()), np.float64(3.5), np.float32(-2.0)):
            with self.subTest(scalar=repr(scalar)):
                out = self.client.echo(scalar)
                self.assertEqual(out.shape, ())
                self.assertEqual(float(out), float(scalar))
        self.assertEqual(self.client.echo(np.zeros((1,))).shape, (1,))

    # -- Sinusoidal --------------------------------------------------------------------------

    def test_sinusoidal_golden_d4(self):
        table = self.client.sinusoidal(2, dim=4)
        self.assertClose(table, [[0.0, 1.0, 0.0, 1.0],
                                 [0.8414709848, 0.5403023059, 0.0099998333, 0.9999500004]])
        split = self.client.sinusoidal(2, dim=4, layout="split")
        self.assertClose(split, [[0.0, 0.0, 1.0, 1.0],
                                 [0.8414709848, 0.0099998333, 0.5403023059, 0.9999500004]])

    def test_sinusoidal_dot_depends_on_offset_only(self):
        table = self.client.sinusoidal(104, dim=4).astype(np.float64)
        for m in (0, 5, 100):
            self.assertAlmostEqual(table[m] @ table[m + 3], 0.009557537148542, delta=1e-5)

    def test_sinusoidal_real_positions_dim6_both_layouts(self):
        positions = [-3.5, -1.0, 0.0, 0.25, 1.0, 2.75, 7.0, 31.5]
        for layout in ("interleaved", "split"):
            for base in (0, 500.0):
                with self.subTest(layout=layout, base=base):
                    out = self.client.sinusoidal(dim=6, positions=positions, base=base, layout=layout)
                    self.assertClose(out, sinusoidal_ref(positions, 6, base or 10000.0, layout))
        # `length` gives 0..length-1 and equals explicit integer positions.
        self.assertClose(self.client.sinusoidal(5, dim=6),
                         sinusoidal_ref(np.arange(5), 6))

    # -- ApplyRope ---------------------------------------------------------------------------

    def test_rope_goldens(self):
        q = np.array([[1.0, 2.0, 3.0, 4.0]])
        self.assertClose(self.client.apply_rope(q, positions=[1.0]),
                         [[-1.1426396637, 1.9220755965, 2.9598506679, 4.0297995017]])
        self.assertClose(self.client.apply_rope(q, pairing="half_split", positions=[1.0]),
                         [[-1.9841106486, 1.9599006675, 2.4623779024, 4.0197996683]])
        # Position 0 is the identity; norms are preserved (|R_7 q| = sqrt(30)).
        self.assertClose(self.client.apply_rope(q), q)
        self.assertAlmostEqual(float(np.linalg.norm(self.client.apply_rope(q, positions=[7.0]))),
                               5.4772255751, delta=1e-5)

    def test_rope_random_matches_reference(self):
        rng = np.random.default_rng(20210301)
        x = rng.standard_normal((2, 3, 13, 6))
        real_positions = np.concatenate([[-4.5, -1.0, 0.0, 0.5], rng.uniform(-20.0, 60.0, 9)])
        for pairing in ("interleaved", "half_split"):
            for rotary_dim in (0, 4):
                for positions in (None, real_positions):
                    with self.subTest(pairing=pairing, rotary_dim=rotary_dim,
                                      positions=positions is not None):
                        kwargs = dict(pairing=pairing, rotary_dim=rotary_dim, positions=positions)
                        y = self.client.apply_rope(x, **kwargs)
                        self.assertClose(y, rope_ref(x, positions, pairing, rotary_dim=rotary_dim),
                                         atol=1e-5)
                        if rotary_dim:
                            np.testing.assert_array_equal(y[..., rotary_dim:],
                                                          x[..., rotary_dim:].astype(np.float32))
                        inv = self.client.apply_rope(x, inverse=True, **kwargs)
                        self.assertClose(inv, rope_ref(x, positions, pairing, rotary_dim=rotary_dim,
                                                       inverse=True), atol=1e-5)
                        back = self.client.apply_rope(y, inverse=True, **kwargs)
                        self.assertClose(back, x, atol=1e-5)

    def test_rope_base(self):
        x = np.random.default_rng(7).standard_normal((5, 8))
        self.assertClose(self.client.apply_rope(x, base=100.0), rope_ref(x, base=100.0), atol=1e-5)

    def test_rope_2d_grid(self):
        rng = np.random.default_rng(8397)
        height, width = 3, 4
        x = rng.standard_normal((2, height * width, 8))
        rows = np.arange(height * width) // width
        cols = np.arange(height * width) % width
        for pairing in ("interleaved", "half_split"):
            with self.subTest(pairing=pairing):
                expected = rope2d_ref(x, rows, cols, pairing)
                self.assertClose(self.client.apply_rope(x, kind="2d", pairing=pairing,
                                                        grid=(height, width)), expected, atol=1e-5)
                self.assertClose(self.client.apply_rope(x, kind="2d", pairing=pairing,
                                                        positions_x=rows, positions_y=cols),
                                 expected, atol=1e-5)
        # Not the degenerate rotation by (x + y): swapping x and y changes the result.
        px, py = [1.0, 2.5], [3.0, -1.0]
        a = self.client.apply_rope(x[:, :2], kind="2d", positions_x=px, positions_y=py)
        b = self.client.apply_rope(x[:, :2], kind="2d", positions_x=py, positions_y=px)
        self.assertClose(a, rope2d_ref(x[:, :2], px, py), atol=1e-5)
        self.assertGreater(float(np.abs(a - b).max()), 1e-2)

    # -- Attend ------------------------------------------------------------------------------

    def test_attend_softmax_causal_key_lengths_gqa(self):
        # 4 query heads over 2 key/value heads; q_len 5 < k_len 7 (bottom-right causal).
        rng = np.random.default_rng(8610)
        q = rng.standard_normal((2, 4, 5, 8))
        k = rng.standard_normal((2, 2, 7, 8))
        v = rng.standard_normal((2, 2, 7, 6))
        for causal in (False, True):
            for key_lengths in (None, [7, 3]):
                with self.subTest(causal=causal, key_lengths=key_lengths):
                    out, weights = self.client.attend(q, k, v, causal=causal, key_lengths=key_lengths,
                                                      return_weights=True)
                    ref_out, ref_weights = attention_ref(q, k, v, causal=causal,
                                                         key_lengths=key_lengths)
                    self.assertClose(out, ref_out, atol=2e-5, rtol=1e-4)
                    self.assertClose(weights, ref_weights, atol=2e-6, rtol=1e-4)
                    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
                    # Without weights: the same output (possibly another kernel path).
                    self.assertClose(self.client.attend(q, k, v, causal=causal,
                                                        key_lengths=key_lengths), out)
        # A batch with no valid key gives zeros, not NaN.
        out = self.client.attend(q, k, v, key_lengths=[0, 3])
        np.testing.assert_array_equal(out[0], 0.0)
        self.assertClose(out, attention_ref(q, k, v, key_lengths=[0, 3])[0], atol=2e-5, rtol=1e-4)

    def test_attend_softmax_bias_scale_rope(self):
        rng = np.random.default_rng(8265)
        q = rng.standard_normal((1, 2, 3, 8))
        k = rng.standard_normal((1, 2, 4, 8))
        v = rng.standard_normal((1, 2, 4, 5))
        bias = rng.standard_normal((2, 1, 4))  # broadcast over batch and queries
        bias[1, 0, 2] = -np.inf                # a mask
        out = self.client.attend(q, k, v, bias=bias, scale=0.5)
        self.assertClose(out, attention_ref(q, k, v, bias=bias, scale=0.5)[0], atol=2e-5, rtol=1e-4)
        # RoPE: keys at 0..3, queries bottom-right at 1..3.
        out = self.client.attend(q, k, v, rope={"pairing": "half_split", "base": 100.0})
        rq = rope_ref(q, positions=[1.0, 2.0, 3.0], pairing="half_split", base=100.0)
        rk = rope_ref(k, pairing="half_split", base=100.0)
        self.assertClose(out, attention_ref(rq, rk, v)[0], atol=2e-5, rtol=1e-4)
        out = self.client.attend(q, k, v, rope=True, causal=True)
        self.assertClose(out, attention_ref(rope_ref(q, positions=[1.0, 2.0, 3.0]), rope_ref(k), v,
                                            causal=True)[0], atol=2e-5, rtol=1e-4)

    def test_attend_linear(self):
        rng = np.random.default_rng(6)
        q = rng.standard_normal((2, 4, 6, 8))
        k = rng.standard_normal((2, 2, 9, 8))
        v = rng.standard_normal((2, 2, 9, 3))
        for causal in (False, True):
            with self.subTest(causal=causal):
                out = self.client.attend(q, k, v, kind="linear", causal=causal)
                self.assertClose(out, attention_ref(q, k, v, kind="linear", causal=causal)[0],
                                 atol=2e-5, rtol=1e-4)
        with self.assertRaises(primserve.Error) as ctx:
            self.client.attend(q, k, v, kind="linear", bias=np.zeros(9))
        self.assertEqual(ctx.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("bias", ctx.exception.message)

    def test_attend_errors(self):
        q = np.ones((1, 3, 2, 4))
        kv = np.ones((1, 2, 2, 4))
        with self.assertRaises(primserve.Error) as ctx:  # 3 heads over 2 key/value heads
            self.client.attend(q, kv, kv)
        self.assertEqual(ctx.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(primserve.Error) as ctx:
            self.client.attend(kv, kv, kv, key_lengths=[1, 2])
        self.assertIn("key_lengths", ctx.exception.message)
        with self.assertRaises(ValueError):
            self.client.attend(kv, kv, kv, kind="cosine")
        with self.assertRaises(ValueError):
            self.client.attend(kv, kv, kv, rope={"positions": [0, 1]})
        self.assertEqual(self.client.health(), "SERVING")

    # -- EstimateCost --------------------------------------------------------------------------

    def test_estimate_cost_goldens(self):
        cost = self.client.estimate_cost(512, head_size=64, num_heads=12)
        self.assertEqual(cost, {
            "projections": 1207959552.0, "attention_quadratic": 402653184.0,
            "self_attention": 1610612736.0, "ffn": 2415919104.0, "linear_attention": 805306368.0,
            "attention_exceeds_ffn_length": 1536.0, "quadratic_dominates_length": 4608.0,
            "linear_attention_wins_length": 1024.0})
        at_crossover = self.client.estimate_cost(1536, 64, 12)
        self.assertEqual(at_crossover["self_attention"], at_crossover["ffn"])
        with self.assertRaises(primserve.Error) as ctx:
            self.client.estimate_cost(0, 64, 12)
        self.assertEqual(ctx.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("seq_len", ctx.exception.message)

    # -- errors ------------------------------------------------------------------------------

    def test_odd_dim_is_invalid_argument(self):
        with self.assertRaises(primserve.Error) as ctx:
            self.client.sinusoidal(4, dim=3)
        err = ctx.exception
        self.assertIsInstance(err, Exception)
        self.assertEqual(err.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("dim", err.message)
        self.assertIn("INVALID_ARGUMENT", str(err))
        with self.assertRaises(primserve.Error) as ctx:
            self.client.apply_rope(np.ones((4, 5)))
        self.assertEqual(ctx.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        # The server is still healthy afterwards.
        self.assertEqual(self.client.health(), "SERVING")

    def test_integer_arguments_are_never_truncated(self):
        # 4.7 was sent as 4, 2.7 as 2: every integer argument is checked, named in the error.
        q = np.ones((1, 1, 2, 4))
        kv = np.random.default_rng(3).standard_normal((1, 1, 4, 4))
        c = self.client
        refused = [
            (ValueError, "key_lengths[0]", lambda: c.attend(q, kv, kv, key_lengths=[4.7])),
            (ValueError, "key_lengths[1]", lambda: c.attend(q, kv, kv, key_lengths=[4, 0.5])),
            (TypeError, "key_lengths[0]", lambda: c.attend(q, kv, kv, key_lengths=[True])),
            (ValueError, "length", lambda: c.sinusoidal(2.7, dim=4)),
            (ValueError, "dim", lambda: c.sinusoidal(2, dim=4.9)),
            (TypeError, "dim", lambda: c.sinusoidal(2, dim=True)),
            (ValueError, "rotary_dim", lambda: c.apply_rope(np.ones((2, 4)), rotary_dim=2.5)),
            (ValueError, "grid[0]", lambda: c.apply_rope(np.ones((4, 4)), kind="2d", grid=(2.5, 2))),
            (ValueError, "rope grid[1]", lambda: c.attend(q, kv, kv, rope={"kind": "2d", "grid": (2, 1.5)})),
            (ValueError, "rope rotary_dim", lambda: c.attend(q, kv, kv, rope={"rotary_dim": 2.5})),
            (ValueError, "seq_len", lambda: c.estimate_cost(512.5, 64, 12)),
            (ValueError, "num_heads", lambda: c.estimate_cost(512, 64, float("nan"))),
            (ValueError, "head_size", lambda: c.estimate_cost(512, 2**63, 12)),
        ]
        for error, name, call in refused:
            with self.subTest(argument=name):
                with self.assertRaises(error) as ctx:
                    call()
                self.assertIn(name, str(ctx.exception))
        # Integral floats and numpy integers are the integers they hold.
        np.testing.assert_array_equal(c.attend(q, kv, kv, key_lengths=[3.0]),
                                      c.attend(q, kv, kv, key_lengths=[np.int32(3)]))
        np.testing.assert_array_equal(c.sinusoidal(np.int64(3), dim=4.0), c.sinusoidal(3, dim=4))
        self.assertEqual(c.estimate_cost(512.0, np.int16(64), 12), c.estimate_cost(512, 64, 12))
        self.assertEqual(c.health(), "SERVING")

    def test_bad_option_names_fail_locally(self):
        with self.assertRaises(ValueError):
            self.client.apply_rope(np.ones((2, 4)), pairing="neox")
        with self.assertRaises(ValueError):
            self.client.sinusoidal(2, dim=4, layout="columns")


if __name__ == "__main__":
    unittest.main(verbosity=2)
