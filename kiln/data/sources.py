"""The sources of ``kiln.data.Dataset``: arrays in memory, ``.npy`` / ``.npz`` files, CSV,
HDF5 (h5py), SQL (sqlite3 or any DB-API 2.0 connection) and Python iterables.

Every file or query source reads in blocks of rows and opens its file / cursor afresh for
each pass, closing it when the pass ends (or is abandoned), so a dataset is re-iterable
and never holds more than a block of a file in memory.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import sqlite3

import numpy as np

from .dataset import UNKNOWN, Dataset
from .structure import as_arrays, flatten, is_structure, n_rows, pack

_READ_BYTES = 4 << 20      # default block size of file sources: about 4 MiB of rows


def _rows_for(row_bytes: int, multiple: int = 1) -> int:
    rows = max(_READ_BYTES // max(row_bytes, 1), 1)
    return max(rows // multiple, 1) * multiple


class ArraySource(Dataset):
    _native_blocks = True

    def __init__(self, data):
        self.data = as_arrays(data)
        leaves = flatten(self.data)
        if not leaves or any(a.ndim == 0 for a in leaves):
            raise ValueError("from_tensor_slices needs arrays with a first (row) axis")
        self.n = n_rows(self.data)

    def _cardinality(self):
        return self.n

    def _blocks(self):
        if self.n:
            yield self.data


class NpySource(Dataset):
    _native_blocks = True

    def __init__(self, paths, chunk_rows):
        if not paths:
            raise ValueError("from_npy needs at least one path")
        self.paths = [os.fspath(p) for p in paths]
        arrays = [self._open(p) for p in self.paths]
        if any(a.ndim == 0 for a in arrays):
            raise ValueError("from_npy: the arrays need a first (row) axis")
        self.n = n_rows(arrays)
        row_bytes = sum(a[:1].nbytes for a in arrays)
        self.chunk = chunk_rows or _rows_for(row_bytes)

    @staticmethod
    def _open(path):
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"from_npy: no such file: {path}") from None

    def _cardinality(self):
        return self.n

    def _blocks(self):
        arrays = [self._open(p) for p in self.paths]
        for s in range(0, self.n, self.chunk):
            block = [np.array(a[s:s + self.chunk]) for a in arrays]
            yield block[0] if len(block) == 1 else tuple(block)


class NpzSource(Dataset):
    _native_blocks = True

    def __init__(self, path, keys):
        self.path = os.fspath(path)
        with np.load(self.path, allow_pickle=False) as f:
            names = list(f.files)
        if keys is None:
            self.keys = names
        else:
            self.keys = [keys] if isinstance(keys, str) else list(keys)
            missing = [k for k in self.keys if k not in names]
            if missing:
                raise KeyError(f"{self.path} holds no array(s) {missing}; it holds {names}")
        self.template = (0 if isinstance(keys, str) else
                         {k: 0 for k in self.keys} if keys is None else tuple(self.keys))
        self.n = None

    def _load(self):
        with np.load(self.path, allow_pickle=False) as f:
            return pack(self.template, [f[k] for k in self.keys])

    def _cardinality(self):
        if self.n is None:
            self.n = n_rows(self._load())
        return self.n

    def _blocks(self):
        yield self._load()


class _TableSource(Dataset):
    """Rows of named columns (CSV, SQL) -> ``features`` or ``(features, label)``."""
    _native_blocks = True

    def _setup(self, columns, label, dtype, label_dtype, chunk_rows):
        self.columns, self.label = columns, label
        self.dtype = np.dtype(dtype)
        self.label_dtype = np.dtype(label_dtype) if label_dtype is not None else self.dtype
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        self.chunk = chunk_rows

    def _resolve(self, names: list, where: str):
        """Column indices of the features and of the label, checked against ``names``."""
        def index(c):
            if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
                if not -len(names) <= c < len(names):
                    raise ValueError(f"{where}: column {c} is out of range (the data has "
                                     f"{len(names)} columns)")
                return int(c) % len(names)
            if c not in names:
                raise ValueError(f"{where}: no column {c!r}; the columns are {names}")
            return names.index(c)
        lab = None if self.label is None else index(self.label)
        if self.columns is None:
            feats = [i for i in range(len(names)) if i != lab]
        else:
            cols = [self.columns] if isinstance(self.columns, (str, int)) else self.columns
            feats = [index(c) for c in cols]
        if not feats:
            raise ValueError(f"{where}: no feature columns are left")
        return feats, lab

    def _convert(self, rows: list, feats, lab, where, first_line):
        try:
            table = np.array(rows, dtype=object)
            x = table[:, feats].astype(self.dtype)
            y = None if lab is None else table[:, lab].astype(self.label_dtype)
        except (ValueError, TypeError):
            for k, row in enumerate(rows):
                for i in feats + ([] if lab is None else [lab]):
                    try:
                        np.array(row[i], dtype=self.label_dtype if i == lab else self.dtype)
                    except (ValueError, TypeError):
                        raise ValueError(f"{where}, row {first_line + k}: column {i} holds "
                                         f"{row[i]!r}, which is not a number") from None
            raise
        return x if y is None else (x, y)


class CsvSource(_TableSource):
    """A CSV file (``.gz`` read through gzip) streamed ``chunk_rows`` rows at a time.

    - ``header``: the first line names the columns (``columns`` / ``label`` may then be
      names; without a header they are indices).
    - ``columns``: the feature columns (default: all but the label), in that order.
    - ``label``: a column given as the second part of ``(features, label)`` elements;
      without it the elements are the feature vectors.
    - ``dtype`` / ``label_dtype``: the arrays' types (the label defaults to ``dtype``; a
      sparse categorical loss takes integral float labels as class indices).
    """

    def __init__(self, path, columns, label, header, delimiter, dtype, label_dtype, chunk_rows):
        self.path = os.fspath(path)
        self.header, self.delimiter = bool(header), delimiter
        self._setup(columns, label, dtype, label_dtype, chunk_rows)
        with self._open() as f:
            first = next(csv.reader(f, delimiter=delimiter), None)
        if first is None:
            raise ValueError(f"{self.path}: the file is empty")
        self.names = first if self.header else list(range(len(first)))
        if not self.header and any(isinstance(c, str) for c in
                                   ([columns] if isinstance(columns, str) else columns or [])
                                   + [label]):
            raise ValueError(f"{self.path}: columns are named only with header=True; give "
                             f"column indices")
        self.feats, self.lab = self._resolve(self.names, self.path)

    def _open(self):
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"from_csv: no such file: {self.path}")
        if self.path.endswith(".gz"):
            return io.TextIOWrapper(gzip.open(self.path, "rb"), newline="")
        return open(self.path, newline="")

    def _blocks(self):
        with self._open() as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            if self.header:
                next(reader, None)
            rows, first = [], reader.line_num + 1
            for row in reader:
                if not row:
                    continue
                if len(row) != len(self.names):
                    raise ValueError(f"{self.path}, line {reader.line_num}: {len(row)} values, "
                                     f"expected {len(self.names)}")
                rows.append(row)
                if len(rows) == self.chunk:
                    yield self._convert(rows, self.feats, self.lab, self.path, first)
                    rows, first = [], reader.line_num + 1
            if rows:
                yield self._convert(rows, self.feats, self.lab, self.path, first)


class SqlSource(_TableSource):
    """The rows of a query, ``cursor.fetchmany(chunk_rows)`` at a time; the query runs
    afresh each pass. ``connection``: a path (SQLite, opened and closed by each pass), a
    function returning a DB-API 2.0 connection (each pass opens and closes its own: use
    this with ``prefetch``, since sqlite3 connections stay in their thread), or an open
    connection (only a cursor is opened and closed)."""

    def __init__(self, query, connection, params, label, columns, dtype, label_dtype,
                 chunk_rows):
        self.query, self.params, self.connection = query, tuple(params or ()) \
            if not isinstance(params, dict) else params, connection
        self._setup(columns, label, dtype, label_dtype, chunk_rows)

    def _connect(self):
        c = self.connection
        if isinstance(c, (str, os.PathLike)):
            if not os.path.exists(c):
                raise FileNotFoundError(f"from_sql: no such SQLite database: {os.fspath(c)}")
            return sqlite3.connect(c), True
        if callable(c) and not hasattr(c, "cursor"):
            return c(), True
        return c, False

    def _blocks(self):
        con, owned = self._connect()
        cur = None
        try:
            cur = con.cursor()
            cur.execute(self.query, self.params)
            if cur.description is None:
                raise ValueError(f"from_sql: the query returns no rows: {self.query!r}")
            names = [d[0] for d in cur.description]
            feats, lab = self._resolve(names, "from_sql")
            line = 1
            while True:
                rows = cur.fetchmany(self.chunk)
                if not rows:
                    break
                yield self._convert([list(r) for r in rows], feats, lab, "from_sql", line)
                line += len(rows)
        finally:
            if cur is not None:
                cur.close()
            if owned:
                con.close()


class Hdf5Source(Dataset):
    """Rows of one or more HDF5 datasets of a file (h5py), ``chunk_rows`` rows per read:
    the file is opened per pass and never read whole. ``keys``: a dataset name (array
    elements) or a sequence of names (tuple elements). ``chunk_rows`` defaults to about
    4 MiB of rows, a multiple of the file's own chunking."""
    _native_blocks = True

    def __init__(self, path, keys, chunk_rows):
        import h5py
        self.path = os.fspath(path)
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self.template = 0 if isinstance(keys, str) else tuple(self.keys)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"from_hdf5: no such file: {self.path}")
        with h5py.File(self.path, "r") as f:
            missing = [k for k in self.keys if not isinstance(f.get(k), h5py.Dataset)]
            if missing:
                found = []
                f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) else None)
                raise KeyError(f"{self.path} holds no dataset(s) {missing}; it holds {found}")
            dsets = [f[k] for k in self.keys]
            if any(d.ndim == 0 for d in dsets):
                raise ValueError(f"{self.path}: the datasets need a first (row) axis")
            lengths = [d.shape[0] for d in dsets]
            if len(set(lengths)) != 1:
                raise ValueError(f"{self.path}: the datasets {self.keys} have different numbers "
                                 f"of rows: {lengths}")
            self.n = lengths[0]
            row_bytes = sum(d.dtype.itemsize * int(np.prod(d.shape[1:])) for d in dsets)
            multiple = dsets[0].chunks[0] if dsets[0].chunks else 1
        if chunk_rows is None:
            chunk_rows = _rows_for(row_bytes, multiple)
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        self.chunk = chunk_rows

    def _cardinality(self):
        return self.n

    def _blocks(self):
        import h5py
        with h5py.File(self.path, "r") as f:
            dsets = [f[k] for k in self.keys]
            for s in range(0, self.n, self.chunk):
                yield pack(self.template, [d[s:s + self.chunk] for d in dsets])


class GeneratorSource(Dataset):
    def __init__(self, source):
        if not callable(source) and not hasattr(source, "__iter__"):
            raise TypeError(f"from_generator expects an iterable or a function returning one, "
                            f"got {type(source).__name__}")
        self.source = source
        self._spent = False

    def _elements(self):
        src = self.source
        if callable(src) and not hasattr(src, "__iter__"):
            it = iter(src())
        else:
            it = iter(src)
            if it is src:           # a generator / iterator: one pass only
                if self._spent:
                    raise ValueError("from_generator was given an iterator (a generator "
                                     "object), which runs once; pass the generator function "
                                     "(called afresh for each pass, e.g. each epoch) instead")
                self._spent = True
        for e in it:
            yield as_arrays(e) if is_structure(e) or not isinstance(e, np.ndarray) else e

    def _cardinality(self):
        try:
            return len(self.source)
        except TypeError:
            return UNKNOWN
