"""kiln.ops inside a graph being built, checked by the interpreter against numpy."""
import numpy as np
import pytest

import kiln
from kiln import layers, ops
from kiln.ir import Graph, TensorType


def run(fn, *arrays):
    g = Graph("t")
    ins = [g.add_input(f"x{i}", TensorType(("N",) + a.shape[1:])) for i, a in enumerate(arrays)]
    with g.building():
        g.set_outputs([fn(*ins)])
    kiln.ir.verify(g)
    return kiln.interpret(g, *arrays), g


A = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
B = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)


@pytest.mark.parametrize("fn,ref", [
    (ops.add, np.add), (ops.subtract, np.subtract), (ops.multiply, np.multiply),
    (ops.divide, np.divide), (ops.maximum, np.maximum), (ops.minimum, np.minimum),
])
def test_binary(fn, ref):
    y, _ = run(fn, A, B)
    np.testing.assert_allclose(y, ref(A, B), rtol=1e-6)


@pytest.mark.parametrize("fn,ref", [
    (ops.negative, np.negative), (ops.exp, np.exp), (ops.tanh, np.tanh),
    (ops.relu, lambda x: np.maximum(x, 0)), (ops.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    (lambda x: ops.log(ops.exp(x)), lambda x: x), (lambda x: ops.sqrt(ops.multiply(x, x)), np.abs),
])
def test_unary(fn, ref):
    y, _ = run(fn, A)
    np.testing.assert_allclose(y, ref(A), rtol=1e-5, atol=1e-6)


def test_scalars_become_constants_of_the_other_dtype():
    y, g = run(lambda x: ops.add(ops.multiply(x, 2), 0.5), A)
    np.testing.assert_allclose(y, A * 2 + 0.5, rtol=1e-6)
    consts = [n for n in g.nodes if n.op.name == "constant"]
    assert [str(n.outputs[0].type) for n in consts] == ["f32[]", "f32[]"]
    y, _ = run(lambda x: ops.subtract(1.0, x), A)
    np.testing.assert_allclose(y, 1 - A, rtol=1e-6)


def test_reductions_softmax_matmul_shapes():
    y, _ = run(lambda x: ops.sum(x), A)
    np.testing.assert_allclose(y, A.sum(), rtol=1e-5)
    y, _ = run(lambda x: ops.mean(x, axis=1, keepdims=True), A)
    np.testing.assert_allclose(y, A.mean(axis=1, keepdims=True), rtol=1e-5)
    y, _ = run(lambda x: ops.max(x, axis=(0, 1)), A)
    np.testing.assert_allclose(y, A.max(), rtol=1e-6)
    y, _ = run(lambda x: ops.softmax(x, axis=0), A)
    e = np.exp(A - A.max(0))
    np.testing.assert_allclose(y, e / e.sum(0), rtol=1e-5)
    y, _ = run(lambda x, w: ops.matmul(x, ops.transpose(w)), A, B)
    np.testing.assert_allclose(y, A @ B.T, rtol=1e-5, atol=1e-6)
    y, _ = run(lambda x: ops.reshape(x, (-1, 2, 2)), A)
    np.testing.assert_array_equal(y, A.reshape(-1, 2, 2))
    y, _ = run(lambda x: ops.reshape(x, (None, 2, -1)), A)
    np.testing.assert_array_equal(y, A.reshape(3, 2, 2))
    y, _ = run(lambda x: ops.transpose(ops.reshape(x, (None, 2, 2)), (0, 2, 1)), A)
    np.testing.assert_array_equal(y, A.reshape(3, 2, 2).transpose(0, 2, 1))
    y, g = run(lambda x: ops.cast(x, "float64"), A)
    assert y.dtype == np.float64


def test_variables_resolve_to_named_params_once():
    d = layers.Dense(2)
    d.build((None, 4))

    def fn(x):
        return ops.add(ops.matmul(x, d.kernel), ops.add(d.bias, d.bias))

    y, g = run(fn, A)
    assert list(g.params) == ["dense.kernel", "dense.bias"]
    w, b = d.get_weights()
    np.testing.assert_allclose(y, A @ w + 2 * b, rtol=1e-5, atol=1e-6)


def test_errors():
    with pytest.raises(RuntimeError, match="no graph is being built"):
        ops.relu(1.0)
    with pytest.raises(kiln.ir.OpTypeError, match="inner dimensions differ"):
        run(lambda x: ops.matmul(x, x), A)
    with pytest.raises(kiln.ir.OpTypeError, match="dtypes differ"):
        run(lambda x: ops.add(x, ops.cast(x, "int32")), A)
    with pytest.raises(TypeError, match="expected an IR Value"):
        run(lambda x: ops.add(x, "a"), A)
