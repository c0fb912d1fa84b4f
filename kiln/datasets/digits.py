"""The UCI handwritten digits: 1,797 images of 8x8 integer pixels (0..16), labels 0..9.

Shipped as ``kiln/datasets/data/digits.csv.gz``, a byte-for-byte copy of the file in
scikit-learn 1.9.1 (BSD-3-Clause; source, checksum and license in
``kiln/datasets/data/DIGITS_LICENSE.txt``). scikit-learn is not a dependency.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

PATH = Path(__file__).with_name("data") / "digits.csv.gz"
NUM_SAMPLES = 1797


def load_all():
    """All samples, in file order: ``x`` uint8 ``(1797, 8, 8)``, ``y`` uint8 ``(1797,)``."""
    with gzip.open(PATH, "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if data.shape != (NUM_SAMPLES, 65):
        raise ValueError(f"{PATH}: expected {NUM_SAMPLES} rows of 65 values, got {data.shape}")
    return data[:, :64].reshape(-1, 8, 8).astype(np.uint8), data[:, 64].astype(np.uint8)


def load_data(test_split: float = 0.2, seed: int = 113):
    """``(x_train, y_train), (x_test, y_test)`` as ``keras.datasets`` return them.

    - ``x_*``: uint8 arrays of shape ``(n, 8, 8)``, pixel values 0..16 (scale with
      ``x / 16.0``); ``y_*``: uint8 arrays of shape ``(n,)``, digits 0..9.
    - The split is fixed: the samples are shuffled by a permutation from
      ``numpy.random.default_rng(seed)`` and the last ``test_split`` fraction (rounded
      down) is the test set: 1,438 train / 359 test with the defaults. The same
      arguments always give the same arrays.
    """
    if not 0 <= test_split < 1:
        raise ValueError(f"test_split must be in [0, 1), got {test_split}")
    x, y = load_all()
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = x[perm], y[perm]
    n_train = len(x) - int(len(x) * test_split)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])
