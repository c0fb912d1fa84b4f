"""Array preprocessing: standardization and min-max scaling (fitted on arrays or streamed
over a Dataset), one-hot encoding, and seeded (optionally stratified) splits."""
from __future__ import annotations

import numpy as np


def _batches_of(data):
    """An array -> [array]; a Dataset / iterable of batches -> its batches (the first part
    of tuple elements, so a dataset of ``(x, y)`` batches scales ``x``)."""
    if isinstance(data, np.ndarray) or not hasattr(data, "__iter__") or isinstance(data, list):
        return [np.asarray(data)]
    return (np.asarray(b[0] if isinstance(b, tuple) else b) for b in data)


class StandardScaler:
    """``(x - mean) / std`` per feature (statistics over ``axis``, default the rows).
    ``fit`` takes an array or streams a Dataset / iterable of batches (Chan's parallel
    update in float64), so data larger than memory can be fitted."""

    def __init__(self, axis=0, epsilon=1e-7):
        self.axis, self.epsilon = axis, epsilon
        self.mean = self.std = None
        self.count = 0

    def fit(self, data):
        n, mean, m2 = 0, None, None
        for b in _batches_of(data):
            b = b.astype(np.float64)
            k = int(np.prod([b.shape[a] for a in np.atleast_1d(self.axis)]))
            if k == 0:
                continue
            bmk = b.mean(axis=self.axis, keepdims=True)
            bm2 = ((b - bmk) ** 2).sum(axis=self.axis)
            bm = np.squeeze(bmk, axis=self.axis)
            if mean is None:
                n, mean, m2 = k, bm, bm2
                continue
            delta = bm - mean
            total = n + k
            mean = mean + delta * (k / total)
            m2 = m2 + bm2 + delta ** 2 * (n * k / total)
            n = total
        if mean is None:
            raise ValueError("StandardScaler.fit: the data holds no samples")
        self.count, self.mean, self.std = n, mean, np.sqrt(m2 / n)
        return self

    def _check(self):
        if self.mean is None:
            raise RuntimeError("call fit() first (or use fit_transform)")

    def transform(self, x):
        self._check()
        x = np.asarray(x)
        dt = x.dtype if x.dtype.kind == "f" else np.float32
        return ((x - self.mean) / np.maximum(self.std, self.epsilon)).astype(dt)

    def inverse_transform(self, z):
        self._check()
        z = np.asarray(z)
        return (z * np.maximum(self.std, self.epsilon) + self.mean).astype(z.dtype)

    def fit_transform(self, x):
        return self.fit(x).transform(x)


class MinMaxScaler:
    """``x`` mapped linearly so each feature's minimum and maximum (over ``axis``) become
    ``feature_range``; a constant feature maps to the range's low end. ``fit`` streams a
    Dataset / iterable of batches as ``StandardScaler.fit`` does."""

    def __init__(self, feature_range=(0.0, 1.0), axis=0):
        lo, hi = feature_range
        if not lo < hi:
            raise ValueError(f"feature_range must be (low, high) with low < high, got "
                             f"{feature_range}")
        self.feature_range, self.axis = (float(lo), float(hi)), axis
        self.data_min = self.data_max = None

    def fit(self, data):
        lo = hi = None
        for b in _batches_of(data):
            if b.size == 0:
                continue
            bl, bh = b.min(axis=self.axis), b.max(axis=self.axis)
            lo = bl if lo is None else np.minimum(lo, bl)
            hi = bh if hi is None else np.maximum(hi, bh)
        if lo is None:
            raise ValueError("MinMaxScaler.fit: the data holds no samples")
        self.data_min, self.data_max = lo.astype(np.float64), hi.astype(np.float64)
        return self

    def _scale(self):
        if self.data_min is None:
            raise RuntimeError("call fit() first (or use fit_transform)")
        span = self.data_max - self.data_min
        lo, hi = self.feature_range
        return (hi - lo) / np.where(span == 0, 1.0, span), lo

    def transform(self, x):
        scale, lo = self._scale()
        x = np.asarray(x)
        dt = x.dtype if x.dtype.kind == "f" else np.float32
        return ((x - self.data_min) * scale + lo).astype(dt)

    def inverse_transform(self, z):
        scale, lo = self._scale()
        z = np.asarray(z)
        return ((z - lo) / scale + self.data_min).astype(z.dtype)

    def fit_transform(self, x):
        return self.fit(x).transform(x)


def standardize(x, axis=0, epsilon=1e-7):
    """``x`` standardized with its own mean and standard deviation over ``axis`` (to apply
    training statistics to other data, use ``StandardScaler``)."""
    return StandardScaler(axis, epsilon).fit_transform(x)


def min_max_scale(x, feature_range=(0.0, 1.0), axis=0):
    """``x`` scaled into ``feature_range`` by its own min / max over ``axis``."""
    return MinMaxScaler(feature_range, axis).fit_transform(x)


def normalize(x, axis=-1, order=2):
    """``keras.utils.normalize``: ``x`` divided by its ``order``-norm along ``axis`` (a
    zero vector stays zero)."""
    x = np.asarray(x)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis)


def to_categorical(x, num_classes=None, dtype="float32"):
    """Class indices -> one-hot rows (``keras.utils.to_categorical``): shape
    ``x.shape + (num_classes,)``, a trailing axis of size 1 dropped first."""
    x = np.asarray(x)
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)) or np.any(x != np.floor(x)):
            raise ValueError("to_categorical expects integer class indices")
    elif x.dtype.kind not in "iub":
        raise ValueError(f"to_categorical expects integer class indices, got dtype {x.dtype}")
    x = x.astype(np.int64)
    if x.ndim > 1 and x.shape[-1] == 1:
        x = x.reshape(x.shape[:-1])
    if x.size and x.min() < 0:
        raise ValueError(f"to_categorical: class indices must be >= 0, got {int(x.min())}")
    if num_classes is None:
        num_classes = int(x.max()) + 1 if x.size else 0
    elif x.size and x.max() >= num_classes:
        raise ValueError(f"to_categorical: class index {int(x.max())} is out of range for "
                         f"num_classes={num_classes}")
    out = np.zeros(x.shape + (int(num_classes),), dtype=dtype)
    np.put_along_axis(out, x[..., None], 1, axis=-1)
    return out


# -- splits -----------------------------------------------------------------------------------

def _count(frac, n, what) -> int:
    if isinstance(frac, (int, np.integer)) and not isinstance(frac, bool) and frac >= 1:
        k = int(frac)
    elif isinstance(frac, (float, int)) and 0 <= frac < 1:
        k = int(round(frac * n))
    else:
        raise ValueError(f"{what} must be a fraction in [0, 1) or a number of samples, got "
                         f"{frac!r}")
    return k


def _labels(stratify):
    y = np.asarray(stratify)
    if y.ndim > 1:
        y = np.argmax(y, axis=-1) if y.shape[-1] > 1 else y.reshape(len(y))
    return y


def _alloc(sizes: np.ndarray, total: int) -> np.ndarray:
    """Largest-remainder allocation of ``total`` in proportion to ``sizes``."""
    want = sizes * (total / sizes.sum())
    base = np.floor(want).astype(np.int64)
    order = np.argsort(-(want - base), kind="stable")
    base[order[:total - base.sum()]] += 1
    return base


def split_indices(n, sizes, seed=None, shuffle=True, stratify=None) -> list:
    """Index arrays of consecutive parts of ``range(n)``: one per entry of ``sizes`` (counts)
    and the rest first. Shuffled with ``default_rng(seed)``; with ``stratify`` (labels) each
    part holds every class in proportion (largest remainder)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n) if shuffle else np.arange(n)
    if stratify is None:
        parts, end = [], n
        for k in sizes[::-1]:
            parts.append(perm[end - k:end])
            end -= k
        return [perm[:end]] + parts[::-1]
    y = _labels(stratify)
    if len(y) != n:
        raise ValueError(f"stratify has {len(y)} labels for {n} samples")
    classes, inverse = np.unique(y[perm], return_inverse=True)
    members = [perm[inverse == c] for c in range(len(classes))]
    counts = np.array([len(m) for m in members])
    taken = np.zeros(len(classes), np.int64)
    chunks = [[] for _ in sizes]
    for j, k in enumerate(sizes):
        share = _alloc(counts.astype(np.float64), k)
        for c, m in enumerate(members):
            chunks[j].append(m[taken[c]:taken[c] + share[c]])
        taken += share
    rest = np.concatenate([m[t:] for m, t in zip(members, taken)])
    out = [rest] + [np.concatenate(c) if c else np.zeros(0, np.int64) for c in chunks]
    return [rng.permutation(p) if shuffle else np.sort(p) for p in out]


def _n_of(arrays):
    lens = {len(a) for a in arrays}
    if len(lens) != 1:
        raise ValueError(f"the arrays must have the same number of samples, got "
                         f"{[len(a) for a in arrays]}")
    return lens.pop()


def train_test_split(*arrays, test_size=0.2, seed=None, shuffle=True, stratify=None):
    """``(a_train, a_test)`` for each array, flattened as scikit-learn returns them:
    ``x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, seed=0)``."""
    if not arrays:
        raise ValueError("train_test_split needs at least one array")
    arrays = [np.asarray(a) for a in arrays]
    n = _n_of(arrays)
    k = _count(test_size, n, "test_size")
    if not 0 < k < n:
        raise ValueError(f"test_size={test_size} leaves an empty part of {n} samples")
    tr, te = split_indices(n, [k], seed, shuffle, stratify)
    return [part for a in arrays for part in (a[tr], a[te])]


def train_val_test_split(*arrays, val_size=0.1, test_size=0.1, seed=None, shuffle=True,
                         stratify=None):
    """Three parts as ``load_data`` returns two: ``(x_train, y_train), (x_val, y_val),
    (x_test, y_test)`` (one array given: ``x_train, x_val, x_test``). Sizes are fractions
    of all samples or counts; ``stratify`` (labels, e.g. ``y``) keeps class proportions."""
    if not arrays:
        raise ValueError("train_val_test_split needs at least one array")
    arrays = [np.asarray(a) for a in arrays]
    n = _n_of(arrays)
    kv, kt = _count(val_size, n, "val_size"), _count(test_size, n, "test_size")
    if kv + kt >= n:
        raise ValueError(f"val_size={val_size} and test_size={test_size} leave no training "
                         f"samples of {n}")
    parts = split_indices(n, [kv, kt], seed, shuffle, stratify)
    if len(arrays) == 1:
        return tuple(arrays[0][p] for p in parts)
    return tuple(tuple(a[p] for a in arrays) for p in parts)


def kfold_indices(n, k=5, seed=None, shuffle=True, stratify=None) -> list:
    """``[(train_idx, val_idx)] * k``: the folds partition ``range(n)`` (sizes differ by at
    most one; per class with ``stratify``)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= n:
        raise ValueError(f"k must be an integer in [2, {n}] (the number of samples), got {k!r}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n) if shuffle else np.arange(n)
    fold_of = np.empty(n, np.int64)
    if stratify is None:
        fold_of[perm] = np.arange(n) % k
    else:
        y = _labels(stratify)
        if len(y) != n:
            raise ValueError(f"stratify has {len(y)} labels for {n} samples")
        order = perm[np.argsort(y[perm], kind="stable")]    # classes together, shuffled within
        fold_of[order] = np.arange(n) % k
    idx = np.arange(n)
    return [(idx[fold_of != f], idx[fold_of == f]) for f in range(k)]
