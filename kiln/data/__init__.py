"""``kiln.data``: datasets that ``fit`` / ``evaluate`` / ``predict`` take directly, data
sources (arrays, .npy/.npz, CSV, HDF5, SQL, generators), preprocessing, splits,
cross-validation and cached downloads.

    ds = (kiln.data.Dataset.from_hdf5("big.h5", keys=("x", "y"))
          .shuffle(10_000, seed=0).batch(64).prefetch())
    model.fit(ds, epochs=5)
"""
from .dataset import AUTOTUNE, INFINITE, UNKNOWN, Dataset
from .download import DownloadError, extract_archive, get_file
from .preprocessing import (MinMaxScaler, StandardScaler, kfold_indices, min_max_scale,
                            normalize, split_indices, standardize, to_categorical,
                            train_test_split, train_val_test_split)
from .validation import cross_validate

__all__ = ["AUTOTUNE", "INFINITE", "UNKNOWN", "Dataset", "DownloadError", "extract_archive",
           "get_file", "MinMaxScaler", "StandardScaler", "kfold_indices", "min_max_scale",
           "normalize", "split_indices", "standardize", "to_categorical", "train_test_split",
           "train_val_test_split", "cross_validate"]
