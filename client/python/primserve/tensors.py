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
"""

import numpy as np

from primserve.v1 import tensor_pb2

__all__ = ["to_tensor", "from_tensor"]

_FLOAT32_LE = np.dtype("<f4")


def to_tensor(array):
    """Returns a ``Tensor`` holding ``array`` as float32, C order, little-endian, in ``data``.

    Any real array-like is accepted (lists, float64, int, bfloat16-free numpy dtypes) and
    converted to float32; a scalar becomes a rank-0 tensor.

    Example::

        >>> to_tensor([[1, 2], [3, 4]]).shape
        [2, 2]
    """
    a = np.asarray(array)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"to_tensor: expected a real numeric array, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=_FLOAT32_LE)
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
