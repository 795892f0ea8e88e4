"""The Toolkit calls (MATH.md sections 4, 7 and 9): numpy in, numpy out.

``Client`` gets these methods from ``ToolkitMethods``.

Example::

    >>> import numpy as np, primserve
    >>> with primserve.Client("localhost:50051") as c:
    ...     bound, dim = c.embedding_dimension(100000)            # 95.9027..., 96
    ...     w = c.initialize_parameters((768, 3072), distribution="truncated_normal",
    ...                                 scheme="xavier", seed=42)  # float32, var 2 / (3072 + 768)
    ...     g = np.array([-4.0, -6.0])
    ...     masked, kept = c.child_tuning_mask(g, 0.5, fisher=[2.0, 1.0], rescale=True)
    >>> masked, kept
    (array([-8.,  0.], dtype=float32), 0.5)
"""

from primserve.tensors import as_enum, as_integer, as_integers, from_tensor, to_tensor
from primserve.v1 import toolkit_pb2 as tk_pb2
from primserve.v1 import toolkit_pb2_grpc as tk_grpc

__all__ = ["ToolkitMethods"]

_DISTRIBUTIONS = {
    "normal": tk_pb2.INIT_DISTRIBUTION_NORMAL,
    "uniform": tk_pb2.INIT_DISTRIBUTION_UNIFORM,
    "truncated_normal": tk_pb2.INIT_DISTRIBUTION_TRUNCATED_NORMAL,
}
_SCHEMES = {
    "lecun": tk_pb2.INIT_SCHEME_LECUN,
    "he": tk_pb2.INIT_SCHEME_HE,
    "xavier": tk_pb2.INIT_SCHEME_XAVIER,
    "stddev": tk_pb2.INIT_SCHEME_STDDEV,
}
_MODES = {"task_free": tk_pb2.CHILD_TUNING_MODE_TASK_FREE, "task_driven": tk_pb2.CHILD_TUNING_MODE_TASK_DRIVEN}
_UINT64_MAX = 2**64 - 1  # Seeds are uint64 on the wire.



class ToolkitMethods:
    """The Toolkit calls of ``primserve.Client`` (see its docs)."""

    @property
    def _toolkit(self):
        stub = self.__dict__.get("_toolkit_stub")
        if stub is None:
            stub = self.__dict__["_toolkit_stub"] = tk_grpc.ToolkitStub(self._channel)
        return stub

    def embedding_dimension(self, vocab_size, coefficient=0.0, timeout=None):
        """Su's bound n > coefficient * ln N (MATH.md 4): returns ``(bound, dimension)``.

        ``bound`` is the real coefficient * ln(vocab_size), ``dimension`` its ceiling (an int).
        ``coefficient`` 0 means 8.33; ``vocab_size`` must be >= 2.

        Example::

            >>> c.embedding_dimension(512)
            (51.9652441265791, 52)
        """
        request = tk_pb2.EmbeddingDimensionRequest(vocab_size=as_integer(vocab_size, "vocab_size"),
                                                  coefficient=float(coefficient))
        response = self._call(self._toolkit.EmbeddingDimension, request, timeout)
        return response.bound, int(response.dimension)

    def initialize_parameters(self, shape, distribution="normal", scheme=None, stddev=None, fan_in=0,
                              fan_out=0, seed=0, return_info=False, timeout=None):
        """A float32 tensor of ``shape`` with exactly the scheme's variance (MATH.md 7).

        ``distribution``: ``'normal'``, ``'uniform'`` (U[-sqrt(3) s, sqrt(3) s]) or
        ``'truncated_normal'`` (cut at +-2 sigma, rescaled by 1/sqrt(gamma) so the variance is s^2).
        ``scheme``: ``'lecun'`` (1/fan_in), ``'he'`` (2/fan_in), ``'xavier'`` (2/(fan_in + fan_out))
        or ``'stddev'`` (s = ``stddev``); the default is ``'stddev'`` when ``stddev`` is given, else
        ``'lecun'``. Fans 0 are inferred from ``shape`` as PyTorch does ([out, in, *kernel]).
        The same ``seed`` gives the same bytes on every machine. With ``return_info=True`` returns
        ``(array, {"stddev": s, "fan_in": ..., "fan_out": ...})``.

        Example::

            >>> w, info = c.initialize_parameters((64, 3, 7, 7), scheme="he", return_info=True)
            >>> info["fan_in"], round(info["stddev"] ** 2 * 147, 12)
            (147, 2.0)
        """
        if scheme is None:
            scheme = "lecun" if stddev is None else "stddev"
        request = tk_pb2.InitializeParametersRequest(
            shape=as_integers(shape, "shape"),
            distribution=as_enum(_DISTRIBUTIONS, distribution, "distribution"),
            scheme=as_enum(_SCHEMES, scheme, "scheme"),
            stddev=0.0 if stddev is None else float(stddev),
            fan_in=as_integer(fan_in, "fan_in"), fan_out=as_integer(fan_out, "fan_out"),
            seed=as_integer(seed, "seed", minimum=0, maximum=_UINT64_MAX))
        response = self._call(self._toolkit.InitializeParameters, request, timeout)
        parameters = from_tensor(response.parameters)
        if return_info:
            return parameters, {"stddev": response.stddev, "fan_in": int(response.fan_in),
                                "fan_out": int(response.fan_out)}
        return parameters

    def child_tuning_mask(self, gradient, keep_probability, mode=None, fisher=None, rescale=False, seed=0,
                          timeout=None):
        """ChildTuning's masked gradient (MATH.md 9): returns ``(masked, kept_fraction)``.

        ``mode`` ``'task_free'`` keeps each element with probability ``keep_probability`` (a mask
        drawn from ``seed``: pass a fresh seed each step); ``'task_driven'`` keeps the top
        ``keep_probability`` fraction by ``fisher`` value (same shape as ``gradient``; ties at the
        threshold are kept, so the kept fraction is >= p). The default mode is ``'task_driven'``
        when ``fisher`` is given, else ``'task_free'``. ``rescale=True`` divides kept gradients by p
        (the article's unbiased form); False is the official code's.

        Example::

            >>> c.child_tuning_mask([-4.0, -6.0], 0.5, fisher=[2.0, 1.0], rescale=True)
            (array([-8.,  0.], dtype=float32), 0.5)
        """
        if mode is None:
            mode = "task_free" if fisher is None else "task_driven"
        request = tk_pb2.ChildTuningMaskRequest(
            gradient=to_tensor(gradient), mode=as_enum(_MODES, mode, "mode"),
            keep_probability=float(keep_probability), rescale=bool(rescale),
            seed=as_integer(seed, "seed", minimum=0, maximum=_UINT64_MAX))
        if fisher is not None:
            request.fisher.CopyFrom(to_tensor(fisher))
        response = self._call(self._toolkit.ChildTuningMask, request, timeout)
        return from_tensor(response.gradient), response.kept_fraction
