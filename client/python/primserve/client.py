"""A small synchronous client for the primserve gRPC service: numpy in, numpy out.

Example::

    >>> import numpy as np
    >>> import primserve
    >>> with primserve.Client("localhost:50051") as c:
    ...     table = c.sinusoidal(8, dim=4)                      # [8, 4] float32
    ...     q = c.apply_rope(np.ones((2, 8, 64)), pairing="half_split")
    ...     o = c.attend(q[None], q[None], q[None], causal=True)     # [1, 2, 8, 64]
    ...     c.health()
    'SERVING'
"""

import json
import threading

import grpc
import numpy as np

from primserve.auth import BearerToken, tls_credentials
from primserve.discriminator import DiscriminatorMethods
from primserve.logistic import LogisticMethods
from primserve.tensors import as_enum, as_integer, as_integers, from_tensor, to_tensor
from primserve.toolkit import ToolkitMethods
from primserve.v1 import attention_pb2 as at_pb2
from primserve.v1 import attention_pb2_grpc as at_grpc
from primserve.v1 import diagnostics_pb2 as dg_pb2
from primserve.v1 import diagnostics_pb2_grpc as dg_grpc
from primserve.v1 import position_encoding_pb2 as pe_pb2
from primserve.v1 import position_encoding_pb2_grpc as pe_grpc
from primserve.v1 import tensor_pb2

__all__ = ["Client", "Error"]

_LAYOUTS = {
    "interleaved": pe_pb2.SINUSOIDAL_LAYOUT_INTERLEAVED,
    "split": pe_pb2.SINUSOIDAL_LAYOUT_SPLIT,
}
_KINDS = {"1d": pe_pb2.ROPE_KIND_ROPE_1D, "2d": pe_pb2.ROPE_KIND_ROPE_2D}
_PAIRINGS = {
    "interleaved": pe_pb2.ROPE_PAIRING_INTERLEAVED,
    "half_split": pe_pb2.ROPE_PAIRING_HALF_SPLIT,
}
_ATTENTION_KINDS = {"softmax": at_pb2.ATTENTION_KIND_SOFTMAX, "linear": at_pb2.ATTENTION_KIND_LINEAR}
_PRECISIONS = {"f32": tensor_pb2.COMPUTE_PRECISION_F32, "bf16": tensor_pb2.COMPUTE_PRECISION_BF16}
_ROPE_KEYS = ("kind", "pairing", "base", "rotary_dim", "query_positions", "key_positions", "grid")
_HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
# The C++ client's scale-out defaults (client/include/primserve/client/channel.h): retry policy
# for UNAVAILABLE on these services, client keepalive while calls are in flight.
_RETRIED_SERVICES = ("primserve.v1.PositionEncoding", "primserve.v1.Attention",
                     "primserve.v1.LogisticRegression", "primserve.v1.Models", "primserve.v1.Toolkit",
                     "primserve.v1.Discriminator", "primserve.v1.Diagnostics", "grpc.health.v1.Health")
_KEEPALIVE_TIME_MS = 30000
_KEEPALIVE_TIMEOUT_MS = 10000
_INT_MAX = 2**31 - 1  # gRPC's integer channel arguments are C ints.


def _service_config(max_attempts, health_checking=True):
    """The default service config: round_robin with health checking, retries on UNAVAILABLE."""
    config = {"loadBalancingConfig": [{"round_robin": {}}]}
    if health_checking:
        config["healthCheckConfig"] = {"serviceName": ""}
    if max_attempts > 1:
        config["methodConfig"] = [{
            "name": [{"service": name} for name in _RETRIED_SERVICES],
            "retryPolicy": {"maxAttempts": min(max_attempts, 5), "initialBackoff": "0.05s",
                            "maxBackoff": "1s", "backoffMultiplier": 2,
                            "retryableStatusCodes": ["UNAVAILABLE"]},
        }]
    return json.dumps(config)


class Error(Exception):
    """A failed primserve call: ``code`` is the ``grpc.StatusCode``, ``message`` the server's text.

    Example::

        >>> try:
        ...     c.sinusoidal(4, dim=3)
        ... except primserve.Error as e:
        ...     print(e.code, e.message)
        StatusCode.INVALID_ARGUMENT dim: expected an even number > 0 (sin/cos pairs), got 3
    """

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return f"{self.code.name}: {self.message}"



def _channel_int(value, what):
    """An integer channel argument: >= 0, clamped to INT_MAX as the C++ client does (gRPC's
    channel arguments are C ints; a larger value would fail with an opaque OverflowError)."""
    return min(as_integer(value, what, minimum=0), _INT_MAX)


def _grid(grid, what):
    """``(height, width)`` from a pair of integers, or (0, 0) for None."""
    if grid is None:
        return 0, 0
    if len(grid) != 2:
        raise ValueError(f"{what}: expected (height, width), got {len(grid)} values")
    return as_integer(grid[0], f"{what}[0] (height)"), as_integer(grid[1], f"{what}[1] (width)")


def _reals(values):
    """A list of Python floats from any 1-D array-like (None gives [])."""
    if values is None:
        return []
    return np.asarray(values, dtype=np.float64).reshape(-1).tolist()


def _rope_spec(rope):
    """An attention ``RopeSpec`` from True (1-D defaults) or a dict with keys ``_ROPE_KEYS``."""
    if rope is True:
        rope = {}
    if not isinstance(rope, dict):
        raise TypeError(f"rope must be None, True or a dict, got {type(rope).__name__}")
    unknown = sorted(set(rope) - set(_ROPE_KEYS))
    if unknown:
        raise ValueError(f"rope: unknown keys {unknown}; expected some of {list(_ROPE_KEYS)}")
    height, width = _grid(rope.get("grid"), "rope grid")
    return at_pb2.RopeSpec(
        kind=as_enum(_KINDS, rope.get("kind", "1d"), "rope kind"),
        pairing=as_enum(_PAIRINGS, rope.get("pairing", "interleaved"), "rope pairing"),
        base=float(rope.get("base", 0)), rotary_dim=as_integer(rope.get("rotary_dim", 0), "rope rotary_dim"),
        query_positions=_reals(rope.get("query_positions")),
        key_positions=_reals(rope.get("key_positions")), grid_height=height, grid_width=width)


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf, i):
    shift = value = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _health_status(buf):
    """Field 1 (varint) of a serialized grpc.health.v1.HealthCheckResponse; other fields skipped."""
    status, i = 0, 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
            if field == 1:
                status = value
        elif wire == 2:
            length, i = _read_varint(buf, i)
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"HealthCheckResponse: unsupported wire type {wire}")
    return status


class _RequestStream:
    """The request iterator of ``Client._call_stream``: the messages of ``messages`` until one
    raises; then the exception is kept in ``error``, the call is cancelled (not half-closed, so
    the server does not take the messages so far for the whole stream) and iteration ends.

    It runs on gRPC's request thread; ``attach`` hands it the call once ``future()`` returned.
    """

    def __init__(self, messages):
        self._messages = iter(messages)
        self._attached = threading.Event()
        self._call = None
        self.error = None

    def attach(self, call):
        self._call = call
        self._attached.set()

    def __iter__(self):
        return self

    def __next__(self):
        if self.error is not None:
            raise StopIteration
        try:
            return next(self._messages)
        except StopIteration:
            raise
        except Exception as e:  # Any: _call_stream re-raises it unchanged.
            self.error = e
            self._attached.wait()
            if self._call is not None:
                self._call.cancel()
            raise StopIteration from None


class Client(LogisticMethods, ToolkitMethods, DiscriminatorMethods):
    """A connection to a primserve server.

    ``address`` is a gRPC target (``host:port``, ``dns:///name:port``, ...). ``max_message_bytes``
    bounds requests and responses (match the server's ``--max_message_bytes``; as in the C++
    client, a value above gRPC's limit 2**31 - 1 is clamped to it, and -1 means no limit). ``timeout`` is
    the default per-call deadline in seconds (None: no deadline); every method also takes
    ``timeout=``. TLS: ``root_certificates`` (PEM of the CA that signed the server; None: the
    system roots), plus ``private_key`` and ``certificate_chain`` (PEM) for servers that require
    client certificates; or any ``credentials`` (``grpc.ssl_channel_credentials(...)``).
    ``auth_token`` is sent as ``authorization: Bearer <token>`` on every call, over TLS or
    plaintext (see ``primserve.auth``).
    Scale-out defaults as in the C++ client: round_robin over every address of a ``dns:///`` or
    ``ipv4:a,b`` target, skipping replicas whose health is NOT_SERVING; calls that fail with
    UNAVAILABLE (a replica died or drains) are retried on another replica, up to
    ``max_attempts`` attempts in all (1 turns retries off, gRPC caps it at 5); requests up to
    ``max_message_bytes`` stay retryable; keepalive pings every 30 s while calls are in flight.
    ``health_checking=False`` turns the NOT_SERVING skipping off (see ``health``).
    Failed calls raise ``primserve.Error``. Use it as a context manager, or call ``close()``.
    Logistic regression and the model store: ``fit``, ``fit_stream``, ``compute_statistics``,
    ``fit_from_statistics``, ``fit_sharded``, ``predict``, ``list_models``, ``get_model``,
    ``delete_model`` (see ``primserve.logistic``).
    Toolkit: ``embedding_dimension``, ``initialize_parameters``, ``child_tuning_mask`` (see
    ``primserve.toolkit``).
    Discriminator: ``register_discriminator``, ``score``, ``gan_losses`` (see
    ``primserve.discriminator``; ``network_from_state_dict`` converts a PyTorch nn.Sequential).

    Example::

        >>> with primserve.Client("localhost:50051", timeout=10) as c:
        ...     c.sinusoidal(dim=4, positions=[0.0, 1.0])
        array([[0.        , 1.        , 0.        , 1.        ],
               [0.84147096, 0.5403023 , 0.00999983, 0.99995   ]], dtype=float32)
    """

    def __init__(self, address, max_message_bytes=64 << 20, timeout=None, credentials=None, max_attempts=5,
                 root_certificates=None, private_key=None, certificate_chain=None, auth_token=None,
                 health_checking=True):
        # -1: no limit, as gRPC (and the C++ client) take it; the retry buffer then gets INT_MAX.
        unlimited = (isinstance(max_message_bytes, (int, np.integer)) and not isinstance(max_message_bytes, bool)
                     and max_message_bytes == -1)
        max_bytes = -1 if unlimited else _channel_int(max_message_bytes, "max_message_bytes")
        max_attempts = as_integer(max_attempts, "max_attempts", minimum=0)
        options = [
            ("grpc.max_send_message_length", max_bytes),
            ("grpc.max_receive_message_length", max_bytes),
            # As the C++ client: a dns:/// or ipv4:a,b address spreads calls over every replica.
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.service_config", _service_config(max_attempts, health_checking)),
            ("grpc.enable_retries", 1),
            ("grpc.per_rpc_retry_buffer_size", _INT_MAX if unlimited else max_bytes),
            ("grpc.keepalive_time_ms", _channel_int(_KEEPALIVE_TIME_MS, "keepalive_time_ms")),
            ("grpc.keepalive_timeout_ms", _channel_int(_KEEPALIVE_TIMEOUT_MS, "keepalive_timeout_ms")),
            ("grpc.keepalive_permit_without_calls", 0),
        ]
        if credentials is None and (root_certificates, private_key, certificate_chain) != (None, None, None):
            credentials = tls_credentials(root_certificates, private_key, certificate_chain)
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            self._channel = grpc.secure_channel(address, credentials, options=options)
        if auth_token is not None:
            self._channel = grpc.intercept_channel(self._channel, BearerToken(auth_token))
        self.address = address
        self.timeout = timeout
        self._position_encoding = pe_grpc.PositionEncodingStub(self._channel)
        self._attention = at_grpc.AttentionStub(self._channel)
        self._diagnostics = dg_grpc.DiagnosticsStub(self._channel)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"primserve.Client({self.address!r})"

    def close(self):
        """Closes the channel; the client is unusable afterwards."""
        self._channel.close()

    def _call(self, method, request, timeout):
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            raise Error(e.code(), e.details()) from None

    def _call_stream(self, method, messages, timeout):
        """A client-streaming call of the iterator ``messages``.

        An exception raised while iterating ``messages`` (a user's generator, or converting a
        chunk) cancels the call, so the server sees a broken-off stream and keeps nothing, and
        is raised here unchanged, where gRPC alone would report UNKNOWN "Exception iterating
        requests!".
        """
        requests = _RequestStream(messages)
        call = None
        try:
            call = method.future(requests, timeout=self.timeout if timeout is None else timeout)
        finally:
            requests.attach(call)
        try:
            response = call.result()
        except grpc.FutureCancelledError:
            if requests.error is None:  # Not cancelled by the request stream: say so, never return None.
                raise Error(grpc.StatusCode.CANCELLED, "the streaming call was cancelled") from None
            response = None  # Cancelled by requests, which holds the reason.
        except grpc.RpcError as e:
            if requests.error is None:
                raise Error(e.code(), e.details()) from None
            response = None
        except BaseException:  # KeyboardInterrupt while waiting: end the call too.
            call.cancel()
            raise
        if requests.error is not None:
            raise requests.error
        return response

    def echo(self, x, timeout=None):
        """Sends ``x`` through the Diagnostics.Echo RPC and returns it unchanged (float32).

        The transport baseline: the same tensor round trip as ``apply_rope`` with no compute
        (``bench/load_generator.cc``, ``bench/report.md``).

        Example::

            >>> c.echo(np.arange(3.0))
            array([0., 1., 2.], dtype=float32)
        """
        request = dg_pb2.EchoRequest(input=to_tensor(x))
        return from_tensor(self._call(self._diagnostics.Echo, request, timeout).output)

    def sinusoidal(self, length=None, *, dim, base=0, layout="interleaved", positions=None,
                   timeout=None):
        """The sinusoidal position table, float32 [length, dim] (MATH.md section 1).

        Rows are positions 0..length-1, or the real ``positions`` when given (then ``length``
        is ignored). ``dim`` must be even; ``base`` 0 means 10000; ``layout`` is
        ``'interleaved'`` (sin, cos, sin, cos, ...) or ``'split'`` (all sines, then all cosines).

        Example::

            >>> c.sinusoidal(2, dim=4)[1]
            array([0.84147096, 0.5403023 , 0.00999983, 0.99995   ], dtype=float32)
        """
        request = pe_pb2.SinusoidalRequest(
            length=0 if length is None else as_integer(length, "length"), positions=_reals(positions),
            dim=as_integer(dim, "dim"), base=float(base),
            layout=as_enum(_LAYOUTS, layout, "layout"))
        return from_tensor(self._call(self._position_encoding.Sinusoidal, request, timeout).output)

    def apply_rope(self, x, kind="1d", pairing="interleaved", positions=None, positions_x=None,
                   positions_y=None, grid=None, base=0, rotary_dim=0, inverse=False,
                   timeout=None):
        """Rotates ``x`` [..., seq, dim] by RoPE and returns the float32 result (MATH.md 2-3).

        ``kind`` ``'1d'`` uses ``positions`` (seq reals; default 0..seq-1). ``kind`` ``'2d'``
        uses ``positions_x`` + ``positions_y`` or ``grid=(height, width)`` (token t sits at
        (t // width, t % width)). ``pairing`` is ``'interleaved'`` (2i, 2i+1) or
        ``'half_split'`` (i, i + d/2). ``rotary_dim`` 0 rotates all features; ``inverse``
        applies R_m^T, undoing a rotation.

        Example::

            >>> c.apply_rope(np.array([[1.0, 2.0, 3.0, 4.0]]), positions=[1.0])
            array([[-1.1426396,  1.9220755,  2.9598508,  4.0297995]], dtype=float32)
        """
        height, width = _grid(grid, "grid")
        request = pe_pb2.ApplyRopeRequest(
            input=to_tensor(x), kind=as_enum(_KINDS, kind, "kind"),
            pairing=as_enum(_PAIRINGS, pairing, "pairing"), positions=_reals(positions),
            positions_x=_reals(positions_x), positions_y=_reals(positions_y),
            grid_height=height, grid_width=width, base=float(base),
            rotary_dim=as_integer(rotary_dim, "rotary_dim"),
            inverse=bool(inverse))
        return from_tensor(self._call(self._position_encoding.ApplyRope, request, timeout).output)

    def attend(self, query, key, value, kind="softmax", causal=False, key_lengths=None, bias=None,
               scale=0.0, rope=None, return_weights=False, precision="f32", timeout=None):
        """Attention over ``query`` [B, H, Lq, D], ``key`` [B, Hkv, Lk, D], ``value`` [B, Hkv, Lk, Dv].

        Returns the float32 output [B, H, Lq, Dv], or ``(output, weights)`` with
        ``return_weights=True`` (softmax only; weights [B, H, Lq, Lk]). H % Hkv == 0: query head
        h reads key/value head h // (H // Hkv). ``kind`` is ``'softmax'`` or ``'linear'``
        (phi = elu + 1). ``causal`` masks keys j > i + (Lk - Lq); ``key_lengths`` (one per
        batch) masks padding keys j >= key_lengths[b]; a row that sees no key is zeros.
        ``bias`` (softmax only) is added to the scaled logits and broadcasts to [B, H, Lq, Lk]
        (``-inf`` masks). ``scale`` (softmax only) 0 means 1/sqrt(D). ``rope`` rotates query and key first:
        ``True`` for the 1-D defaults or a dict with any of ``kind`` ('1d'/'2d'), ``pairing``,
        ``base``, ``rotary_dim``, ``query_positions``, ``key_positions``, ``grid=(h, w)``
        (2-D). ``precision`` is ``'f32'`` or ``'bf16'``.

        Example::

            >>> q, k, v = (np.random.randn(1, 2, 4, 8) for _ in range(3))
            >>> c.attend(q, k, v, causal=True).shape
            (1, 2, 4, 8)
        """
        request = at_pb2.AttendRequest(
            query=to_tensor(query), key=to_tensor(key), value=to_tensor(value),
            kind=as_enum(_ATTENTION_KINDS, kind, "kind"), causal=bool(causal),
            key_lengths=as_integers(key_lengths, "key_lengths"),
            scale=float(scale), return_weights=bool(return_weights),
            compute_precision=as_enum(_PRECISIONS, precision, "precision"))
        if bias is not None:
            request.bias.CopyFrom(to_tensor(bias))
        if rope is not None and rope is not False:
            request.rope.CopyFrom(_rope_spec(rope))
        response = self._call(self._attention.Attend, request, timeout)
        output = from_tensor(response.output)
        if return_weights:
            return output, from_tensor(response.weights)
        return output

    def estimate_cost(self, seq_len, head_size, num_heads, ffn_multiplier=4.0,
                      linear_head_multiplier=4.0, timeout=None):
        """Su's multiplication counts of one layer and the crossover lengths (MATH.md 6).

        Returns a dict of floats: ``projections``, ``attention_quadratic``, ``self_attention``,
        ``ffn``, ``linear_attention``, ``attention_exceeds_ffn_length``,
        ``quadratic_dominates_length``, ``linear_attention_wins_length`` (each length L:
        the inequality holds exactly when seq_len > L).

        Example::

            >>> cost = c.estimate_cost(512, head_size=64, num_heads=12)
            >>> cost["self_attention"], cost["attention_exceeds_ffn_length"]
            (1610612736.0, 1536.0)
        """
        request = at_pb2.EstimateCostRequest(
            seq_len=as_integer(seq_len, "seq_len"), head_size=as_integer(head_size, "head_size"),
            num_heads=as_integer(num_heads, "num_heads"),
            ffn_multiplier=float(ffn_multiplier), linear_head_multiplier=float(linear_head_multiplier))
        response = self._call(self._attention.EstimateCost, request, timeout)
        return {field.name: getattr(response, field.name) for field in response.DESCRIPTOR.fields}

    def health(self, service="", timeout=None):
        """The standard gRPC health status of ``service`` ('' = the server) as a string.

        One of ``'SERVING'``, ``'NOT_SERVING'``, ``'SERVICE_UNKNOWN'``, ``'UNKNOWN'``; an
        unknown service name raises ``Error`` with ``NOT_FOUND``. While a server drains, a
        client made with the default ``health_checking=True`` raises ``UNAVAILABLE`` ("backend
        unhealthy") instead of returning ``'NOT_SERVING'``: its balancer already left that server.

        Example::

            >>> c.health(), c.health("primserve.v1.PositionEncoding")
            ('SERVING', 'SERVING')
        """
        payload = service.encode("utf-8")
        request = b"\x0a" + _varint(len(payload)) + payload if payload else b""
        check = self._channel.unary_unary("/grpc.health.v1.Health/Check")
        return _HEALTH_STATUS.get(_health_status(self._call(check, request, timeout)), "UNKNOWN")
