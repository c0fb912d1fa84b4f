"""random_uniform (counter-based SplitMix64) and Dropout's training branch."""
import numpy as np
import pytest

import kiln
from kiln import layers
from kiln.ir import Graph, OpTypeError, TensorType
from kiln.ir.ops.random import uniform_bits
from kiln.ir.types import DType


def splitmix_reference(seed, counter, n):
    """An independent pure-Python SplitMix64 (Steele et al. 2014), as the op defines it."""
    mask, golden = 2**64 - 1, 0x9E3779B97F4A7C15

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)
    key = mix((seed + golden * (counter + 1)) & mask)
    return np.array([(mix((key + golden * (i + 1)) & mask) >> 40) * 2.0**-24 for i in range(n)])


def rng_graph(shape=("N", 5), seed=12345):
    g = Graph("r")
    x = g.add_input("x", TensorType(("N", 5), DType.f32))
    c = g.add_param("rng.counter", np.array(7, np.int64))
    with g.building():
        u = g.op("random_uniform", c, shape=shape, seed=seed)
        y = g.op("add", g.op("mul", x, g.constant(0.0)), u)
        g.add_update(c, g.op("add", c, g.constant(1, DType.i64)))
    g.set_outputs([y])
    return g


def test_reference_is_splitmix64_and_in_unit_interval():
    ref = splitmix_reference(99, 3, 50)
    got = uniform_bits(99, 3, 50) * 2.0**-24
    np.testing.assert_array_equal(got, ref)
    u = kiln.ir.get_op("random_uniform").reference(np.array(3), shape=(1000,), seed=99,
                                                   dtype=DType.f32)
    assert u.dtype == np.float32 and u.min() >= 0 and u.max() < 1
    np.testing.assert_array_equal(u[:50], ref.astype(np.float32))
    assert abs(u.mean() - 0.5) < 0.03 and abs(u.var() - 1 / 12) < 0.01


def test_kernel_is_bit_exact_with_the_reference_and_advances_the_counter():
    g = rng_graph()
    x = np.zeros((9, 5), np.float32)
    exe = kiln.compile(g)
    first = exe(x)
    np.testing.assert_array_equal(first, kiln.interpret(g, x))
    assert int(exe.params["rng.counter"]) == 8
    second = exe(x)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, kiln.interpret(g, x, params={"rng.counter": np.array(8)}))
    # a smaller batch draws the prefix of the same stream
    exe.params["rng.counter"][...] = 7
    np.testing.assert_array_equal(exe(x[:3]), first[:3])


def test_text_roundtrip_and_type_errors():
    g = rng_graph()
    assert str(kiln.ir.parse(str(g))) == str(g)
    g2 = Graph("bad")
    c = g2.add_param("c", np.array(0, np.int32))
    with pytest.raises(OpTypeError, match="i64 scalar"):
        g2.op("random_uniform", c, shape=(3,), seed=1)


def test_dropout_training_masks_scales_and_is_identity_at_inference():
    kiln.utils.set_random_seed(0)
    m = kiln.Sequential([kiln.Input(shape=(2000,)), layers.Dropout(0.25)])
    g = kiln.lower(m, training=True)
    assert "rng.counter" in g.params and "rng.counter" in g.updated_params
    x = np.ones((4, 2000), np.float32)
    y, upd = kiln.interpret(g, x, return_updates=True)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y[kept], np.float32(1) / np.float32(0.75))
    assert int(upd["rng.counter"]) == 1
    exe = kiln.compile(g)
    np.testing.assert_array_equal(exe(x), y)
    assert not np.array_equal(exe(x), y)          # the next step draws a new mask
    np.testing.assert_array_equal(m.predict(x), x)  # inference: identity
    assert kiln.lower(m).updates == []


def test_dropout_noise_shape_and_seed():
    m = kiln.Sequential([kiln.Input(shape=(6, 50)), layers.Dropout(0.5, noise_shape=(None, 1, 50),
                                                                    seed=3)])
    g = kiln.lower(m, training=True)
    y = kiln.interpret(g, np.ones((3, 6, 50), np.float32))
    assert np.all(y == y[:, :1, :])                  # the mask broadcasts along axis 1
    m2 = kiln.Sequential([kiln.Input(shape=(6, 50)), layers.Dropout(0.5, noise_shape=(None, 1, 50),
                                                                     seed=3)])
    np.testing.assert_array_equal(kiln.interpret(kiln.lower(m2, training=True),
                                                 np.ones((3, 6, 50), np.float32)), y)
