"""fit / evaluate / predict take a Dataset: the same numbers as the same batches given as
arrays, from memory or streamed from a file."""
import h5py
import numpy as np
import pytest

import kiln
from kiln.data import Dataset


@pytest.fixture(scope="module")
def digits():
    (x, y), (xt, yt) = kiln.datasets.digits.load_data()
    return ((x.reshape(-1, 64) / 16).astype("float32"), y,
            (xt.reshape(-1, 64) / 16).astype("float32"), yt)


def build(seed=0):
    kiln.utils.set_random_seed(seed)
    m = kiln.Sequential([kiln.Input(shape=(64,)), kiln.layers.Dense(16, activation="relu"),
                         kiln.layers.Dense(10, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def same_weights(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def test_fit_on_a_dataset_equals_fit_on_arrays(digits):
    x, y, xt, yt = digits
    a, b = build(), build()
    ha = a.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
               validation_data=(xt, yt))
    hb = b.fit(Dataset.from_tensor_slices((x, y)).batch(32).prefetch(), epochs=2, verbose=0,
               validation_data=Dataset.from_tensor_slices((xt, yt)).batch(32))
    assert ha.history == hb.history and same_weights(a, b)
    assert a.evaluate(xt, yt, verbose=0) == b.evaluate(
        Dataset.from_tensor_slices((xt, yt)).batch(32), verbose=0)
    pa = a.predict(xt, batch_size=40, verbose=0)
    np.testing.assert_array_equal(pa, b.predict(Dataset.from_tensor_slices((xt, yt)).batch(40)))
    np.testing.assert_array_equal(pa, b.predict(Dataset.from_tensor_slices(xt).batch(40)))
    np.testing.assert_array_equal(pa[:80], b.predict(Dataset.from_tensor_slices(xt).batch(40),
                                                     steps=2))


def test_fit_with_sample_weights_in_the_dataset(digits):
    x, y, _, _ = digits
    w = np.linspace(0.5, 1.5, len(x)).astype("float32")
    a, b = build(), build()
    a.fit(x, y, sample_weight=w, batch_size=64, epochs=1, shuffle=False, verbose=0)
    b.fit(Dataset.from_tensor_slices((x, y, w)).batch(64), epochs=1, verbose=0)
    assert same_weights(a, b)


def test_seeded_shuffled_dataset_trains_reproducibly(digits):
    x, y, _, _ = digits
    runs = []
    for _ in range(2):
        m = build()
        h = m.fit(Dataset.from_tensor_slices((x, y)).shuffle(2000, seed=4).batch(32),
                  epochs=2, verbose=0)
        runs.append((h.history, m.get_weights()))
    assert runs[0][0] == runs[1][0]
    assert all(np.array_equal(u, v) for u, v in zip(runs[0][1], runs[1][1]))


def test_fit_streams_hdf5_in_chunks_and_repeat_with_steps(tmp_path, digits):
    x, y, _, _ = digits
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(50, 64))
        f.create_dataset("y", data=y, chunks=(50,))
    a, b = build(), build()
    a.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    b.fit(Dataset.from_hdf5(tmp_path / "d.h5", chunk_rows=100).batch(32).prefetch(), epochs=2,
          verbose=0)
    assert same_weights(a, b)
    c = build()
    steps = len(x) // 32
    c.fit(Dataset.from_hdf5(tmp_path / "d.h5").batch(32, drop_remainder=True).repeat(),
          epochs=2, steps_per_epoch=steps, verbose=0)
    d = build()
    d.fit(x[:steps * 32], y[:steps * 32], batch_size=32, epochs=2, shuffle=False, verbose=0)
    assert same_weights(c, d)


def test_normalization_adapts_to_a_dataset(digits):
    x = digits[0]
    layer = kiln.layers.Normalization()
    layer.adapt(Dataset.from_tensor_slices((x, digits[1])).map(lambda a, b: a).batch(100))
    np.testing.assert_allclose(layer.adapt_mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.adapt_variance.numpy(), x.var(0), rtol=1e-4, atol=1e-6)


def test_unbatched_dataset_error_says_batch():
    m = build()
    ds = Dataset.from_tensor_slices((np.zeros((8, 64), "f4"), np.zeros(8, "f4")))
    with pytest.raises(ValueError, match=r"call \.batch\(batch_size\)"):
        m.fit(ds, verbose=0)
