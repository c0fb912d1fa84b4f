"""Training data for fit/evaluate: batches of arrays or of an iterable, the validation
split, class weights, sparse label checks (Keras' data adapters, for kiln)."""
from __future__ import annotations

import math

import numpy as np

from .. import random as _random


def _class_weights(y, class_weight: dict) -> np.ndarray:
    """Keras' ``class_weight_to_sample_weights``: the class of each sample (argmax of a
    one-hot row, or the label) -> its weight (1.0 for classes not in the dict)."""
    y = np.asarray(y)
    if y.ndim > 1:
        y = np.argmax(y, axis=-1) if y.shape[-1] != 1 else np.squeeze(y, axis=-1)
    y = np.round(y).astype(np.int64).reshape(len(y), -1)[:, 0]
    return np.array([class_weight.get(int(c), 1.0) for c in y], np.float32)


def _check_sparse_labels(y, name, pred_shape) -> np.ndarray:
    n_classes = pred_shape[-1]
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.floor(y)):
            raise ValueError(f"sparse_categorical_crossentropy (output '{name}'): labels must be "
                             f"integer class indices, got non-integer values")
    if y.size and (y.min() < 0 or (n_classes is not None and y.max() >= n_classes)):
        bad = y.min() if y.min() < 0 else y.max()
        raise ValueError(f"sparse_categorical_crossentropy (output '{name}'): label {int(bad)} is "
                         f"out of range: the model output has {n_classes} classes, so labels "
                         f"must be in [0, {n_classes - 1}]")
    return np.ascontiguousarray(y, dtype=np.int32)


def _split(x, y, sw, fraction):
    """The last ``fraction`` of the samples as validation data (before any shuffling)."""
    def n_of(a):
        if isinstance(a, dict):
            return len(next(iter(a.values())))
        if isinstance(a, (list, tuple)) and a and hasattr(a[0], "shape"):
            return len(a[0])
        return len(a)
    n = n_of(x)
    split_at = int(math.floor(n * (1.0 - fraction)))
    if split_at == 0 or split_at == n:
        raise ValueError(f"Training data contains {n} samples, which is not sufficient to split "
                         f"it into a validation and training set as specified by "
                         f"`validation_split={fraction}`. Either provide more data, or a "
                         f"different value for the `validation_split` argument.")

    def cut(a, part):
        if a is None:
            return None
        if isinstance(a, dict):
            return {k: cut(v, part) for k, v in a.items()}
        if isinstance(a, (list, tuple)) and a and hasattr(a[0], "shape"):
            return [cut(v, part) for v in a]
        a = np.asarray(a)
        return a[:split_at] if part == 0 else a[split_at:]
    return cut(x, 0), cut(y, 0), cut(sw, 0), (cut(x, 1), cut(y, 1), cut(sw, 1)) if sw is not None \
        else (cut(x, 1), cut(y, 1))


def _is_batch_iterable(x) -> bool:
    """An iterable of batches (a generator, a dataset), not array-like data."""
    if x is None or isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)):
        return False
    return hasattr(x, "__iter__") and not hasattr(x, "__array__")


def _predict_inputs(data, steps=None):
    """The inputs of each batch of an iterable for ``predict``: a batch is ``x``, or a
    tuple ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)`` whose first part is used (as
    Keras unpacks dataset elements)."""
    for i, batch in enumerate(data):
        if steps is not None and i >= steps:
            return
        if isinstance(batch, tuple) and len(batch) in (1, 2, 3):
            batch = batch[0]
        yield batch


class _ArraySource:
    """Batches of aligned arrays: a fresh permutation per pass when shuffling (drawn from
    kiln's seeded generator), slices as contiguous views. With ``steps`` per epoch the
    position carries over between epochs (a new pass begins when the data runs out)."""

    def __init__(self, xs, ys, sws, batch_size, shuffle, steps=None):
        self.parts = (len(xs), len(ys))
        self.arrays = [*xs, *ys, *sws]
        self.n = len(xs[0])
        self.bs = batch_size
        self.shuffle = bool(shuffle)          # "batch" (Keras' chunked shuffle) shuffles fully
        self.steps = steps or math.ceil(self.n / batch_size)
        self._limit = steps
        self._cur = None
        self._pos = 0

    def first(self):
        nx, ny = self.parts
        return self.arrays[:nx], self.arrays[nx:nx + ny], self.arrays[nx + ny:]

    def _new_pass(self):
        # a shuffled pass gathers each batch when it is cut (no shuffled copy of the
        # whole data set: no memory spike, and the batch is in cache when it runs)
        self._cur = _random.generator().permutation(self.n) if self.shuffle else self.arrays
        self._pos = 0

    def _cut(self, s):
        nx, ny = self.parts
        if self.shuffle:
            idx = self._cur[s:s + self.bs]
            b = [a[idx] for a in self.arrays]
        else:
            b = [a[s:s + self.bs] for a in self._cur]
        return b[:nx], b[nx:nx + ny], b[nx + ny:]

    def epoch(self):
        if self._limit is None:
            self._new_pass()
            for s in range(0, self.n, self.bs):
                yield self._cut(s)
            return
        for _ in range(self._limit):
            if self._cur is None or self._pos >= self.n:
                self._new_pass()
            s = self._pos
            self._pos += self.bs
            yield self._cut(s)


class _IterSource:
    """Batches from an iterable yielding ``(x, y)`` or ``(x, y, sample_weight)``. A
    re-iterable (a list-like dataset) starts over each epoch; an iterator (a generator)
    continues where the last epoch stopped, as Keras does with ``steps_per_epoch``."""

    def __init__(self, model, data, steps=None, class_weight=None):
        self.model, self.data, self.class_weight = model, data, class_weight
        self._limit = steps
        try:
            self.steps = steps or len(data)
        except TypeError:
            self.steps = steps          # unknown: the bar shows "Unknown" until the end
        self._once = iter(data) is data
        self._it = None
        self._pending = None
        self._epochs = 0

    def _prepare(self, batch):
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise ValueError(f"an iterable of batches must yield (x, y) or (x, y, "
                             f"sample_weight) tuples, got {type(batch).__name__}")
        sw = batch[2] if len(batch) == 3 else None
        try:
            return self.model._prepare_data(batch[0], batch[1], sw, self.class_weight)
        except ValueError as e:
            if getattr(self.data, "_single_rows", None):    # a kiln.data.Dataset of rows
                raise ValueError(f"{e} (the Dataset's elements are single samples: call "
                                 f".batch(batch_size) on it)") from None
            raise

    def first(self):
        """The first batch (read ahead to build the step; it is still trained on)."""
        if self._it is None:
            self._it = iter(self.data)
            try:
                self._pending = self._prepare(next(self._it))
            except StopIteration:
                raise ValueError("the iterable of batches yielded nothing") from None
        return self._pending

    def epoch(self):
        if self._epochs and not self._once:
            self._it, self._pending = iter(self.data), None
        elif self._it is None:
            self.first()
        self._epochs += 1
        count = 0
        while self._limit is None or count < self._limit:
            if self._pending is not None:
                b, self._pending = self._pending, None
            else:
                try:
                    raw = next(self._it)
                except StopIteration:
                    return
                b = self._prepare(raw)
            yield b
            count += 1
