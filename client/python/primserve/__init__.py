"""Python client for primserve, the position-encoding / attention / logistic-regression service.

Example::

    >>> import numpy as np
    >>> import primserve
    >>> with primserve.Client("localhost:50051", timeout=30) as c:
    ...     table = c.sinusoidal(16, dim=8, layout="split")            # np.float32 [16, 8]
    ...     q = c.apply_rope(np.random.randn(2, 4, 16, 64), pairing="half_split")
    ...     o = c.attend(q, q, q, causal=True, rope=True)                # [2, 4, 16, 64]
    ...     c.health()
    'SERVING'

Errors from the server raise ``primserve.Error`` (``.code`` is a ``grpc.StatusCode``,
``.message`` the server's explanation). ``to_tensor`` / ``from_tensor`` convert between numpy
arrays and the ``primserve.v1.Tensor`` wire message for use with the raw stubs in
``primserve.v1``.
"""

from primserve.client import Client, Error
from primserve.discriminator import network_from_state_dict
from primserve.logistic import LogisticRegression
from primserve.tensors import from_tensor, to_tensor

__all__ = ["Client", "Error", "LogisticRegression", "network_from_state_dict", "to_tensor", "from_tensor"]
__version__ = "0.1.0"
