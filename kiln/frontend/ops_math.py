"""``kiln.ops``, math: unary math, comparisons and logic, ``where``, more reductions,
moments, and the activation functions Keras' ops provide -- all compositions of IR
ops (so every one of them is differentiable wherever its IR ops are)."""
from __future__ import annotations

import math

import numpy as np

from ..ir.graph import current_graph
from ..ir.types import DType
from .ops import _axes, _binary, _dtype_of, _reduce, _unary, convert


# -- unary math ---------------------------------------------------------------------------
def abs(x):  # noqa: A001 (Keras name)
    return _unary("abs", x)


absolute = abs


def square(x):
    return _unary("square", x)


def sign(x):
    return _unary("sign", x)


def floor(x):
    return _unary("floor", x)


def erf(x):
    return _unary("erf", x)


def softplus(x):
    return _unary("softplus", x)


def expm1(x):
    return _unary("expm1", x)


def log1p(x):
    return _unary("log1p", x)


def power(x1, x2):
    return _binary("pow", x1, x2)


def reciprocal(x):
    x = convert(x)
    return _binary("div", np.asarray(1.0), x)


def rsqrt(x):
    from .ops import sqrt
    return reciprocal(sqrt(x))


def clip(x, x_min, x_max):
    from .ops import maximum, minimum
    return minimum(maximum(x, x_min), x_max)


# -- comparisons and logic (bool results) --------------------------------------------------
def greater(x1, x2):
    return _binary("greater", x1, x2)


def greater_equal(x1, x2):
    return _binary("greater_equal", x1, x2)


def less(x1, x2):
    return _binary("less", x1, x2)


def less_equal(x1, x2):
    return _binary("less_equal", x1, x2)


def equal(x1, x2):
    return _binary("equal", x1, x2)


def not_equal(x1, x2):
    return _binary("not_equal", x1, x2)


def _as_bool(x):
    x = convert(x) if _dtype_of(x) is not None else convert(x, DType.bool)
    if x.dtype is not DType.bool:
        x = current_graph().op("cast", x, dtype=DType.bool)
    return x


def logical_and(x1, x2):
    return current_graph().op("logical_and", _as_bool(x1), _as_bool(x2))


def logical_or(x1, x2):
    return current_graph().op("logical_or", _as_bool(x1), _as_bool(x2))


def logical_not(x):
    return current_graph().op("logical_not", _as_bool(x))


def where(condition, x1, x2):
    """``x1`` where ``condition`` else ``x2`` (numpy broadcasting)."""
    like = _dtype_of(x1) or _dtype_of(x2)
    return current_graph().op("where", _as_bool(condition), convert(x1, like), convert(x2, like))


# -- reductions ---------------------------------------------------------------------------
def min(x, axis=None, keepdims=False):  # noqa: A001 (Keras name)
    return _reduce("reduce_min", x, axis, keepdims)


amin = min


def amax(x, axis=None, keepdims=False):
    return _reduce("reduce_max", x, axis, keepdims)


def _arg(x, axis, keepdims):
    from .ops import reshape
    x = convert(x)
    if axis is None:
        x = reshape(x, (-1,))
        axis = 0
    out = current_graph().op("argmax", x, axis=int(axis), keepdims=bool(keepdims))
    return current_graph().op("cast", out, dtype=DType.i32)   # Keras' argmax is int32


def argmax(x, axis=None, keepdims=False):
    """Index of the largest value along ``axis`` (int32, first on ties, as Keras)."""
    return _arg(x, axis, keepdims)


def argmin(x, axis=None, keepdims=False):
    from .ops import negative
    return _arg(negative(convert(x)), axis, keepdims)


def moments(x, axes, keepdims=False):
    """(mean, variance) over ``axes``; the variance is the biased one (as Keras)."""
    from .ops import mean, subtract
    x = convert(x)
    m = mean(x, axis=axes, keepdims=True)
    v = mean(square(subtract(x, m)), axis=axes, keepdims=keepdims)
    if not keepdims:
        m = mean(x, axis=axes, keepdims=False)
    return m, v


def var(x, axis=None, keepdims=False):
    return moments(x, _axes(convert(x), axis), keepdims)[1]


def std(x, axis=None, keepdims=False):
    from .ops import sqrt
    return sqrt(var(x, axis, keepdims))


def logsumexp(x, axis=None, keepdims=False):
    from .ops import add, exp, log, max, subtract, sum
    x = convert(x)
    m = max(x, axis=axis, keepdims=True)
    out = add(log(sum(exp(subtract(x, m)), axis=axis, keepdims=True)), m)
    if not keepdims:
        from .ops import reshape
        axes = {a % x.type.rank for a in _axes(x, axis)}
        out = reshape(out, tuple(d for i, d in enumerate(out.shape) if i not in axes))
    return out


def normalize(x, axis=-1, order=2, epsilon=None):
    """``x`` divided by its L2 norm along ``axis`` (Keras' ``ops.normalize``:
    ``x * minimum(rsqrt(sum(x**2)), 1/epsilon)``, epsilon 1e-7)."""
    from .ops import minimum, multiply, sum
    if order != 2:
        raise NotImplementedError(f"kiln.ops.normalize: only order=2 is supported, got {order!r}")
    eps = 1e-7 if epsilon is None else float(epsilon)
    inv = rsqrt(sum(square(x), axis=axis, keepdims=True))
    return multiply(x, minimum(inv, 1.0 / eps))


# -- activations (Keras' ops.<name>) -------------------------------------------------------
def leaky_relu(x, negative_slope=0.2):
    from .ops import multiply
    return where(greater(x, 0.0), x, multiply(x, float(negative_slope)))


def relu6(x):
    from .ops import minimum, relu
    return minimum(relu(x), 6.0)


def elu(x, alpha=1.0):
    from .ops import multiply
    return where(greater(x, 0.0), x, multiply(expm1(x), float(alpha)))


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def selu(x):
    from .ops import multiply
    return multiply(elu(x, SELU_ALPHA), SELU_SCALE)


def gelu(x, approximate=True):
    """Gaussian error linear unit. ``approximate=True`` (the default of Keras'
    ``ops.gelu``; the ``"gelu"`` *activation* defaults to False) is the tanh form."""
    from .ops import add, multiply, tanh
    if approximate:
        inner = multiply(add(x, multiply(power(x, 3.0), 0.044715)), math.sqrt(2.0 / math.pi))
        return multiply(multiply(x, 0.5), add(tanh(inner), 1.0))
    return multiply(multiply(x, 0.5), add(erf(multiply(x, 1.0 / math.sqrt(2.0))), 1.0))


def silu(x):
    from .ops import multiply, sigmoid
    return multiply(x, sigmoid(x))


swish = silu


def hard_sigmoid(x):
    """relu6(x + 3) / 6: 0 for x <= -3, 1 for x >= 3, x/6 + 0.5 between (Keras 3)."""
    from .ops import add, multiply
    return multiply(relu6(add(x, 3.0)), 1.0 / 6.0)


def hard_silu(x):
    from .ops import multiply
    return multiply(x, hard_sigmoid(x))


hard_swish = hard_silu


def hard_tanh(x):
    return clip(x, -1.0, 1.0)


def softsign(x):
    from .ops import add, divide
    return divide(x, add(abs(x), 1.0))


def log_sigmoid(x):
    from .ops import negative
    return negative(softplus(negative(x)))


def log_softmax(x, axis=-1):
    from .ops import subtract
    return subtract(x, logsumexp(x, axis=axis, keepdims=True))


def mish(x):
    from .ops import multiply, tanh
    return multiply(x, tanh(softplus(x)))


def celu(x, alpha=1.0):
    from .ops import add, divide, maximum, minimum, multiply
    a = float(alpha)
    return add(maximum(x, 0.0), multiply(expm1(divide(minimum(x, 0.0), a)), a))


__all__ = ["abs", "absolute", "square", "sign", "floor", "erf", "softplus", "expm1", "log1p",
           "power", "reciprocal", "rsqrt", "clip", "greater", "greater_equal", "less",
           "less_equal", "equal", "not_equal", "logical_and", "logical_or", "logical_not",
           "where", "min", "amin", "amax", "argmax", "argmin", "moments", "var", "std",
           "logsumexp", "normalize", "leaky_relu", "relu6", "elu", "selu", "gelu", "silu",
           "swish", "hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh", "softsign",
           "log_sigmoid", "log_softmax", "mish", "celu"]
