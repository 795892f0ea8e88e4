"""Discriminator scoring (GN-GAN / GraN-GAN, MATH.md section 8): numpy in, numpy out.

``Client`` gets ``register_discriminator``, ``score`` and ``gan_losses`` from
``DiscriminatorMethods``. ``network_from_state_dict`` turns a PyTorch ``nn.Sequential`` (or a
``state_dict`` plus a layer list) into the ``primserve.v1.Network`` message; it imports torch
only when given a torch module.

Example::

    >>> import torch.nn as nn, numpy as np, primserve
    >>> from primserve.discriminator import network_from_state_dict
    >>> D = nn.Sequential(nn.Conv2d(3, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(),
    ...                   nn.Linear(64 * 16 * 16, 1))
    >>> net = network_from_state_dict(D, input_shape=(3, 32, 32))
    >>> with primserve.Client("localhost:50051") as c:
    ...     c.register_discriminator("d", net)
    ...     out = c.score(np.random.randn(8, 3, 32, 32), model_name="d", return_input_gradient=True)
    ...     out["scores"]            # f_hat [8], |f_hat| <= 1 (GRADIENT_NORM)
    ...     d_loss, g_loss = c.gan_losses(real, fake, model_name="d", loss="hinge")

Without torch, describe the layers next to a ``state_dict`` of arrays::

    >>> net = network_from_state_dict(
    ...     {"0.weight": w0, "0.bias": b0, "2.weight": w2, "2.bias": b2},
    ...     layers=[{"type": "dense", "key": "0"}, {"type": "tanh"}, {"type": "dense", "key": "2"}],
    ...     input_shape=(5,))
"""

import numpy as np

from primserve.tensors import as_enum, as_integer, as_integers, from_tensor, to_tensor
from primserve.v1 import discriminator_pb2 as d_pb2
from primserve.v1 import discriminator_pb2_grpc as d_grpc
from primserve.v1 import tensor_pb2

__all__ = ["DiscriminatorMethods", "network_from_state_dict"]

_NORMALIZATIONS = {"gn": d_pb2.NORMALIZATION_GRADIENT_NORM,
                   "gradient_norm": d_pb2.NORMALIZATION_GRADIENT_NORM,
                   "gran": d_pb2.NORMALIZATION_GRAN, "none": d_pb2.NORMALIZATION_NONE}
_PRECISIONS = {"f32": tensor_pb2.COMPUTE_PRECISION_F32, "bf16": tensor_pb2.COMPUTE_PRECISION_BF16}
_LOSSES = {"hinge": d_pb2.LOSS_HINGE, "wasserstein": d_pb2.LOSS_WASSERSTEIN, "bce": d_pb2.LOSS_BCE}
_ACTIVATIONS = {"relu": d_pb2.ACTIVATION_KIND_RELU, "leaky_relu": d_pb2.ACTIVATION_KIND_LEAKY_RELU,
                "tanh": d_pb2.ACTIVATION_KIND_TANH, "sigmoid": d_pb2.ACTIVATION_KIND_SIGMOID,
                "elu": d_pb2.ACTIVATION_KIND_ELU, "identity": d_pb2.ACTIVATION_KIND_IDENTITY}



def _array(value):
    """A float32 numpy array from a numpy array, nested list or torch tensor (no torch import)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _dense(weight, bias):
    weight = _array(weight)
    bias = np.zeros(weight.shape[0], np.float32) if bias is None else _array(bias)
    return d_pb2.Layer(dense=d_pb2.Dense(weight=to_tensor(weight), bias=to_tensor(bias)))


def _conv2d(weight, bias, stride=1, padding=0, where="conv2d"):
    weight = _array(weight)
    bias = np.zeros(weight.shape[0], np.float32) if bias is None else _array(bias)
    return d_pb2.Layer(conv2d=d_pb2.Conv2d(weight=to_tensor(weight), bias=to_tensor(bias),
                                           stride=as_integer(stride, f"{where}: stride"),
                                           padding=as_integer(padding, f"{where}: padding")))


def _activation(kind, alpha=None):
    activation = d_pb2.Activation(kind=as_enum(_ACTIVATIONS, kind, "activation"))
    if alpha is not None:
        activation.alpha = float(alpha)
    return d_pb2.Layer(activation=activation)


def _square(value, what, layer):
    """One int from an int or a pair of equal ints (the server takes one stride / padding)."""
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ValueError(f"layer {layer}: {what} {tuple(value)} is not square; primserve takes one "
                             f"{what} for both axes")
        value = value[0]
    if isinstance(value, str):
        raise ValueError(f"layer {layer}: {what}={value!r} is not supported; give an int")
    return as_integer(value, f"layer {layer}: {what}")


def _layers_from_module(module, prefix=""):
    """The Layer messages of a torch nn.Sequential (nested Sequentials are flattened)."""
    import torch.nn as nn  # Imported only here: the rest of the package does not need torch.

    layers = []
    for name, child in module.named_children():
        where = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            layers += _layers_from_module(child, where + ".")
        elif isinstance(child, nn.Linear):
            layers.append(_dense(child.weight, child.bias))
        elif isinstance(child, nn.Conv2d):
            if _square(child.dilation, "dilation", where) != 1 or child.groups != 1:
                raise ValueError(f"layer {where}: only dilation 1 and groups 1 are supported")
            if child.padding_mode != "zeros":
                raise ValueError(f"layer {where}: padding_mode {child.padding_mode!r} is not supported (zeros only)")
            layers.append(_conv2d(child.weight, child.bias, _square(child.stride, "stride", where),
                                  _square(child.padding, "padding", where), f"layer {where}"))
        elif isinstance(child, nn.LeakyReLU):
            layers.append(_activation("leaky_relu", child.negative_slope))
        elif isinstance(child, nn.ELU):
            layers.append(_activation("elu", child.alpha))
        elif isinstance(child, nn.ReLU):
            layers.append(_activation("relu"))
        elif isinstance(child, nn.Tanh):
            layers.append(_activation("tanh"))
        elif isinstance(child, nn.Sigmoid):
            layers.append(_activation("sigmoid"))
        elif isinstance(child, nn.Identity):
            layers.append(_activation("identity"))
        elif isinstance(child, nn.Flatten):
            if child.start_dim != 1 or child.end_dim != -1:
                raise ValueError(f"layer {where}: only nn.Flatten() (start_dim=1, end_dim=-1) is supported")
            layers.append(d_pb2.Layer(flatten=d_pb2.Flatten()))
        else:
            raise ValueError(f"layer {where}: {type(child).__name__} is not supported (Linear, Conv2d, ReLU, "
                             "LeakyReLU, Tanh, Sigmoid, ELU, Identity, Flatten)")
    return layers


def _layers_from_spec(state_dict, layers):
    """Layer messages from dicts like the CLI's JSON: {"type": "dense"|"linear"|"conv2d", "key":
    state_dict prefix (or "weight"/"bias" arrays), "stride", "padding"}, {"type": activation,
    "alpha"}, {"type": "flatten"}; a bare string is a layer type without options."""
    out = []
    for i, spec in enumerate(layers):
        if isinstance(spec, str):
            spec = {"type": spec}
        kind = str(spec.get("type", "")).lower()
        if kind in ("dense", "linear", "conv2d"):
            if "key" in spec:
                key = spec["key"]
                if f"{key}.weight" not in state_dict:
                    raise KeyError(f"layers[{i}]: state_dict has no {key}.weight")
                weight, bias = state_dict[f"{key}.weight"], state_dict.get(f"{key}.bias")
            else:
                weight, bias = spec["weight"], spec.get("bias")
            if kind == "conv2d":
                out.append(_conv2d(weight, bias, spec.get("stride", 1), spec.get("padding", 0), f"layers[{i}]"))
            else:
                out.append(_dense(weight, bias))
        elif kind == "flatten":
            out.append(d_pb2.Layer(flatten=d_pb2.Flatten()))
        elif kind in _ACTIVATIONS:
            out.append(_activation(kind, spec.get("alpha")))
        else:
            raise ValueError(f"layers[{i}]: unknown layer type {kind!r}")
    return out


def network_from_state_dict(model, layers=None, *, input_shape):
    """A ``primserve.v1.Network`` from a torch ``nn.Sequential``, or a ``state_dict`` and ``layers``.

    ``model``: an ``nn.Sequential`` of Linear, Conv2d (square stride/padding, dilation 1, groups
    1, zero padding), ReLU, LeakyReLU, Tanh, Sigmoid, ELU, Identity, Flatten (nested Sequentials
    allowed); or a mapping name -> array / tensor (a ``state_dict``) described by ``layers`` (see
    ``_layers_from_spec``). ``input_shape``: the per-sample shape, e.g. ``(3, 32, 32)`` or
    ``(features,)``. Weights keep PyTorch's layout. A module is converted in eval terms: only its
    parameters are read. torch is imported only for a module.
    """
    if layers is None:
        if not hasattr(model, "named_children"):
            raise TypeError("give an nn.Sequential, or a state_dict together with layers=[...]")
        messages = _layers_from_module(model)
    else:
        if hasattr(model, "state_dict") and not hasattr(model, "keys"):
            model = model.state_dict()
        messages = _layers_from_spec(model, layers)
    return d_pb2.Network(input_shape=as_integers(input_shape, "input_shape"), layers=messages)


class DiscriminatorMethods:
    """The Discriminator calls of ``primserve.Client`` (see the module docs)."""

    @property
    def _discriminator(self):
        stub = self.__dict__.get("_discriminator_stub")
        if stub is None:
            stub = self.__dict__["_discriminator_stub"] = d_grpc.DiscriminatorStub(self._channel)
        return stub

    @staticmethod
    def _network_message(network, input_shape):
        if isinstance(network, d_pb2.Network):
            return network
        if input_shape is None:
            raise ValueError("input_shape is required when network is not a primserve.v1.Network")
        return network_from_state_dict(network, input_shape=input_shape)

    def register_discriminator(self, name, network, input_shape=None, timeout=None):
        """Stores ``network`` (a ``Network`` message, or an ``nn.Sequential`` with ``input_shape``)
        under ``name``; returns ``{"input_shape", "num_layers", "piecewise_linear"}``."""
        request = d_pb2.RegisterRequest(name=name, network=self._network_message(network, input_shape))
        response = self._call(self._discriminator.Register, request, timeout)
        return {"input_shape": tuple(response.input_shape), "num_layers": response.num_layers,
                "piecewise_linear": response.piecewise_linear}

    @staticmethod
    def _options(request, normalization, epsilon):
        request.normalization = as_enum(_NORMALIZATIONS, normalization, "normalization")
        if epsilon is not None:  # Sent only when given: the server rejects it without GRAN.
            request.epsilon = float(epsilon)

    def _source(self, request, model_name, network, input_shape):
        if (model_name is None) == (network is None):
            raise ValueError("give exactly one of model_name (a registered discriminator) or network")
        if model_name is not None:
            request.model_name = model_name
        else:
            request.network.CopyFrom(self._network_message(network, input_shape))

    def score(self, inputs, model_name=None, network=None, normalization="gn", epsilon=None,
              return_input_gradient=False, input_shape=None, precision="f32", timeout=None):
        """Scores ``inputs`` [batch, ...input_shape] with a registered or inline discriminator.

        Returns a dict of float32 arrays: ``raw_scores`` f [batch], ``gradient_norms``
        ||grad_x f|| [batch], ``scores`` f_hat [batch] (``normalization`` "gn": f / (||grad f|| +
        |f|); "gran": f ||grad f|| / (||grad f||^2 + epsilon), epsilon default 1e-8; "none": f),
        and with ``return_input_gradient`` ``input_gradients`` grad_x f_hat [batch, ...].
        ``precision`` is ``'f32'`` or ``'bf16'`` (bfloat16 products with float32 accumulation,
        about 1e-2 relative error; the server answers UNIMPLEMENTED without native bf16).
        """
        request = d_pb2.ScoreRequest(inputs=to_tensor(np.asarray(inputs, dtype=np.float32)),
                                     return_input_gradient=bool(return_input_gradient),
                                     compute_precision=as_enum(_PRECISIONS, precision, "precision"))
        self._source(request, model_name, network, input_shape)
        self._options(request, normalization, epsilon)
        response = self._call(self._discriminator.Score, request, timeout)
        out = {"raw_scores": from_tensor(response.raw_scores),
               "gradient_norms": from_tensor(response.gradient_norms),
               "scores": from_tensor(response.scores)}
        if response.HasField("input_gradients"):
            out["input_gradients"] = from_tensor(response.input_gradients)
        return out

    def gan_losses(self, real_inputs, fake_inputs, model_name=None, network=None, loss="hinge",
                   normalization="gn", epsilon=None, input_shape=None, timeout=None):
        """``(discriminator_loss, generator_loss)`` on f_hat of a real and a fake batch; ``loss``
        is "hinge", "wasserstein" or "bce" (with logits), as in the official GN-GAN code."""
        request = d_pb2.LossesRequest(real_inputs=to_tensor(np.asarray(real_inputs, dtype=np.float32)),
                                      fake_inputs=to_tensor(np.asarray(fake_inputs, dtype=np.float32)),
                                      loss=as_enum(_LOSSES, loss, "loss"))
        self._source(request, model_name, network, input_shape)
        self._options(request, normalization, epsilon)
        response = self._call(self._discriminator.Losses, request, timeout)
        return response.discriminator_loss, response.generator_loss
