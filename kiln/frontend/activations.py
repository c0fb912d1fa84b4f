"""Activation functions (Keras 3 names and definitions), applied to IR Values inside a
layer's call; every one is a composition of IR ops.

``gelu`` defaults to the exact (erf) form, as ``keras.activations.gelu`` does
(``approximate=False``; Keras' *op* ``ops.gelu`` defaults to the tanh form).
``hard_sigmoid`` is Keras 3's ``relu6(x + 3) / 6`` (Keras 2's was ``0.2 * x + 0.5``).
"""
from __future__ import annotations

from . import ops


def linear(x):
    return x


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """As Keras' ``ReLU.static_call``: ``max_value`` for x >= max_value, x for
    threshold < x < max_value, ``negative_slope * (x - threshold)`` otherwise."""
    if negative_slope != 0.0:
        if max_value is None and threshold == 0:
            return ops.leaky_relu(x, negative_slope=negative_slope)
        neg = ops.relu(ops.add(ops.negative(x), float(threshold)) if threshold != 0
                       else ops.negative(x))
    clip_max = max_value is not None
    if threshold != 0:
        x = ops.where(ops.greater(x, float(threshold)), x, 0.0)
    elif max_value == 6:
        x = ops.relu6(x)
        clip_max = False
    else:
        x = ops.relu(x)
    if clip_max:
        x = ops.clip(x, 0.0, float(max_value))
    if negative_slope != 0.0:
        x = ops.subtract(x, ops.multiply(neg, float(negative_slope)))
    return x


def leaky_relu(x, negative_slope=0.2):
    return ops.leaky_relu(x, negative_slope=negative_slope)


def relu6(x):
    return ops.relu6(x)


def sigmoid(x):
    return ops.sigmoid(x)


def tanh(x):
    return ops.tanh(x)


def softmax(x, axis=-1):
    return ops.softmax(x, axis=axis)


def log_softmax(x, axis=-1):
    return ops.log_softmax(x, axis=axis)


def elu(x, alpha=1.0):
    return ops.elu(x, alpha=alpha)


def selu(x):
    return ops.selu(x)


def celu(x, alpha=1.0):
    return ops.celu(x, alpha=alpha)


def softplus(x):
    return ops.softplus(x)


def softsign(x):
    return ops.softsign(x)


def silu(x):
    return ops.silu(x)


swish = silu


def gelu(x, approximate=False):
    return ops.gelu(x, approximate=approximate)


def exponential(x):
    return ops.exp(x)


def hard_sigmoid(x):
    return ops.hard_sigmoid(x)


def hard_silu(x):
    return ops.hard_silu(x)


hard_swish = hard_silu


def hard_tanh(x):
    return ops.hard_tanh(x)


def log_sigmoid(x):
    return ops.log_sigmoid(x)


def mish(x):
    return ops.mish(x)


_ALL = {"linear": linear, "relu": relu, "leaky_relu": leaky_relu, "relu6": relu6,
        "sigmoid": sigmoid, "tanh": tanh, "softmax": softmax, "log_softmax": log_softmax,
        "elu": elu, "selu": selu, "celu": celu, "softplus": softplus, "softsign": softsign,
        "silu": silu, "swish": swish, "gelu": gelu, "exponential": exponential,
        "hard_sigmoid": hard_sigmoid, "hard_silu": hard_silu, "hard_swish": hard_swish,
        "hard_tanh": hard_tanh, "log_sigmoid": log_sigmoid, "mish": mish}


def get(identifier):
    """An activation from its Keras name, ``None`` (= linear) or a callable."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        fn = _ALL.get(identifier)
        if fn is not None:
            return fn
    elif callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret activation function identifier: {identifier!r} "
                     f"(known activations: {', '.join(sorted(_ALL))}, or None for linear)")


def serialize(fn) -> str:
    """The Keras name of an activation function (``None`` -> ``"linear"``)."""
    if fn is swish:
        return "silu"
    if fn is hard_swish:
        return "hard_silu"
    for name, f in _ALL.items():
        if f is fn:
            return name
    return getattr(fn, "__name__", repr(fn))


__all__ = list(_ALL) + ["get", "serialize"]
