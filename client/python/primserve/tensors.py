"""Conversion between numpy arrays and the ``primserve.v1.Tensor`` wire message.

Example::

    >>> import numpy as np
    >>> from primserve.tensors import to_tensor, from_tensor
    >>> t = to_tensor(np.arange(6.0).reshape(2, 3))
    >>> list(t.shape), len(t.data)
    ([2, 3], 24)
    >>> from_tensor(t)
    array([[0., 1., 2.],
           [3., 4., 5.]], dtype=float32)

It also holds ``as_integer`` and ``as_integers``, the check every integer argument of the package
goes through (no silent truncation of 4.7 to 4, no bools as counts), and ``as_enum``, which maps
the names of enum arguments ("half_split", "bf16") to their wire values.
"""

import operator

import numpy as np

from primserve.v1 import tensor_pb2

__all__ = ["to_tensor", "from_tensor", "as_integer", "as_integers", "as_enum"]

_FLOAT32_LE = np.dtype("<f4")
_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1


def as_integer(value, what, minimum=_INT64_MIN, maximum=_INT64_MAX):
    """``value`` as a Python int in [minimum, maximum] (by default the int64 range of the wire).

    Accepts ints, numpy integers (also 0-d arrays) and integral floats (``4.0``); refuses bools
    and other types with ``TypeError``, and a fractional, non-finite or out-of-range value with
    ``ValueError``, naming the argument ``what``: a value is never silently truncated.

    Example::

        >>> as_integer(np.int64(4), "dim"), as_integer(4.0, "dim")
        (4, 4)
        >>> as_integer(4.7, "dim")
        Traceback (most recent call last):
        ValueError: dim: expected an integer, got 4.7
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what}: expected an integer, got the bool {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        if not isinstance(value, (float, np.floating)):
            raise TypeError(f"{what}: expected an integer, got {type(value).__name__} {value!r}") from None
        if not float(value).is_integer():  # Also NaN and infinities.
            raise ValueError(f"{what}: expected an integer, got {value!r}") from None
        number = int(value)
    if not minimum <= number <= maximum:
        bounds = f">= {minimum}" if maximum == _INT64_MAX and minimum > _INT64_MIN else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{what}: expected an integer {bounds}, got {number}")
    return number


def as_integers(values, what):
    """A list of Python ints from an int or an array-like of them (None gives []), each checked by
    ``as_integer`` and named ``what[i]``. Elements keep their own type (dtype=object), so a bool
    in ``[4, True]`` is refused rather than taken as 1.

    Example::

        >>> as_integers((4, 3.0), "shape")
        [4, 3]
    """
    if values is None:
        return []
    return [as_integer(n, f"{what}[{i}]") for i, n in enumerate(np.ravel(np.asarray(values, dtype=object)))]


def as_enum(table, value, what):
    """Maps a case-insensitive name in ``table`` (or an enum number, passed on) to the proto enum
    value; ValueError naming ``what`` and the names otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    try:
        return table[str(value).lower()]
    except KeyError:
        raise ValueError(f"{what} must be one of {sorted(table)}, got {value!r}") from None


def to_tensor(array):
    """Returns a ``Tensor`` holding ``array`` as float32, C order, little-endian, in ``data``.

    Any real array-like is accepted (lists, float64, int, bfloat16-free numpy dtypes) and
    converted to float32; a scalar becomes a rank-0 tensor.

    Example::

        >>> to_tensor([[1, 2], [3, 4]]).shape, to_tensor(np.float32(2.0)).shape
        ([2, 2], [])
    """
    a = np.asarray(array)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"to_tensor: expected a real numeric array, got dtype {a.dtype}")
    # Not np.ascontiguousarray: it makes a 0-d array [1]; tobytes(order="C") gives C order anyway.
    a = a.astype(_FLOAT32_LE, copy=False)
    return tensor_pb2.Tensor(
        shape=a.shape, dtype=tensor_pb2.DATA_TYPE_FLOAT32, data=a.tobytes(order="C"))


def from_tensor(tensor):
    """Returns the elements of a ``Tensor`` as a float32 ``np.ndarray`` of its shape.

    Reads ``data`` (float32 or bfloat16, little-endian) or, when ``data`` is empty, ``values``.
    Raises ``ValueError`` when the element count does not match the shape.

    Example::

        >>> from primserve.v1 import tensor_pb2
        >>> from_tensor(tensor_pb2.Tensor(shape=[2], values=[1.5, -2.0]))
        array([ 1.5, -2. ], dtype=float32)
    """
    shape = tuple(int(n) for n in tensor.shape)
    count = int(np.prod(shape, dtype=np.int64))
    if tensor.data:
        if tensor.dtype == tensor_pb2.DATA_TYPE_BFLOAT16:
            if len(tensor.data) % 2:
                raise ValueError(f"Tensor.data: bfloat16 needs an even byte count, got {len(tensor.data)}")
            upper = np.frombuffer(tensor.data, dtype="<u2").astype(np.uint32) << 16
            flat = upper.view(np.float32)
        elif tensor.dtype in (tensor_pb2.DATA_TYPE_UNSPECIFIED, tensor_pb2.DATA_TYPE_FLOAT32):
            if len(tensor.data) % 4:
                raise ValueError(f"Tensor.data: float32 needs a multiple of 4 bytes, got {len(tensor.data)}")
            flat = np.frombuffer(tensor.data, dtype=_FLOAT32_LE).astype(np.float32)
        else:
            raise ValueError(f"Tensor.dtype: unsupported value {tensor.dtype}")
    else:
        flat = np.asarray(tensor.values, dtype=np.float32)
    if flat.size != count:
        raise ValueError(
            f"Tensor: shape {list(shape)} needs {count} elements, got {flat.size}")
    return flat.reshape(shape)
