"""Scaling, one-hot, splits, k-fold and cross_validate against numpy written here."""
import numpy as np
import pytest

import kiln
from kiln.data import (Dataset, MinMaxScaler, StandardScaler, kfold_indices, min_max_scale,
                       standardize)
from kiln.utils import cross_validate, to_categorical, train_test_split, train_val_test_split


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(3.0, 2.0, size=(500, 6)).astype(np.float32)


def test_standardize_and_min_max(x):
    z = standardize(x)
    np.testing.assert_allclose(z, (x - x.mean(0)) / x.std(0), rtol=1e-5, atol=1e-5)
    m = min_max_scale(x, feature_range=(-1, 1))
    lo, hi = x.min(0), x.max(0)
    np.testing.assert_allclose(m, (x - lo) / (hi - lo) * 2 - 1, rtol=1e-5, atol=1e-6)
    s = MinMaxScaler().fit(x)
    np.testing.assert_allclose(s.inverse_transform(s.transform(x)), x, rtol=1e-5, atol=1e-5)
    const = np.ones((4, 2), np.float32)
    assert np.all(min_max_scale(const) == 0) and np.all(np.isfinite(standardize(const)))
    assert z.dtype == np.float32 and standardize(np.arange(4)).dtype == np.float32


def test_scalers_stream_a_dataset(x):
    ds = Dataset.from_tensor_slices((x, np.zeros(len(x)))).batch(37)
    a, b = StandardScaler().fit(ds), StandardScaler().fit(x.astype(np.float64))
    np.testing.assert_allclose(a.mean, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(a.std, x.astype(np.float64).std(0), rtol=1e-10)
    assert a.count == b.count == 500
    m = MinMaxScaler().fit(ds)
    np.testing.assert_array_equal(m.data_min, x.min(0))
    scaled = list(ds.map(lambda u, v: (a.transform(u), v)))
    np.testing.assert_allclose(np.concatenate([s[0] for s in scaled]), a.transform(x))
    images = np.random.default_rng(1).random((10, 4, 4, 3))
    per_channel = StandardScaler(axis=(0, 1, 2)).fit(images)
    np.testing.assert_allclose(per_channel.mean, images.mean((0, 1, 2)))


def test_to_categorical():
    y = np.array([0, 2, 1, 2])
    np.testing.assert_array_equal(to_categorical(y), np.eye(3)[y])
    np.testing.assert_array_equal(to_categorical(y[:, None], num_classes=5), np.eye(5)[y])
    two_d = to_categorical(np.array([[0, 1], [2, 0]]))
    assert two_d.shape == (2, 2, 3) and two_d[1, 0, 2] == 1
    assert to_categorical(y).dtype == np.float32
    with pytest.raises(ValueError, match="out of range"):
        to_categorical(y, num_classes=2)
    with pytest.raises(ValueError, match="integer class indices"):
        to_categorical(np.array([0.5]))


def test_train_test_split_seeded_disjoint():
    x, y = np.arange(100) * 10, np.arange(100)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, seed=0)
    assert len(xte) == 25 and np.array_equal(xtr, ytr * 10) and np.array_equal(xte, yte * 10)
    assert sorted(np.r_[ytr, yte].tolist()) == list(range(100))
    again = train_test_split(x, y, test_size=0.25, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(again, (xtr, xte, ytr, yte)))
    assert not np.array_equal(train_test_split(x, test_size=0.25, seed=1)[1], xte)
    keep = train_test_split(x, test_size=10, shuffle=False)
    assert np.array_equal(keep[1], x[90:])


def test_stratified_three_way_split():
    y = np.repeat(np.arange(4), [100, 50, 30, 20])                # imbalanced classes
    x = np.arange(len(y))
    (xtr, ytr), (xva, yva), (xte, yte) = train_val_test_split(x, y, val_size=0.1,
                                                              test_size=0.2, seed=3,
                                                              stratify=y)
    assert (len(xtr), len(xva), len(xte)) == (140, 20, 40)
    assert np.array_equal(y[xtr], ytr) and np.array_equal(y[xte], yte)
    assert sorted(np.r_[xtr, xva, xte].tolist()) == list(range(200))
    for part, frac in ((yva, 0.1), (yte, 0.2)):
        counts = np.bincount(part, minlength=4)
        assert np.all(np.abs(counts - np.array([100, 50, 30, 20]) * frac) <= 1), counts
    xa, xb, xc = train_val_test_split(x, val_size=0.1, test_size=0.1, seed=0)
    assert (len(xa), len(xb), len(xc)) == (160, 20, 20)
    onehot = train_val_test_split(x, val_size=0.1, test_size=0.2, seed=3,
                                  stratify=np.eye(4)[y])
    assert np.array_equal(onehot[2], xte)


def test_kfold_partitions():
    y = np.repeat([0, 1, 2], [30, 12, 8])
    folds = kfold_indices(50, k=5, seed=0, stratify=y)
    vals = np.concatenate([v for _, v in folds])
    assert sorted(vals.tolist()) == list(range(50))
    for tr, va in folds:
        assert len(va) == 10 and not set(tr) & set(va) and len(tr) + len(va) == 50
        assert np.bincount(y[va], minlength=3).tolist() == [6, 3, 1] or \
            np.all(np.abs(np.bincount(y[va], minlength=3) - [6, 2.4, 1.6]) <= 1)
    with pytest.raises(ValueError, match="k must be"):
        kfold_indices(10, k=1)


def test_cross_validate_on_digits():
    (x, y), _ = kiln.datasets.digits.load_data()
    x = (x.reshape(-1, 64) / 16).astype("float32")

    def build():
        m = kiln.Sequential([kiln.Input(shape=(64,)), kiln.layers.Dense(10, activation="softmax")])
        m.compile(optimizer=kiln.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
        return m
    kiln.utils.set_random_seed(0)
    r = cross_validate(build, x, y, k=5, fit_kwargs=dict(epochs=3, batch_size=64), seed=0,
                       stratify=True)
    assert len(r["folds"]) == 5 and set(r["mean"]) == {"loss", "accuracy"}
    accs = [f["accuracy"] for f in r["folds"]]
    assert r["mean"]["accuracy"] == pytest.approx(np.mean(accs))
    assert r["std"]["accuracy"] == pytest.approx(np.std(accs))
    assert min(accs) > 0.8                                  # a linear model learns digits
    with pytest.raises(ValueError, match="compiled model"):
        cross_validate(lambda: kiln.Sequential([kiln.Input(shape=(64,)),
                                                kiln.layers.Dense(10)]), x, y, k=2)


def test_normalize_l2_and_l1():
    from kiln.utils import normalize
    v = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(normalize(v), [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(normalize(v, axis=-1, order=1), [[3 / 7, 4 / 7], [0.0, 0.0]])
