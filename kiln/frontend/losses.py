"""``kiln.losses``: Keras 3's losses, written as IR.

A loss function ``fn(y_true, y_pred)`` returns per-sample values (the mean or sum
over the last axis, as Keras); a ``Loss`` object adds sample weights and the
reduction (default ``"sum_over_batch_size"``: sum of the weighted values divided by
their number). Called on IR Values (inside a graph being built) they append nodes;
called on numpy arrays they run eagerly (a small graph through the interpreter) and
return numpy, as Keras' losses can be called on arrays.

Crossentropies follow Keras 3 with the TensorFlow backend, including its
``_get_logits`` rule: when ``y_pred`` is the result of a ``softmax`` (categorical)
or ``sigmoid`` (binary) op and ``from_logits=False``, the loss is computed from that
op's input, the logits (stable, and what ``keras.activations.softmax`` makes happen by
caching ``_keras_logits``). Otherwise probabilities are clipped to
``[1e-7, 1 - 1e-7]`` (``keras.backend.epsilon()``).
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Value
from ..ir.opdef import OpTypeError
from ..ir.types import DType
from . import mathops as M
from .naming import to_snake_case

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def _eager(fn, y_true, y_pred, **kw):
    """Run a loss function on numpy arrays (Keras allows it)."""
    def build(yt, yp):
        return fn(yt, yp, **kw)
    yt = np.asarray(y_true)
    return M.run_eager(build, yt, np.asarray(y_pred, np.float32))


def _graph_fn(fn):
    """Let a loss function take Values (graph mode) or arrays (eager)."""
    def wrapper(y_true, y_pred, **kw):
        if isinstance(y_pred, Value):
            return fn(y_true, y_pred, **kw)
        return _eager(fn, y_true, y_pred, **kw)
    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    wrapper._fn = fn
    return wrapper


def _float(y_true: Value, y_pred: Value) -> Value:
    return M.cast(y_true, y_pred.dtype)


def _same_rank(y_true, y_pred):
    return M.squeeze_or_expand_to_same_rank(_float(y_true, y_pred), y_pred)


def _logits_of(y_pred: Value, op: str):
    """The input of the ``op`` node producing ``y_pred`` (Keras' ``_get_logits``)."""
    p = y_pred.producer
    if p is None or p.op.name != op:
        return None
    if op == "softmax" and p.attrs["axis"] % y_pred.type.rank != y_pred.type.rank - 1:
        return None
    return p.inputs[0]


# -- loss functions (per-sample values) ---------------------------------------------------

@_graph_fn
def mean_squared_error(y_true, y_pred):
    """mean(square(y_true - y_pred), axis=-1)"""
    y_true, y_pred = _same_rank(y_true, y_pred)
    return M.mean(M.square(M.sub(y_true, y_pred)), -1)


@_graph_fn
def mean_absolute_error(y_true, y_pred):
    """mean(abs(y_true - y_pred), axis=-1)"""
    y_true, y_pred = _same_rank(y_true, y_pred)
    return M.mean(M.abs_(M.sub(y_true, y_pred)), -1)


@_graph_fn
def mean_absolute_percentage_error(y_true, y_pred):
    """100 * mean(abs((y_true - y_pred) / maximum(abs(y_true), epsilon)), axis=-1)"""
    y_true, y_pred = _same_rank(y_true, y_pred)
    diff = M.abs_(M.div(M.sub(y_true, y_pred), M.maximum(M.abs_(y_true), M.EPSILON)))
    return M.mul(100.0, M.mean(diff, -1))


@_graph_fn
def mean_squared_logarithmic_error(y_true, y_pred):
    """mean(square(log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1)), axis=-1)"""
    y_true, y_pred = _same_rank(y_true, y_pred)
    a = M.log(M.add(M.maximum(y_pred, M.EPSILON), 1.0))
    b = M.log(M.add(M.maximum(y_true, M.EPSILON), 1.0))
    return M.mean(M.square(M.sub(a, b)), -1)


@_graph_fn
def huber(y_true, y_pred, delta=1.0):
    """mean(where(|e| <= delta, 0.5 e^2, delta |e| - 0.5 delta^2), axis=-1), e = y_pred - y_true"""
    y_true, y_pred = _same_rank(y_true, y_pred)
    err = M.sub(y_pred, y_true)
    a = M.abs_(err)
    d = np.float32(delta)
    quad = M.mul(0.5, M.square(err))
    lin = M.sub(M.mul(d, a), np.float32(0.5) * d * d)
    return M.mean(M.where(M.less_equal(a, d), quad, lin), -1)


@_graph_fn
def log_cosh(y_true, y_pred):
    """mean(x + softplus(-2x) - log(2), axis=-1), x = y_pred - y_true"""
    y_true, y_pred = _same_rank(y_true, y_pred)
    x = M.sub(y_pred, y_true)
    v = M.sub(M.add(x, M.softplus(M.mul(x, -2.0))), np.float32(np.log(2.0)))
    return M.mean(v, -1)


def _hinge_labels(y_true):
    """Keras: labels all in {0, 1} become {-1, 1}; other labels are used as they are."""
    is01 = M.cast(M.logical_or(M.equal(y_true, 0.0), M.equal(y_true, 1.0)), y_true.dtype)
    all01 = M.greater(M.min_(is01), 0.5)
    return M.where(all01, M.sub(M.mul(2.0, y_true), 1.0), y_true)


@_graph_fn
def hinge(y_true, y_pred):
    """mean(maximum(1 - y_true * y_pred, 0), axis=-1) (0/1 labels become -1/1)"""
    y_true, y_pred = _same_rank(y_true, y_pred)
    y_true = _hinge_labels(y_true)
    return M.mean(M.maximum(M.sub(1.0, M.mul(y_true, y_pred)), 0.0), -1)


@_graph_fn
def squared_hinge(y_true, y_pred):
    """mean(square(maximum(1 - y_true * y_pred, 0)), axis=-1) (0/1 labels become -1/1)"""
    y_true, y_pred = _same_rank(y_true, y_pred)
    y_true = _hinge_labels(y_true)
    return M.mean(M.square(M.maximum(M.sub(1.0, M.mul(y_true, y_pred)), 0.0)), -1)


@_graph_fn
def categorical_hinge(y_true, y_pred):
    """maximum(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0)"""
    y_true, y_pred = _same_rank(y_true, y_pred)
    pos = M.sum_(M.mul(y_true, y_pred), -1)
    neg = M.max_(M.mul(M.sub(1.0, y_true), y_pred), -1)
    return M.maximum(M.add(M.sub(neg, pos), 1.0), 0.0)


@_graph_fn
def kl_divergence(y_true, y_pred):
    """sum(y_true * log(y_true / y_pred), axis=-1), both clipped to [eps, 1]"""
    y_true, y_pred = _same_rank(y_true, y_pred)
    yt = M.clip(y_true, M.EPSILON, 1.0)
    yp = M.clip(y_pred, M.EPSILON, 1.0)
    return M.sum_(M.mul(yt, M.log(M.div(yt, yp))), -1)


@_graph_fn
def poisson(y_true, y_pred):
    """mean(y_pred - y_true * log(y_pred + eps), axis=-1)"""
    y_true, y_pred = _same_rank(y_true, y_pred)
    return M.mean(M.sub(y_pred, M.mul(y_true, M.log(M.add(y_pred, M.EPSILON)))), -1)


@_graph_fn
def cosine_similarity(y_true, y_pred, axis=-1):
    """-sum(l2_normalize(y_true) * l2_normalize(y_pred), axis)"""
    y_true, y_pred = _same_rank(y_true, y_pred)
    return M.neg(M.sum_(M.mul(M.l2_normalize(y_true, axis), M.l2_normalize(y_pred, axis)), axis))


def _check_same_shape(fn: str, y_true: Value, y_pred: Value):
    if y_true.type.rank != y_pred.type.rank or any(
            a != b for a, b in zip(y_true.type.shape, y_pred.type.shape)):
        raise OpTypeError(f"{fn}: y_true and y_pred must have the same shape, got y_true "
                          f"{y_true.type} and y_pred {y_pred.type}")


@_graph_fn
def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """mean over ``axis`` of -(y log p + (1 - y) log(1 - p)), p clipped to [eps, 1-eps];
    from logits x: max(x, 0) - x y + log(1 + exp(-|x|))."""
    y_true, y_pred = _same_rank(y_true, y_pred)
    _check_same_shape("binary_crossentropy", y_true, y_pred)
    if label_smoothing:
        y_true = M.add(M.mul(y_true, 1.0 - label_smoothing), 0.5 * label_smoothing)
    logits = y_pred if from_logits else _logits_of(y_pred, "sigmoid")
    if logits is not None:
        x = logits
        bce = M.add(M.sub(M.maximum(x, 0.0), M.mul(x, y_true)), M.softplus(M.neg(M.abs_(x))))
    else:
        p = M.clip(y_pred, M.EPSILON, 1.0 - M.EPSILON)
        bce = M.neg(M.add(M.mul(y_true, M.log(p)),
                          M.mul(M.sub(1.0, y_true), M.log(M.sub(1.0, p)))))
    return M.mean(bce, axis)


@_graph_fn
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """-sum(y_true * log(p)) over ``axis``: p = softmax(logits) (stably, as log_softmax),
    or the probabilities renormalized to sum 1 and clipped to [eps, 1-eps]."""
    y_true = _float(y_true, y_pred)
    _check_same_shape("categorical_crossentropy", y_true, y_pred)
    if label_smoothing:
        n = y_true.type.shape[axis]
        y_true = M.add(M.mul(y_true, 1.0 - label_smoothing), label_smoothing / n)
    logits = y_pred if from_logits else _logits_of(y_pred, "softmax")
    if logits is not None:
        logp = M.log_softmax(logits, axis)
    else:
        p = M.div(y_pred, M.sum_(y_pred, axis, keepdims=True))
        logp = M.log(M.clip(p, M.EPSILON, 1.0 - M.EPSILON))
    return M.neg(M.sum_(M.mul(y_true, logp), axis))


@_graph_fn
def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """-log p[label]: labels are integers of shape y_pred.shape[:-1] (or with a last axis
    of 1); from probabilities, log(clip(p)) is renormalized by a log-softmax (as
    TensorFlow's ``sparse_softmax_cross_entropy_with_logits`` on log-probabilities)."""
    if ignore_class is not None:
        raise NotImplementedError("sparse_categorical_crossentropy: ignore_class is not "
                                  "supported yet")
    if axis not in (-1, y_pred.type.rank - 1):
        raise ValueError(f"Only axis=-1 is currently supported. Received: axis={axis}")
    if y_true.type.rank == y_pred.type.rank and y_true.type.shape[-1] == 1:
        y_true = M.squeeze_last(y_true)
    if y_true.type.shape != y_pred.type.shape[:-1]:
        raise OpTypeError(f"sparse_categorical_crossentropy: labels of shape "
                          f"{y_true.type} do not fit predictions {y_pred.type} (expected integer "
                          f"labels of shape y_pred.shape[:-1], optionally with a last axis of 1)")
    logits = y_pred if from_logits else _logits_of(y_pred, "softmax")
    if logits is None:
        logits = M.log(M.clip(y_pred, M.EPSILON, 1.0 - M.EPSILON))
    oh = M.one_hot(y_true, y_pred.type.shape[-1], y_pred.dtype)
    return M.neg(M.sum_(M.mul(oh, M.log_softmax(logits, -1)), -1))


# -- Loss objects -------------------------------------------------------------------------

def reduce_weighted_values(values: Value, sample_weight: Value | None, reduction):
    """Keras' ``reduce_weighted_values``: weight, then reduce."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"Invalid value for argument `reduction`. Expected one of "
                         f"{set(REDUCTIONS)}. Received: reduction={reduction}")
    sw = None
    if sample_weight is not None:
        sw = M.cast(sample_weight, values.dtype)
        values, sw = M.squeeze_or_expand_to_same_rank(values, sw)
        values = M.mul(values, M.broadcast_weights(sw, values))
    if reduction in (None, "none") or values.type.rank == 0:
        return values
    if reduction == "sum":
        return M.sum_(values)
    if reduction == "mean_with_sample_weight" and sw is not None:
        return M.divide_no_nan(M.sum_(values), M.sum_(sw))
    return M.mean(values)   # sum_over_batch_size / mean: sum / number of values


class Loss:
    """Base of Keras losses: subclasses implement ``call(y_true, y_pred)`` (per-sample
    values, IR); ``__call__`` weights and reduces."""

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in REDUCTIONS:
            raise ValueError(f"Invalid value for argument `reduction`. Expected one of "
                             f"{set(REDUCTIONS)}. Received: reduction={reduction}")
        self.name = name or to_snake_case(type(self).__name__)
        self.reduction = reduction
        self.dtype = dtype or "float32"

    def call(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred)")

    def __call__(self, y_true, y_pred, sample_weight=None):
        if isinstance(y_pred, Value):
            return reduce_weighted_values(self.call(y_true, y_pred), sample_weight, self.reduction)
        sw = None if sample_weight is None else np.asarray(sample_weight, np.float32)

        def build(yt, yp, w=None):
            return reduce_weighted_values(self.call(yt, yp), w, self.reduction)
        return M.run_eager(build, np.asarray(y_true), np.asarray(y_pred, np.float32), sw)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class LossFunctionWrapper(Loss):
    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None), reduction=reduction,
                         dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        fn = getattr(self.fn, "_fn", self.fn)
        y_true, y_pred = M.squeeze_or_expand_to_same_rank(y_true, y_pred)
        return fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


def _wrapper_class(cls_name, fn, default_name, params=()):
    """A Keras loss class: ``__init__(*params, reduction=..., name=..., dtype=None)``."""
    def __init__(self, *args, reduction="sum_over_batch_size", name=default_name, dtype=None, **kw):
        names = [p for p, _ in params]
        if len(args) > len(names):
            raise TypeError(f"{cls_name} takes at most {len(names)} positional arguments")
        given = dict(zip(names, args))
        for k in kw:
            if k not in names:
                raise TypeError(f"{cls_name}.__init__() got an unexpected keyword argument {k!r}")
        given.update(kw)
        fn_kw = {p: given.get(p, d) for p, d in params}
        LossFunctionWrapper.__init__(self, fn, reduction=reduction, name=name, dtype=dtype, **fn_kw)
        for k, v in fn_kw.items():
            setattr(self, k, v)
    return type(cls_name, (LossFunctionWrapper,), {"__init__": __init__, "__doc__": fn.__doc__})


_CE = (("from_logits", False), ("label_smoothing", 0.0), ("axis", -1))
MeanSquaredError = _wrapper_class("MeanSquaredError", mean_squared_error, "mean_squared_error")
MeanAbsoluteError = _wrapper_class("MeanAbsoluteError", mean_absolute_error, "mean_absolute_error")
MeanAbsolutePercentageError = _wrapper_class("MeanAbsolutePercentageError",
                                             mean_absolute_percentage_error,
                                             "mean_absolute_percentage_error")
MeanSquaredLogarithmicError = _wrapper_class("MeanSquaredLogarithmicError",
                                             mean_squared_logarithmic_error,
                                             "mean_squared_logarithmic_error")
Huber = _wrapper_class("Huber", huber, "huber_loss", (("delta", 1.0),))
LogCosh = _wrapper_class("LogCosh", log_cosh, "log_cosh")
Hinge = _wrapper_class("Hinge", hinge, "hinge")
SquaredHinge = _wrapper_class("SquaredHinge", squared_hinge, "squared_hinge")
CategoricalHinge = _wrapper_class("CategoricalHinge", categorical_hinge, "categorical_hinge")
KLDivergence = _wrapper_class("KLDivergence", kl_divergence, "kl_divergence")
Poisson = _wrapper_class("Poisson", poisson, "poisson")
CosineSimilarity = _wrapper_class("CosineSimilarity", cosine_similarity, "cosine_similarity",
                                  (("axis", -1),))
BinaryCrossentropy = _wrapper_class("BinaryCrossentropy", binary_crossentropy,
                                    "binary_crossentropy", _CE)
CategoricalCrossentropy = _wrapper_class("CategoricalCrossentropy", categorical_crossentropy,
                                         "categorical_crossentropy", _CE)
SparseCategoricalCrossentropy = _wrapper_class(
    "SparseCategoricalCrossentropy", sparse_categorical_crossentropy,
    "sparse_categorical_crossentropy",
    (("from_logits", False), ("ignore_class", None), ("axis", -1)))

# Keras names and legacy aliases (keras.losses.get)
_FUNCTIONS = {
    "mean_squared_error": mean_squared_error, "mse": mean_squared_error, "MSE": mean_squared_error,
    "mean_absolute_error": mean_absolute_error, "mae": mean_absolute_error,
    "MAE": mean_absolute_error,
    "mean_absolute_percentage_error": mean_absolute_percentage_error,
    "mape": mean_absolute_percentage_error, "MAPE": mean_absolute_percentage_error,
    "mean_squared_logarithmic_error": mean_squared_logarithmic_error,
    "msle": mean_squared_logarithmic_error, "MSLE": mean_squared_logarithmic_error,
    "huber": huber, "huber_loss": huber, "log_cosh": log_cosh, "logcosh": log_cosh,
    "hinge": hinge, "squared_hinge": squared_hinge, "categorical_hinge": categorical_hinge,
    "kl_divergence": kl_divergence, "kld": kl_divergence, "KLD": kl_divergence,
    "kullback_leibler_divergence": kl_divergence, "poisson": poisson,
    "cosine_similarity": cosine_similarity,
    "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
}
_CLASSES = {c.__name__: c for c in (
    MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError,
    Huber, LogCosh, Hinge, SquaredHinge, CategoricalHinge, KLDivergence, Poisson, CosineSimilarity,
    BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy)}


def get(identifier):
    """A loss from a name (``"mse"``, ``"categorical_crossentropy"``, ``"Huber"``), a
    ``Loss`` object or a function ``fn(y_true, y_pred)`` of IR Values."""
    if identifier is None or isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        if identifier in _FUNCTIONS:
            return _FUNCTIONS[identifier]
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
        raise ValueError(f"Could not interpret loss identifier: {identifier!r} (known losses: "
                         f"{', '.join(sorted(_FUNCTIONS))})")
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}")


def serialize(loss) -> str:
    for k, v in _FUNCTIONS.items():
        if v is loss:
            return k
    return getattr(loss, "name", getattr(loss, "__name__", repr(loss)))


__all__ = ["Loss", "LossFunctionWrapper", "get", "serialize", "reduce_weighted_values",
           *_CLASSES, *(k for k, fn in _FUNCTIONS.items() if globals().get(k) is fn)]
