"""Activation functions (Keras names), applied to IR Values inside a layer's call."""
from __future__ import annotations

from . import ops


def linear(x):
    return x


def relu(x):
    return ops.relu(x)


def sigmoid(x):
    return ops.sigmoid(x)


def tanh(x):
    return ops.tanh(x)


def softmax(x, axis=-1):
    return ops.softmax(x, axis=axis)


_ALL = {"linear": linear, "relu": relu, "sigmoid": sigmoid, "softmax": softmax, "tanh": tanh}


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
    for name, f in _ALL.items():
        if f is fn:
            return name
    return getattr(fn, "__name__", repr(fn))


__all__ = ["linear", "relu", "sigmoid", "tanh", "softmax", "get", "serialize"]
