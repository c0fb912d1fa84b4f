"""MNIST (28x28 handwritten digits), read from Keras' ``mnist.npz`` when you have it.

kiln does not ship MNIST and downloads nothing unless asked: ``load_data()`` reads
``path`` (or ``mnist.npz`` in kiln's cache, ``~/.kiln/datasets``); with ``download=True``
it fetches Keras' copy once through ``kiln.utils.get_file`` (sha256 checked).
"""
from __future__ import annotations

import os

import numpy as np

ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_data(path="mnist.npz", download=False, cache_dir=None):
    """``(x_train, y_train), (x_test, y_test)``: uint8 images ``(n, 28, 28)``, labels 0..9.

    ``path``: an ``.npz`` file holding ``x_train``, ``y_train``, ``x_test``, ``y_test``
    (Keras' layout), or a file name looked up in kiln's cache (``cache_dir``).
    """
    from ..data.download import cache_root, get_file

    candidates = [os.fspath(path)]
    if os.path.basename(os.fspath(path)) == os.fspath(path):
        candidates.append(os.fspath(cache_root(cache_dir) / "datasets" / path))
    found = next((p for p in candidates if os.path.isfile(p)), None)
    if found is None:
        if not download:
            raise FileNotFoundError(
                f"MNIST: no file {' or '.join(candidates)}. kiln does not ship MNIST; pass the "
                f"path of Keras' mnist.npz (arrays {', '.join(KEYS)}), or "
                f"load_data(download=True) to fetch {ORIGIN} once into the cache "
                f"(sha256 {SHA256}).")
        found = get_file(os.path.basename(os.fspath(path)), ORIGIN, file_hash=SHA256,
                         cache_dir=cache_dir)
    with np.load(found, allow_pickle=False) as f:
        missing = [k for k in KEYS if k not in f.files]
        if missing:
            raise ValueError(f"{found}: not an MNIST .npz: it lacks {missing} (it holds "
                             f"{f.files})")
        x_train, y_train, x_test, y_test = (f[k] for k in KEYS)
    return (x_train, y_train), (x_test, y_test)
