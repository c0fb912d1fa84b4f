"""kiln.utils.set_random_seed(s): two runs (init, shuffling, dropout masks) give
bit-identical weights; another seed gives others."""
import numpy as np

import kiln
from kiln import layers


def build(seed):
    kiln.utils.clear_session()
    kiln.utils.set_random_seed(seed)
    return kiln.Sequential([kiln.Input(shape=(6,)), layers.Dense(16, activation="relu"),
                            layers.Dropout(0.3), layers.Dense(3, activation="softmax")])


def run(seed):
    m = build(seed)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, batch_size=10, epochs=3, verbose=0, shuffle=True)
    return m.get_weights(), h.history


def test_same_seed_same_bits():
    w1, h1 = run(11)
    w2, h2 = run(11)
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert h1 == h2
    other = build(12)
    assert not np.array_equal(build(11).get_weights()[0], other.get_weights()[0])
    assert other.layers[1]._rng_seed != build(11).layers[1]._rng_seed   # other dropout masks
