"""``kiln.data.Dataset``: a lazy, re-iterable pipeline of elements (tf.data's shape).

A dataset is a chain of nodes; iterating it runs the chain afresh, so one Dataset serves
every epoch of ``fit``. An element is an array or a tuple / list / dict of arrays.

Internally a node hands out either *elements* or *blocks*. A block holds many
consecutive elements stacked along a new first axis (rows): the sources read in blocks
(a chunk of an HDF5 file, ``fetchmany`` rows of a query, a slice of an array), and the
row-level nodes (``batch``, ``shuffle``, ``take``, ``skip``, ``repeat``) work on whole
blocks with numpy, so no Python loop runs per row. A node that only has elements (a
generator, ``map``, anything after ``batch``) gets blocks by stacking its elements, and
the other way round, so every node offers both.
"""
from __future__ import annotations

import itertools
import math
import queue
import threading

import numpy as np

from .structure import as_arrays, flatten, n_rows, pack

INFINITE = -1           # cardinality of ``repeat()``
UNKNOWN = -2            # cardinality of a stream whose length is not known in advance
AUTOTUNE = -1           # ``prefetch(AUTOTUNE)``: two batches ahead
_STACK = 64             # elements stacked into one block by nodes without native blocks


def _slice(block, start, stop):
    return pack(block, [a[start:stop] for a in flatten(block)])


def _take_rows(block, idx):
    return pack(block, [a[idx] for a in flatten(block)])


def _concat(blocks):
    if len(blocks) == 1:
        return blocks[0]
    cols = zip(*(flatten(b) for b in blocks))
    return pack(blocks[0], [np.concatenate(c, axis=0) for c in cols])


def _stack(elements):
    cols = zip(*(flatten(e) for e in elements))
    try:
        return pack(elements[0], [np.stack([np.asarray(v) for v in c]) for c in cols])
    except ValueError as e:
        raise ValueError(f"the elements of a dataset must have the same shapes to be stacked "
                         f"into a batch ({e})") from None


class Dataset:
    """A re-iterable pipeline of elements; see the module docstring and ``kiln.data``.

    Build one with a ``from_*`` constructor, chain ``batch``, ``shuffle``, ``map``,
    ``repeat``, ``take``, ``skip``, ``prefetch``, and pass it to ``fit``, ``evaluate`` or
    ``predict`` (its elements are then ``(x, y)`` or ``(x, y, sample_weight)`` batches).
    """

    _native_blocks = False

    # -- what a node implements: one of these two, and its cardinality ------------------------
    def _elements(self):
        for block in self._blocks():
            leaves = flatten(block)
            for i in range(n_rows(block)):
                yield pack(block, [a[i] for a in leaves])

    def _blocks(self):
        group = []
        for e in self._elements():
            group.append(e)
            if len(group) == _STACK:
                yield _stack(group)
                group = []
        if group:
            yield _stack(group)

    def _cardinality(self) -> int:
        return UNKNOWN

    @property
    def _single_rows(self):
        """True when the elements are single rows of a source (not batched yet); None when
        not known (a generator)."""
        return True if self._native_blocks else None

    # -- iteration ------------------------------------------------------------------------------
    def __iter__(self):
        return self._elements()

    def cardinality(self) -> int:
        """The number of elements, ``kiln.data.INFINITE`` or ``kiln.data.UNKNOWN``."""
        return self._cardinality()

    def __len__(self) -> int:
        n = self._cardinality()
        if n == INFINITE:
            raise TypeError("the dataset is infinite (repeat()); give steps_per_epoch")
        if n < 0:
            raise TypeError("the length of the dataset is unknown (a streamed source)")
        return n

    def as_numpy(self):
        """Every element, stacked into arrays (for small datasets and tests)."""
        blocks = list(self._blocks())
        if not blocks:
            raise ValueError("the dataset is empty")
        return _concat(blocks)

    def __repr__(self):
        n = self._cardinality()
        size = {INFINITE: "infinite", UNKNOWN: "unknown length"}.get(n, f"{n} elements")
        return f"<kiln.data.Dataset {type(self).__name__.lstrip('_')}, {size}>"

    # -- transformations ----------------------------------------------------------------------
    def batch(self, batch_size: int, drop_remainder: bool = False) -> "Dataset":
        """Consecutive elements stacked into batches of ``batch_size`` (the last one smaller
        unless ``drop_remainder``)."""
        return _Batch(self, _positive(batch_size, "batch_size"), bool(drop_remainder))

    def shuffle(self, buffer_size: int, seed=None, reshuffle_each_iteration: bool = True):
        """Elements in a random order, drawn from a buffer of about ``buffer_size`` elements
        (at least the dataset's size: a uniform permutation). ``seed`` fixes the order of
        every pass (pass ``i`` uses ``default_rng([seed, i])``); without it the seed of each
        pass is drawn from kiln's generator (``kiln.utils.set_random_seed``)."""
        return _Shuffle(self, _positive(buffer_size, "buffer_size"), seed,
                        bool(reshuffle_each_iteration))

    def map(self, fn) -> "Dataset":
        """``fn`` applied to every element (a tuple element is unpacked: ``fn(x, y)``). Put it
        after ``batch`` to run a numpy function once per batch."""
        if not callable(fn):
            raise TypeError(f"map expects a function, got {type(fn).__name__}")
        return _Map(self, fn)

    def repeat(self, count=None) -> "Dataset":
        """The dataset ``count`` times over (forever when ``count`` is None or -1)."""
        if count is not None and count != -1:
            count = _positive(count, "count", zero=True)
        return _Repeat(self, None if count in (None, -1) else count)

    def take(self, count: int) -> "Dataset":
        """The first ``count`` elements."""
        return _Take(self, _positive(count, "count", zero=True))

    def skip(self, count: int) -> "Dataset":
        """All but the first ``count`` elements."""
        return _Skip(self, _positive(count, "count", zero=True))

    def prefetch(self, buffer_size: int = 1) -> "Dataset":
        """Produce up to ``buffer_size`` elements ahead on a background thread (the next
        batch is read and prepared while the compiled step runs on this one)."""
        if buffer_size == AUTOTUNE:
            buffer_size = 2
        return _Prefetch(self, _positive(buffer_size, "buffer_size"))

    # -- sources (kiln/data/sources.py) -----------------------------------------------------
    @staticmethod
    def from_tensor_slices(data) -> "Dataset":
        """One element per row of ``data``: an array, a list, or a tuple / dict of them."""
        from .sources import ArraySource
        return ArraySource(data)

    @staticmethod
    def range(*args) -> "Dataset":
        """``Dataset.from_tensor_slices(np.arange(*args))``."""
        from .sources import ArraySource
        return ArraySource(np.arange(*args))

    @staticmethod
    def from_npy(*paths, chunk_rows=None) -> "Dataset":
        """Rows of ``.npy`` files, memory-mapped and read ``chunk_rows`` at a time (several
        paths: tuple elements)."""
        from .sources import NpySource
        return NpySource(paths, chunk_rows)

    @staticmethod
    def from_npz(path, keys=None) -> "Dataset":
        """Rows of the arrays of an ``.npz`` file: ``keys`` a name (array elements) or a
        sequence of names (tuple elements); all arrays as a dict when omitted."""
        from .sources import NpzSource
        return NpzSource(path, keys)

    @staticmethod
    def from_csv(path, columns=None, label=None, header=True, delimiter=",", dtype="float32",
                 label_dtype=None, chunk_rows=1024) -> "Dataset":
        """Rows of a CSV file (``.gz`` too), streamed. See ``kiln.data.sources.CsvSource``."""
        from .sources import CsvSource
        return CsvSource(path, columns, label, header, delimiter, dtype, label_dtype, chunk_rows)

    @staticmethod
    def from_hdf5(path, keys=("x", "y"), chunk_rows=None) -> "Dataset":
        """Rows of HDF5 datasets (h5py), read ``chunk_rows`` at a time: never the whole file."""
        from .sources import Hdf5Source
        return Hdf5Source(path, keys, chunk_rows)

    @staticmethod
    def from_sql(query, connection, params=(), label=None, columns=None, dtype="float32",
                 label_dtype=None, chunk_rows=1024) -> "Dataset":
        """Rows of a SQL query, fetched ``chunk_rows`` at a time. ``connection`` is a SQLite
        path, a function returning a DB-API 2.0 connection, or such a connection."""
        from .sources import SqlSource
        return SqlSource(query, connection, params, label, columns, dtype, label_dtype,
                         chunk_rows)

    @staticmethod
    def from_generator(source) -> "Dataset":
        """Elements of a Python iterable, or of what a function returns (called once per pass,
        so a generator function serves every epoch)."""
        from .sources import GeneratorSource
        return GeneratorSource(source)


def _positive(v, what, zero=False) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if zero else 1):
        raise ValueError(f"{what} must be a {'non-negative' if zero else 'positive'} integer, "
                         f"got {v!r}")
    return int(v)


class _Node(Dataset):
    def __init__(self, parent: Dataset):
        self.parent = parent
        self._native_blocks = parent._native_blocks

    def _cardinality(self):
        return self.parent._cardinality()

    @property
    def _single_rows(self):
        return self.parent._single_rows


class _Batch(_Node):
    _single_rows = False

    def __init__(self, parent, size, drop):
        super().__init__(parent)
        self._native_blocks = False
        self.size, self.drop = size, drop

    def _cardinality(self):
        n = self.parent._cardinality()
        if n < 0:
            return n
        return n // self.size if self.drop else math.ceil(n / self.size)

    def _elements(self):
        pending, count = [], 0
        for block in self.parent._blocks():
            n, start = n_rows(block), 0
            while start < n:
                k = min(self.size - count, n - start)
                pending.append(_slice(block, start, start + k))
                count += k
                start += k
                if count == self.size:
                    yield _concat(pending)
                    pending, count = [], 0
        if count and not self.drop:
            yield _concat(pending)


class _Shuffle(_Node):
    """tf.data's shuffle buffer: the first ``buffer_size`` elements fill the buffer; then
    each new element swaps with the buffer slot ``floor(u * buffer_size)`` (``u`` one
    ``rng.random()`` draw per element), the slot's old element going out; at the end the
    buffer goes out in ``rng.permutation`` order. One draw per element, whatever the
    blocks, so every source of the same rows gives the same order; a buffer at least the
    dataset's size gives a uniform permutation.

    With native blocks the swaps of a whole run of rows are done at once: sorting the
    run's slots (stably) groups the rows that hit the same slot, each row pushes out the
    previous row of its group (the first one, the slot's old content), and the last row
    of each group stays. Runs are at least half a buffer long, so each row is copied a
    bounded number of times."""

    def __init__(self, parent, size, seed, reshuffle):
        super().__init__(parent)
        self.size, self.seed, self.reshuffle = size, seed, reshuffle
        self._passes = 0
        self._fixed = None

    def _rng(self):
        if self.seed is None:
            from ..frontend import random as _random
            if not self.reshuffle:
                if self._fixed is None:
                    self._fixed = int(_random.generator().integers(2**63))
                return np.random.default_rng(self._fixed)
            return np.random.default_rng(int(_random.generator().integers(2**63)))
        i = self._passes if self.reshuffle else 0
        self._passes += 1
        return np.random.default_rng([int(self.seed), i])

    def _slots(self, rng, k):
        return np.minimum((rng.random(k) * self.size).astype(np.int64), self.size - 1)

    def _blocks(self):
        if not self._native_blocks:
            yield from super()._blocks()
            return
        rng, B = self._rng(), self.size
        buf, pending, held = None, [], 0
        run = max(B // 2, 1)
        for block in self.parent._blocks():
            pending.append(block)
            held += n_rows(block)
            if buf is None:
                if held < B:
                    continue
                merged = _concat(pending)
                buf, rest = _slice(merged, 0, B), _slice(merged, B, held)
                pending, held = ([rest] if held > B else []), held - B
            if held >= run:
                emitted, buf = self._swap(rng, buf, _concat(pending), held)
                pending, held = [], 0
                yield emitted
        if buf is None:
            if held:
                merged = _concat(pending)
                yield _take_rows(merged, rng.permutation(held))
            return
        if held:
            emitted, buf = self._swap(rng, buf, _concat(pending), held)
            yield emitted
        yield _take_rows(buf, rng.permutation(B))

    def _swap(self, rng, buf, incoming, k):
        B = self.size
        slots = self._slots(rng, k)
        order = np.argsort(slots, kind="stable")
        s = slots[order]
        first = np.r_[True, s[1:] != s[:-1]]
        last = np.r_[s[1:] != s[:-1], True]
        src = np.where(first, s, B + np.r_[0, order[:-1]])    # into concat(buf, incoming)
        out = np.empty(k, np.int64)
        out[order] = src
        keep = np.arange(B)
        keep[s[last]] = B + order[last]
        both = _concat([buf, incoming])
        return _take_rows(both, out), _take_rows(both, keep)

    def _elements(self):
        if self._native_blocks:
            yield from super()._elements()
            return
        rng = self._rng()
        buf = []
        for e in self.parent._elements():
            if len(buf) < self.size:
                buf.append(e)
                continue
            i = int(self._slots(rng, 1)[0])
            yield buf[i]
            buf[i] = e
        for i in rng.permutation(len(buf)):
            yield buf[i]


class _Map(_Node):
    def __init__(self, parent, fn):
        super().__init__(parent)
        self._native_blocks = False
        self.fn = fn

    def _elements(self):
        fn = self.fn
        for e in self.parent._elements():
            yield as_arrays(fn(*e) if isinstance(e, tuple) else fn(e))


class _Repeat(_Node):
    def __init__(self, parent, count):
        super().__init__(parent)
        self.count = count

    def _cardinality(self):
        n = self.parent._cardinality()
        if self.count == 0:
            return 0
        if self.count is None:
            return 0 if n == 0 else INFINITE
        return n * self.count if n >= 0 else n

    def _run(self, method):
        for _ in (itertools.count() if self.count is None else range(self.count)):
            produced = False
            for item in getattr(self.parent, method)():
                produced = True
                yield item
            if not produced:
                return

    def _blocks(self):
        yield from self._run("_blocks")

    def _elements(self):
        yield from self._run("_elements")


class _Take(_Node):
    def __init__(self, parent, count):
        super().__init__(parent)
        self.count = count

    def _cardinality(self):
        n = self.parent._cardinality()
        return self.count if n == INFINITE else (min(n, self.count) if n >= 0 else UNKNOWN)

    def _blocks(self):
        if not self._native_blocks:
            yield from super()._blocks()
            return
        left = self.count
        if left == 0:
            return
        for block in self.parent._blocks():
            n = n_rows(block)
            yield block if n <= left else _slice(block, 0, left)
            left -= min(n, left)
            if left == 0:
                return

    def _elements(self):
        if self._native_blocks:
            yield from super()._elements()
        else:
            yield from itertools.islice(self.parent._elements(), self.count)


class _Skip(_Node):
    def __init__(self, parent, count):
        super().__init__(parent)
        self.count = count

    def _cardinality(self):
        n = self.parent._cardinality()
        return max(n - self.count, 0) if n >= 0 else n

    def _blocks(self):
        if not self._native_blocks:
            yield from super()._blocks()
            return
        left = self.count
        for block in self.parent._blocks():
            n = n_rows(block)
            if left >= n:
                left -= n
                continue
            yield _slice(block, left, n) if left else block
            left = 0

    def _elements(self):
        if self._native_blocks:
            yield from super()._elements()
        else:
            yield from itertools.islice(self.parent._elements(), self.count, None)


class _Prefetch(_Node):
    def __init__(self, parent, size):
        super().__init__(parent)
        self.size = size

    def _blocks(self):
        yield from _background(self.parent._blocks, self.size)

    def _elements(self):
        if self._native_blocks:
            yield from super()._elements()    # blocks ahead, split here
        else:
            yield from _background(self.parent._elements, self.size)


_DONE = object()


def _background(make_iter, size):
    """Run ``make_iter()`` on a daemon thread, ``size`` items ahead. Errors are raised here,
    in the consumer; stopping early (``close()``, garbage collection) stops the thread."""
    q = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def work():
        it = None
        try:
            it = make_iter()
            for item in it:
                if not put((True, item)):
                    return
            put((True, _DONE))
        except BaseException as e:      # noqa: BLE001 - handed to the consumer
            put((False, e))
        finally:
            if it is not None and hasattr(it, "close"):
                it.close()

    thread = threading.Thread(target=work, name="kiln-data-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
