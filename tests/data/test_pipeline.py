"""batch / shuffle / map / repeat / take / skip / prefetch, checked against numpy."""
import threading
import time

import numpy as np
import pytest

import kiln
from kiln.data import INFINITE, UNKNOWN, Dataset


def rows(ds):
    return [np.asarray(e).tolist() for e in ds]


def test_batch_and_drop_remainder():
    x = np.arange(23 * 2).reshape(23, 2)
    got = list(Dataset.from_tensor_slices(x).batch(5))
    assert [len(b) for b in got] == [5, 5, 5, 5, 3] and np.array_equal(np.concatenate(got), x)
    assert len(Dataset.from_tensor_slices(x).batch(5, drop_remainder=True)) == 4
    assert [len(b) for b in Dataset.from_tensor_slices(x).batch(5, drop_remainder=True)] == [5] * 4
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        Dataset.range(3).batch(0)


def test_batch_across_source_blocks(tmp_path):
    x = np.arange(100, dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    for chunk in (1, 3, 7, 64, 1000):
        got = list(Dataset.from_npy(tmp_path / "x.npy", chunk_rows=chunk).batch(8))
        assert np.array_equal(np.concatenate(got), x) and all(len(b) == 8 for b in got[:-1])


@pytest.mark.parametrize("buffer", [1, 7, 50, 100, 1000])
def test_shuffle_is_a_seeded_permutation_whatever_the_blocks(tmp_path, buffer):
    x = np.arange(100)
    np.save(tmp_path / "x.npy", x)
    ref = Dataset.from_tensor_slices(x).shuffle(buffer, seed=7).as_numpy()
    assert sorted(ref.tolist()) == x.tolist()
    if buffer == 1:
        assert ref.tolist() == x.tolist()                   # tf.data: a buffer of 1 keeps order
    for chunk in (1, 3, 16, 100):
        got = Dataset.from_npy(tmp_path / "x.npy", chunk_rows=chunk).shuffle(buffer, seed=7)
        assert got.as_numpy().tolist() == ref.tolist()
    gen = Dataset.from_generator(lambda: iter(x)).shuffle(buffer, seed=7)     # element-wise
    assert rows(gen) == ref.tolist()


def test_shuffle_buffer_bounds_how_far_elements_move():
    """With a buffer of B, element i can come out no earlier than position i - B."""
    out = Dataset.range(1000).shuffle(10, seed=0).as_numpy()
    pos = np.empty(1000, np.int64)
    pos[out] = np.arange(1000)
    assert np.all(pos >= np.arange(1000) - 10) and not np.array_equal(out, np.arange(1000))


def test_shuffle_passes_and_seeds():
    ds = Dataset.range(50).shuffle(100, seed=1)
    a, b = rows(ds), rows(ds)
    assert a != b and sorted(a) == sorted(b) == list(range(50))     # a new order per pass
    ds2 = Dataset.range(50).shuffle(100, seed=1)
    assert rows(ds2) == a and rows(ds2) == b                        # ... the same sequence
    fixed = Dataset.range(50).shuffle(100, seed=1, reshuffle_each_iteration=False)
    assert rows(fixed) == rows(fixed)
    kiln.utils.set_random_seed(3)
    c = rows(Dataset.range(50).shuffle(100))
    kiln.utils.set_random_seed(3)
    assert rows(Dataset.range(50).shuffle(100)) == c                # kiln's seed governs


def test_shuffle_after_batch_shuffles_batches():
    got = list(Dataset.range(20).batch(5).shuffle(4, seed=0))
    assert sorted(b.tolist() for b in got) == [list(range(i, i + 5)) for i in range(0, 20, 5)]


def test_map_numpy_function_per_element_and_per_batch():
    x, y = np.arange(10.0), np.arange(10) % 3
    ds = Dataset.from_tensor_slices((x, y))
    per_elem = list(ds.map(lambda a, b: (a * 2, b)).batch(4))
    per_batch = list(ds.batch(4).map(lambda a, b: (np.sqrt(a), b + 1)))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in per_elem]), x * 2)
    np.testing.assert_allclose(np.concatenate([b[0] for b in per_batch]), np.sqrt(x))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in per_batch]), y + 1)
    d = Dataset.from_tensor_slices({"a": x}).map(lambda e: {"a": e["a"] + 1}).batch(10)
    np.testing.assert_array_equal(next(iter(d))["a"], x + 1)


def test_repeat_take_skip_and_cardinality():
    ds = Dataset.range(5)
    assert rows(ds.repeat(3)) == list(range(5)) * 3
    assert rows(ds.repeat().take(12)) == (list(range(5)) * 3)[:12]
    assert rows(ds.skip(3)) == [3, 4] and rows(ds.take(0)) == [] and rows(ds.skip(9)) == []
    assert rows(ds.batch(2).take(2)) == [[0, 1], [2, 3]]
    assert rows(ds.batch(2).skip(2)) == [[4]]
    assert len(ds.repeat(3).batch(4)) == 4 and ds.repeat().cardinality() == INFINITE
    assert ds.repeat().take(7).cardinality() == 7
    assert Dataset.from_generator(lambda: iter(range(3))).cardinality() == UNKNOWN
    with pytest.raises(TypeError, match="infinite"):
        len(ds.repeat())
    with pytest.raises(TypeError, match="unknown"):
        len(Dataset.from_generator(lambda: iter(range(3))))


def test_prefetch_gives_the_same_batches():
    x = np.random.default_rng(0).random((257, 3))
    y = np.arange(257)
    base = Dataset.from_tensor_slices((x, y)).shuffle(64, seed=2).batch(16)
    plain = list(base)
    fetched = list(Dataset.from_tensor_slices((x, y)).shuffle(64, seed=2).batch(16).prefetch(3))
    assert len(plain) == len(fetched) == 17
    for (a, b), (c, d) in zip(plain, fetched):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    rowwise = Dataset.from_tensor_slices(x).prefetch().batch(16)        # prefetch of blocks
    np.testing.assert_array_equal(np.concatenate(list(rowwise)), x)


def test_prefetch_runs_ahead_on_another_thread():
    seen = []

    def gen():
        for i in range(4):
            seen.append((i, threading.current_thread().name))
            yield np.array([i])
    it = iter(Dataset.from_generator(gen).prefetch(2))
    assert next(it).tolist() == [0]
    deadline = time.time() + 5
    while len(seen) < 3 and time.time() < deadline:
        time.sleep(0.01)
    assert len(seen) >= 3                                   # read ahead while we wait
    assert all(name == "kiln-data-prefetch" for _, name in seen)
    assert [int(b[0]) for b in it] == [1, 2, 3]


def test_prefetch_errors_and_early_stop():
    def bad():
        yield np.zeros(2)
        raise RuntimeError("source broke")
    with pytest.raises(RuntimeError, match="source broke"):
        list(Dataset.from_generator(bad).prefetch())
    closed = threading.Event()

    def endless():
        try:
            while True:
                yield np.zeros(1)
        finally:
            closed.set()
    it = iter(Dataset.from_generator(endless).prefetch(2))
    next(it)
    it.close()                                              # the consumer stops early
    assert closed.wait(5)                                   # the source was closed ...
    deadline = time.time() + 5
    while any(t.name == "kiln-data-prefetch" for t in threading.enumerate()):
        assert time.time() < deadline                       # ... and the thread ended
        time.sleep(0.01)
