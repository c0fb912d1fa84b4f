"""The Keras-ops names kiln.ops adds over the IR ops (math, comparisons, where, arrays,
convolution / pooling), each checked by the interpreter against numpy, and Python
operators on IR values."""
import math

import numpy as np
import pytest

import kiln
from kiln import ops
from kiln.ir import DType, Graph, TensorType

from . import np_refs as ref

RNG = np.random.default_rng(11)
A = RNG.standard_normal((3, 4)).astype(np.float32)
B = RNG.standard_normal((3, 4)).astype(np.float32)


def run(fn, *arrays):
    g = Graph("t")
    ins = [g.add_input(f"x{i}", TensorType(("N",) + a.shape[1:], DType.from_numpy(a.dtype)))
           for i, a in enumerate(arrays)]
    with g.building():
        out = fn(*ins)
        g.set_outputs(out if isinstance(out, (list, tuple)) else [out])
    kiln.ir.verify(g)
    return kiln.interpret(g, *arrays)


ERF = np.vectorize(math.erf)


@pytest.mark.parametrize("fn,want", [
    (ops.abs, np.abs), (ops.square, np.square), (ops.sign, np.sign), (ops.floor, np.floor),
    (ops.erf, ERF), (ops.softplus, lambda x: np.log1p(np.exp(x))), (ops.expm1, np.expm1),
    (lambda x: ops.log1p(ops.abs(x)), lambda x: np.log1p(np.abs(x))),
    (lambda x: ops.rsqrt(ops.abs(x)), lambda x: 1 / np.sqrt(np.abs(x))),
    (ops.reciprocal, lambda x: 1 / x),
    (lambda x: ops.clip(x, -0.5, 0.3), lambda x: np.clip(x, -0.5, 0.3)),
    (lambda x: ops.power(ops.abs(x), 1.5), lambda x: np.abs(x) ** 1.5),
    (ops.relu6, lambda x: np.clip(x, 0, 6)), (ops.silu, lambda x: x / (1 + np.exp(-x))),
    (ops.softsign, lambda x: x / (1 + np.abs(x))),
    (lambda x: ops.leaky_relu(x, 0.1), lambda x: np.where(x > 0, x, 0.1 * x)),
    (ops.gelu, lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))),
    (ops.log_softmax, lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True))),
    (lambda x: ops.logsumexp(x, axis=1), lambda x: np.log(np.exp(x).sum(1))),
    (lambda x: ops.normalize(x, axis=-1), lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)),
    (lambda x: ops.var(x, axis=1), lambda x: x.var(axis=1)),
    (lambda x: ops.std(x, axis=0, keepdims=True), lambda x: x.std(axis=0, keepdims=True)),
    (lambda x: ops.min(x, axis=1), lambda x: x.min(axis=1)),
    (lambda x: ops.celu(x, 0.5),
     lambda x: np.maximum(x, 0) + 0.5 * np.expm1(np.minimum(x, 0) / 0.5)),
])
def test_unary_math(fn, want):
    np.testing.assert_allclose(run(fn, A), want(A.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_comparisons_logic_where_and_argmax():
    got = run(lambda a, b: [ops.cast(ops.greater(a, b), "float32"),
                            ops.cast(ops.less_equal(a, 0.0), "float32"),
                            ops.where(ops.logical_and(a > 0, ops.logical_not(b > 0)), a, b),
                            ops.where(ops.logical_or(a < -1, b >= 1), a * 2, -b),
                            ops.argmax(a, axis=1), ops.argmin(b, axis=0, keepdims=True)], A, B)
    want = [(A > B).astype(np.float32), (A <= 0).astype(np.float32),
            np.where((A > 0) & ~(B > 0), A, B), np.where((A < -1) | (B >= 1), A * 2, -B),
            A.argmax(axis=1), B.argmin(axis=0)[None]]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    assert got[4].dtype == np.int32   # Keras' argmax is int32


def test_array_ops():
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    got = run(lambda v: [ops.concatenate([v, v * 2], axis=1), ops.stack([v, -v], axis=1),
                         ops.expand_dims(v, 2), ops.squeeze(ops.expand_dims(v, -1), -1),
                         ops.take(v, [2, 0, -1], axis=2), ops.pad(v, ((0, 0), (1, 0), (0, 2))),
                         ops.broadcast_to(ops.expand_dims(v, 1), (v.shape[0], 5, 3, 4)),
                         ops.slice(v, (0, 1, 1), (-1, 2, 3)), ops.repeat(v, 2, axis=2),
                         ops.tile(v, (1, 2, 1)), ops.flip(v, axis=1),
                         ops.zeros_like(v) + ops.ones((v.shape[0], 3, 4)),
                         ops.full_like(v, 3.0)], x)
    want = [np.concatenate([x, 2 * x], 1), np.stack([x, -x], 1), x[:, :, None],
            x, np.take(x, [2, 0, 3], axis=2), np.pad(x, ((0, 0), (1, 0), (0, 2))),
            np.broadcast_to(x[:, None], (2, 5, 3, 4)), x[:, 1:3, 1:4], np.repeat(x, 2, axis=2),
            np.tile(x, (1, 2, 1)), x[:, ::-1], np.ones((2, 3, 4)), np.full((2, 3, 4), 3.0)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_one_hot_and_take_with_index_values():
    ids = np.array([[0, 3], [2, 1]], np.int32)
    table = RNG.standard_normal((4, 3)).astype(np.float32)
    got = run(lambda i: [ops.one_hot(i, 4), ops.take(table, i, axis=0)], ids)
    np.testing.assert_array_equal(got[0], np.eye(4, dtype=np.float32)[ids])
    np.testing.assert_allclose(got[1], table[ids])


def test_conv_and_pool_ops():
    x = RNG.standard_normal((2, 7, 6, 3)).astype(np.float32)
    w = RNG.standard_normal((3, 2, 3, 4)).astype(np.float32)
    dw = RNG.standard_normal((3, 3, 3, 2)).astype(np.float32)
    tw = RNG.standard_normal((3, 3, 2, 3)).astype(np.float32)
    got = run(lambda v: [ops.conv(v, w, strides=2, padding="same"),
                         ops.depthwise_conv(v, dw, padding="valid"),
                         ops.conv_transpose(v, tw, strides=2, padding="same"),
                         ops.max_pool(v, 3, strides=2, padding="same"),
                         ops.average_pool(v, (2, 3), padding="valid")], x)
    depth = np.concatenate([ref.conv2d(x[..., c:c + 1], dw[..., c:c + 1, :]) for c in range(3)],
                           axis=-1)
    want = [ref.conv2d(x, w, (2, 2), "same"), depth,
            ref.conv2d_transpose(x, tw, (2, 2), "same"),
            ref.pool2d(x, (3, 3), (2, 2), "same", "max"),
            ref.pool2d(x, (2, 3), (2, 3), "valid", "avg")]
    for g, wv in zip(got, want):
        np.testing.assert_allclose(g, wv, rtol=1e-4, atol=1e-4)
    with pytest.raises(NotImplementedError, match="channels_first"):
        run(lambda v: ops.conv(v, w, data_format="channels_first"), x)


def test_python_operators_on_values():
    got = run(lambda a, b: [a + 1, 1 - a, a * b, 2 / (abs(a) + 1), -a,
                            a @ np.ones((4, 2), np.float32),
                            a ** 2, 2 ** a, a[:, 1], a[:, 1::2], a[..., None][:, -1]], A, B)
    want = [A + 1, 1 - A, A * B, 2 / (np.abs(A) + 1), -A, A @ np.ones((4, 2)), A ** 2, 2 ** A,
            A[:, 1], A[:, 1::2], A[..., None][:, -1]]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert ops.shape is not None and ops.ndim is not None
    with pytest.raises(IndexError, match="only known at run time"):
        run(lambda a: a[0], A)   # the batch axis cannot be indexed
