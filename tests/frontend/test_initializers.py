"""Initializers: Keras formulas (limits, standard deviations, fans), names, seeding."""
import math

import numpy as np
import pytest

import kiln
from kiln import initializers, layers


def test_fans():
    assert initializers.compute_fans((784, 512)) == (784, 512)
    assert initializers.compute_fans((7,)) == (7, 7)
    assert initializers.compute_fans(()) == (1, 1)
    # conv kernels (kh, kw, in, out): receptive field x channels
    assert initializers.compute_fans((3, 3, 16, 32)) == (3 * 3 * 16, 3 * 3 * 32)
    assert initializers.compute_fans((5, 8, 4)) == (5 * 8, 5 * 4)


@pytest.mark.parametrize("name,shape,limit", [
    ("glorot_uniform", (300, 200), math.sqrt(6 / (300 + 200))),
    ("glorot_uniform", (3, 3, 16, 32), math.sqrt(6 / (144 + 288))),
    ("he_uniform", (300, 200), math.sqrt(6 / 300)),
    ("lecun_uniform", (300, 200), math.sqrt(3 / 300)),
    ("random_uniform", (300, 200), 0.05),
])
def test_uniform_limits_and_statistics(name, shape, limit):
    w = initializers.get(name)(shape)
    assert w.dtype == np.float32 and w.shape == shape
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.98 * limit  # fills the interval
    assert abs(w.mean()) < 0.02 * limit
    np.testing.assert_allclose(w.std(), limit / math.sqrt(3), rtol=0.03)


@pytest.mark.parametrize("name,shape,std", [
    ("glorot_normal", (400, 300), math.sqrt(2 / (400 + 300))),
    ("he_normal", (400, 300), math.sqrt(2 / 400)),
    ("lecun_normal", (400, 300), math.sqrt(1 / 400)),
    ("glorot_normal", (3, 3, 16, 32), math.sqrt(2 / (144 + 288))),
])
def test_truncated_normal_statistics(name, shape, std):
    """Keras' VarianceScaling truncated normal: drawn with stddev std / .8796...,
    truncated at two of those stddevs, so the samples' stddev is std itself."""
    w = initializers.get(name)(shape)
    raw_std = std / 0.87962566103423978
    assert np.abs(w).max() <= 2 * raw_std + 1e-7
    np.testing.assert_allclose(w.std(), std, rtol=0.03)
    assert abs(w.mean()) < 0.02 * std * 10


def test_constant_initializers():
    np.testing.assert_array_equal(initializers.get("zeros")((2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(initializers.get("ones")((2,)), np.ones(2))
    np.testing.assert_array_equal(initializers.Constant(0.5)((2,)), [0.5, 0.5])
    w = initializers.get("random_normal")((500, 400))
    np.testing.assert_allclose(w.std(), 0.05, rtol=0.02)
    assert abs(w.mean()) < 0.002


def test_names_classes_and_errors():
    assert isinstance(initializers.get("GlorotUniform"), initializers.GlorotUniform)
    assert isinstance(initializers.get("glorot_uniform"), initializers.GlorotUniform)
    assert isinstance(initializers.get(initializers.HeNormal), initializers.HeNormal)
    inst = initializers.RandomUniform(-1, 1)
    assert initializers.get(inst) is inst
    with pytest.raises(ValueError) as e:
        layers.Dense(2, kernel_initializer="glorot_uniformm")
    assert "'glorot_uniformm'" in str(e.value) and "he_normal" in str(e.value)
    with pytest.raises(ValueError, match="mode"):
        initializers.VarianceScaling(mode="fan_sideways")


def test_set_random_seed_makes_models_reproducible():
    def weights():
        m = kiln.Sequential([kiln.Input(shape=(6,)), layers.Dense(5),
                             layers.Dense(3, kernel_initializer="he_normal")])
        return m.get_weights()

    kiln.utils.set_random_seed(123)
    a = weights()
    kiln.utils.set_random_seed(123)
    b = weights()
    c = weights()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    kiln.utils.set_random_seed(124)
    assert not np.array_equal(weights()[0], a[0])


def test_seeded_initializer_repeats_its_values():
    init = initializers.GlorotUniform(seed=7)
    np.testing.assert_array_equal(init((4, 5)), init((4, 5)))
    np.testing.assert_array_equal(init((4, 5)), initializers.GlorotUniform(seed=7)((4, 5)))
    assert not np.array_equal(init((4, 5)), initializers.GlorotUniform(seed=8)((4, 5)))


def test_dense_default_initializers():
    kiln.utils.set_random_seed(0)
    d = layers.Dense(200)
    d.build((None, 300))
    k, b = d.get_weights()
    np.testing.assert_array_equal(b, np.zeros(200, np.float32))
    limit = math.sqrt(6 / 500)
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.98 * limit
