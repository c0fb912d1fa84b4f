"""``kiln.metrics``: Keras 3's streaming metrics, written as IR.

A metric is state plus two IR functions:

- ``state_specs()``: its accumulators, ``{name: initial numpy value}``;
- ``update(state, y_true, y_pred, sample_weight) -> new state`` (Values);
- ``result_value(state) -> Value`` (a scalar).

A compiled training step holds the accumulators as state parameters updated in place
each batch and returns ``result_value`` as an output, so the progress bar sees the
running value; fit resets them at each epoch (streaming semantics, as Keras). Called
eagerly (``update_state`` / ``result`` / ``reset_state`` on numpy arrays) the same IR
runs through the interpreter with the state held here, so every metric is also usable
and testable on its own.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Value
from ..ir.types import DType
from . import losses as _losses
from . import mathops as M
from .naming import to_snake_case


class Metric:
    """Base class: subclasses define ``state_specs``, ``update`` and ``result_value``."""

    def __init__(self, name=None, dtype=None):
        self.name = name or to_snake_case(type(self).__name__)
        self.dtype = dtype or "float32"
        self._state = None

    # -- the IR side ----------------------------------------------------------------------
    def state_specs(self) -> dict:
        raise NotImplementedError

    def update(self, state: dict, y_true, y_pred, sample_weight=None) -> dict:
        raise NotImplementedError

    def result_value(self, state: dict) -> Value:
        raise NotImplementedError

    # -- the eager (numpy) side -------------------------------------------------------------
    def _ensure_state(self):
        if self._state is None:
            self._state = {k: np.array(v, copy=True) for k, v in self.state_specs().items()}

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate a batch (numpy arrays)."""
        self._ensure_state()
        names = list(self._state)
        sw = None if sample_weight is None else np.asarray(sample_weight, np.float32)

        def build(yt, yp, w=None, params=None):
            new = self.update(params, yt, yp, w)
            return [M.const(0.0)], {k: new[k] for k in names}
        _, upd = M.run_eager(build, np.asarray(y_true), np.asarray(y_pred, np.float32), sw,
                             params=self._state)
        self._state.update(upd)

    def result(self):
        """The current value (a numpy scalar)."""
        self._ensure_state()
        return M.run_eager(lambda params: self.result_value(params), params=self._state)

    def reset_state(self):
        self._state = None

    @property
    def variables(self) -> list:
        self._ensure_state()
        return [v.copy() for v in self._state.values()]

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def samplewise(values: Value, sample_weight):
    """Keras' ``reduce_to_samplewise_values``: per-sample means of ``values`` (weighted),
    and the weights to count."""
    values = M.cast(values, DType.f32)
    if sample_weight is not None:
        sw = M.cast(sample_weight, DType.f32)
        values, sw = M.squeeze_or_expand_to_same_rank(values, sw)
        if values.type.rank > sw.type.rank:
            values = M.mean(values, tuple(range(sw.type.rank, values.type.rank)))
        sw = M.broadcast_weights(sw, values)
        if sw.type.shape != values.type.shape:
            sw = M.g_().op("broadcast_to", sw, shape=values.type.shape)
        values = M.mul(values, sw)
        if sw.type.rank > 1:
            sw = M.mean(sw, tuple(range(1, sw.type.rank)))
        sample_weight = sw
    if values.type.rank > 1:
        values = M.mean(values, tuple(range(1, values.type.rank)))
    return values, sample_weight


class Mean(Metric):
    """The weighted mean of the values given to ``update_state(values, sample_weight)``."""

    def state_specs(self):
        return {"total": np.float32(0), "count": np.float32(0)}

    def update_values(self, state, values, sample_weight=None):
        values, sw = samplewise(values, sample_weight)
        total = M.add(state["total"], M.sum_(values))
        if sw is not None:
            n = M.sum_(sw)
        elif values.type.rank >= 1:
            n = M.batch_size(values)
        else:
            n = M.const(1.0)
        return {"total": total, "count": M.add(state["count"], n)}

    def update(self, state, y_true, y_pred=None, sample_weight=None):
        return self.update_values(state, y_true, sample_weight)

    def result_value(self, state):
        return M.divide_no_nan(state["total"], state["count"])

    def update_state(self, values, sample_weight=None):
        self._ensure_state()
        names = list(self._state)
        sw = None if sample_weight is None else np.asarray(sample_weight, np.float32)

        def build(v, w=None, params=None):
            new = self.update_values(params, v, w)
            return [M.const(0.0)], {k: new[k] for k in names}
        _, upd = M.run_eager(build, np.asarray(values, np.float32), sw, params=self._state)
        self._state.update(upd)


class Sum(Mean):
    """The weighted sum of the values."""

    def result_value(self, state):
        return state["total"]


class MeanMetricWrapper(Mean):
    """The mean of ``fn(y_true, y_pred, **kwargs)`` (per-sample values)."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None), dtype=dtype)
        self._fn = getattr(fn, "_fn", fn)
        self._fn_kwargs = kwargs

    def update(self, state, y_true, y_pred, sample_weight=None):
        return self.update_values(state, self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return Metric.update_state(self, y_true, y_pred, sample_weight)


# -- accuracy ----------------------------------------------------------------------------------

def accuracy(y_true, y_pred):
    y_true, y_pred = M.squeeze_or_expand_to_same_rank(M.cast(y_true, y_pred.dtype), y_pred)
    return M.mean(M.cast(M.equal(y_true, y_pred), DType.f32), -1)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_true, y_pred = M.squeeze_or_expand_to_same_rank(M.cast(y_true, y_pred.dtype), y_pred)
    pred = M.cast(M.greater(y_pred, np.float32(threshold)), y_true.dtype)
    return M.mean(M.cast(M.equal(y_true, pred), DType.f32), -1)


def categorical_accuracy(y_true, y_pred):
    t = M.argmax(y_true, -1)
    p = M.argmax(y_pred, -1)
    return M.cast(M.equal(t, p), DType.f32)


def sparse_categorical_accuracy(y_true, y_pred):
    if y_true.type.rank == y_pred.type.rank and y_true.type.shape[-1] == 1:
        y_true = M.squeeze_last(y_true)
    p = M.argmax(y_pred, -1)
    t = y_true
    if t.dtype.is_float:          # labels given as floats: compare as floats (Keras casts argmax)
        p = M.cast(p, t.dtype)
    else:
        t = M.cast(t, DType.i64)
    return M.cast(M.equal(t, p), DType.f32)


def _in_top_k(target: Value, y_pred: Value, k: int) -> Value:
    """TensorFlow's ``in_top_k``: the target class is in the top k when fewer than k
    classes score strictly higher (ties at the boundary count as in)."""
    oh = M.one_hot(target, y_pred.type.shape[-1], y_pred.dtype)
    score = M.sum_(M.mul(oh, y_pred), -1, keepdims=True)
    higher = M.sum_(M.cast(M.greater(y_pred, score), DType.f32), -1)
    return M.cast(M.g_().op("less", higher, M.const(float(k))), DType.f32)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    return _in_top_k(M.argmax(y_true, -1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    if y_true.type.rank == y_pred.type.rank and y_true.type.shape[-1] == 1:
        y_true = M.squeeze_last(y_true)
    return _in_top_k(y_true, y_pred, k)


def _wrapper(cls_name, fn, default_name, params=()):
    def __init__(self, *args, name=default_name, dtype=None, **kw):
        names = [p for p, _ in params]
        given = dict(zip(names, args))
        for key in kw:
            if key not in names:
                raise TypeError(f"{cls_name}.__init__() got an unexpected keyword argument "
                                f"{key!r}")
        given.update(kw)
        fn_kw = {p: given.get(p, d) for p, d in params}
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **fn_kw)
        for key, v in fn_kw.items():
            setattr(self, key, v)
    return type(cls_name, (MeanMetricWrapper,), {"__init__": __init__})


Accuracy = _wrapper("Accuracy", accuracy, "accuracy")
BinaryAccuracy = _wrapper("BinaryAccuracy", binary_accuracy, "binary_accuracy",
                          (("threshold", 0.5),))
CategoricalAccuracy = _wrapper("CategoricalAccuracy", categorical_accuracy, "categorical_accuracy")
SparseCategoricalAccuracy = _wrapper("SparseCategoricalAccuracy", sparse_categorical_accuracy,
                                     "sparse_categorical_accuracy")
TopKCategoricalAccuracy = _wrapper("TopKCategoricalAccuracy", top_k_categorical_accuracy,
                                   "top_k_categorical_accuracy", (("k", 5),))
SparseTopKCategoricalAccuracy = _wrapper("SparseTopKCategoricalAccuracy",
                                         sparse_top_k_categorical_accuracy,
                                         "sparse_top_k_categorical_accuracy", (("k", 5),))
MeanSquaredError = _wrapper("MeanSquaredError", _losses.mean_squared_error, "mean_squared_error")
MeanAbsoluteError = _wrapper("MeanAbsoluteError", _losses.mean_absolute_error,
                             "mean_absolute_error")
MeanAbsolutePercentageError = _wrapper("MeanAbsolutePercentageError",
                                       _losses.mean_absolute_percentage_error,
                                       "mean_absolute_percentage_error")


class RootMeanSquaredError(MeanMetricWrapper):
    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(_losses.mean_squared_error, name=name, dtype=dtype)

    def update(self, state, y_true, y_pred, sample_weight=None):
        y_true, y_pred = M.squeeze_or_expand_to_same_rank(M.cast(y_true, y_pred.dtype), y_pred)
        return self.update_values(state, M.square(M.sub(y_pred, y_true)), sample_weight)

    def result_value(self, state):
        return M.sqrt(M.divide_no_nan(state["total"], state["count"]))


# -- confusion-matrix metrics ------------------------------------------------------------------

def _confusion(y_true, y_pred, thresholds, sample_weight, which):
    """Sums over all elements of the (weighted) confusion conditions at each threshold:
    predicted positive is ``y_pred > threshold``; a label is positive when nonzero.
    Returns {condition: f32[T]}."""
    y_pred = M.cast(y_pred, DType.f32)
    y_true = M.cast(y_true, DType.f32)
    y_true, y_pred = M.squeeze_or_expand_to_same_rank(y_true, y_pred)
    th = M.g_().constant(np.asarray(thresholds, np.float32), DType.f32)
    pred = M.g_().op("greater", M.expand_last(y_pred), th)           # [..., T]
    label = M.expand_last(M.not_equal(y_true, 0.0))                   # [..., 1]
    w = None
    if sample_weight is not None:
        w = M.cast(sample_weight, DType.f32)
        w = M.expand_last(M.broadcast_weights(w, y_pred))
    axes = tuple(range(pred.type.rank - 1))
    out = {}
    conds = {"tp": (label, pred), "fp": (M.g_().op("logical_not", label), pred),
             "fn": (label, M.g_().op("logical_not", pred)),
             "tn": (M.g_().op("logical_not", label), M.g_().op("logical_not", pred))}
    for c in which:
        a, b = conds[c]
        hit = M.cast(M.logical_and(a, b), DType.f32)
        if w is not None:
            hit = M.mul(hit, w)
        out[c] = M.sum_(hit, axes) if axes else hit
    return out


def _parse_thresholds(thresholds, default):
    if thresholds is None:
        return [default]
    ts = [float(t) for t in (thresholds if isinstance(thresholds, (list, tuple)) else [thresholds])]
    if any(not 0 <= t <= 1 for t in ts):
        raise ValueError(f"Threshold values must be in [0, 1]. Received: {thresholds}")
    return ts


class _ConfusionMetric(Metric):
    _conds = ()

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if top_k is not None or class_id is not None:
            raise NotImplementedError(f"{type(self).__name__}: top_k and class_id are not "
                                      f"supported yet")
        self.init_thresholds = thresholds
        self.thresholds = _parse_thresholds(thresholds, 0.5)
        self.top_k, self.class_id = top_k, class_id

    def state_specs(self):
        return {c: np.zeros(len(self.thresholds), np.float32) for c in self._conds}

    def update(self, state, y_true, y_pred, sample_weight=None):
        d = _confusion(y_true, y_pred, self.thresholds, sample_weight, self._conds)
        return {c: M.add(state[c], d[c]) for c in self._conds}

    def _pick(self, v):
        if len(self.thresholds) == 1:
            return M.reshape(v, ())
        return v


class Precision(_ConfusionMetric):
    """tp / (tp + fp) of ``y_pred > threshold`` (default 0.5)."""
    _conds = ("tp", "fp")

    def result_value(self, s):
        return self._pick(M.divide_no_nan(s["tp"], M.add(s["tp"], s["fp"])))


class Recall(_ConfusionMetric):
    """tp / (tp + fn) of ``y_pred > threshold`` (default 0.5)."""
    _conds = ("tp", "fn")

    def result_value(self, s):
        return self._pick(M.divide_no_nan(s["tp"], M.add(s["tp"], s["fn"])))


def _count_metric(cls_name, cond):
    class C(_ConfusionMetric):
        _conds = (cond,)

        def __init__(self, thresholds=None, name=None, dtype=None):
            super().__init__(thresholds=thresholds, name=name or to_snake_case(cls_name),
                             dtype=dtype)

        def result_value(self, s):
            return self._pick(s[cond])
    C.__name__ = C.__qualname__ = cls_name
    return C


TruePositives = _count_metric("TruePositives", "tp")
FalsePositives = _count_metric("FalsePositives", "fp")
TrueNegatives = _count_metric("TrueNegatives", "tn")
FalseNegatives = _count_metric("FalseNegatives", "fn")


class AUC(Metric):
    """Area under the ROC curve (Keras' ``AUC``, ``curve="ROC"``), from confusion counts at
    ``num_thresholds`` thresholds ``[-eps, 1/(n-1), ..., (n-2)/(n-1), 1+eps]`` and the
    Riemann sum of ``summation_method`` ("interpolation": trapezoids; "minoring";
    "majoring")."""

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        super().__init__(name=name or "auc", dtype=dtype)
        if curve != "ROC":
            raise NotImplementedError(f"AUC: curve={curve!r} is not supported yet (only 'ROC')")
        if multi_label or label_weights is not None:
            raise NotImplementedError("AUC: multi_label and label_weights are not supported yet")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"Invalid AUC summation method value \"{summation_method}\". "
                             f"Expected values are [\"interpolation\", \"majoring\", \"minoring\"]")
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            self.num_thresholds = len(inner) + 2
        else:
            if num_thresholds <= 1:
                raise ValueError(f"Argument `num_thresholds` must be an integer > 1. "
                                 f"Received: num_thresholds={num_thresholds}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (self.num_thresholds - 1) for i in range(self.num_thresholds - 2)]
        self.thresholds = [0.0 - M.EPSILON] + inner + [1.0 + M.EPSILON]
        self.curve, self.summation_method, self.from_logits = curve, summation_method, from_logits

    def state_specs(self):
        return {c: np.zeros(self.num_thresholds, np.float32) for c in ("tp", "fp", "tn", "fn")}

    def update(self, state, y_true, y_pred, sample_weight=None):
        if self.from_logits:
            y_pred = M.g_().op("sigmoid", y_pred)
        d = _confusion(y_true, y_pred, self.thresholds, sample_weight, ("tp", "fp", "tn", "fn"))
        return {c: M.add(state[c], d[c]) for c in d}

    def result_value(self, s):
        n = self.num_thresholds
        y = M.divide_no_nan(s["tp"], M.add(s["tp"], s["fn"]))
        x = M.divide_no_nan(s["fp"], M.add(s["fp"], s["tn"]))

        def cut(v, lo, hi):
            return M.g_().op("slice", v, axes=(0,), begin=(lo,), end=(hi,))
        y0, y1 = cut(y, 0, n - 1), cut(y, 1, n)
        if self.summation_method == "interpolation":
            h = M.div(M.add(y0, y1), 2.0)
        elif self.summation_method == "minoring":
            h = M.minimum(y0, y1)
        else:
            h = M.maximum(y0, y1)
        return M.sum_(M.mul(M.sub(cut(x, 0, n - 1), cut(x, 1, n)), h))


# -- lookup ------------------------------------------------------------------------------------

_CLASSES = {c.__name__: c for c in (
    Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, MeanSquaredError, MeanAbsoluteError,
    MeanAbsolutePercentageError, RootMeanSquaredError, Mean, Sum, AUC, Precision, Recall,
    TruePositives, FalsePositives, TrueNegatives, FalseNegatives)}
_FUNCTIONS = {
    "accuracy": accuracy, "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
}


def get(identifier):
    """A Metric from a name (``"mse"``, ``"auc"``, ``"Precision"``, ...), a Metric, a Metric
    class, or a function ``fn(y_true, y_pred)`` (wrapped in a MeanMetricWrapper). The
    ``"accuracy"``/``"acc"`` shorthands are resolved by ``compile`` (see
    ``resolve_accuracy``)."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
        snake = {to_snake_case(k): c for k, c in _CLASSES.items()}
        if identifier in snake:
            return snake[identifier](name=identifier)
        fn = _FUNCTIONS.get(identifier)
        if fn is None:
            try:
                fn = _losses._FUNCTIONS[identifier]
            except KeyError:
                raise ValueError(f"Could not interpret metric identifier: {identifier!r}") from None
        return MeanMetricWrapper(fn, name=identifier)
    if callable(identifier):
        return MeanMetricWrapper(identifier, name=getattr(identifier, "__name__", "metric"))
    raise ValueError(f"Could not interpret metric identifier: {identifier!r}")


def resolve_accuracy(identifier: str, y_true_shape, y_pred_shape) -> Metric:
    """Keras' ``compile_utils.get_metric`` for "accuracy"/"acc": binary when the output has
    one unit; sparse categorical when the labels have a lower rank (or a last dim of 1
    with several outputs); else categorical. The metric keeps the name given."""
    is_binary = y_pred_shape[-1] == 1
    is_sparse = len(y_true_shape) < len(y_pred_shape) or (y_true_shape[-1] == 1
                                                          and y_pred_shape[-1] > 1)
    if is_binary:
        return BinaryAccuracy(name=identifier)
    if is_sparse:
        return SparseCategoricalAccuracy(name=identifier)
    return CategoricalAccuracy(name=identifier)


__all__ = ["Metric", "Mean", "Sum", "MeanMetricWrapper", "get", "resolve_accuracy", *_CLASSES,
           *_FUNCTIONS]
