"""The interpreter: symbol binding, input validation, parameter values, and the check
of every result against its type."""
import numpy as np
import pytest

import kiln
from kiln.ir import OPS, DType, Graph, OpDef, TensorType, parse


def T(*shape, dtype=DType.f32):
    return TensorType(shape, dtype)


def two_inputs():
    g = Graph("g")
    x = g.add_input("x", T("N", 3))
    y = g.add_input("y", T("N", 3))
    g.set_outputs([g.op("add", x, y)])
    return g


@pytest.mark.parametrize("n", [1, 2, 33])
def test_symbol_binds_from_inputs(n):
    g = two_inputs()
    x = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
    out = kiln.interpret(g, x, 2 * x)
    assert out.shape == (n, 3) and out.dtype == np.float32
    assert out.tolist() == (3 * x).tolist()


def test_inconsistent_symbol_across_inputs():
    g = two_inputs()
    with pytest.raises(ValueError, match=r"input %y: symbol N is 2 elsewhere, got 3 in shape \(3, 3\)"):
        kiln.interpret(g, np.zeros((2, 3)), np.zeros((3, 3)))


def test_inconsistent_symbol_within_one_input():
    g = Graph()
    x = g.add_input("x", T("N", "N"))
    g.set_outputs([g.op("relu", x)])
    kiln.interpret(g, np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"input %x: symbol N is 4 elsewhere, got 5 in shape \(4, 5\)"):
        kiln.interpret(g, np.zeros((4, 5)))


def test_wrong_rank():
    g = two_inputs()
    with pytest.raises(ValueError, match=r"input %x: expected rank 2 \(f32\[N,3\]\), got shape \(2, 3, 1\)"):
        kiln.interpret(g, np.zeros((2, 3, 1)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"input %y: expected rank 2 \(f32\[N,3\]\), got shape \(3,\)"):
        kiln.interpret(g, np.zeros((2, 3)), np.zeros(3))


def test_wrong_static_dim():
    g = two_inputs()
    with pytest.raises(ValueError, match=r"input %y: expected shape f32\[N,3\], got \(2, 4\)"):
        kiln.interpret(g, np.zeros((2, 3)), np.zeros((2, 4)))


def test_wrong_number_of_inputs():
    g = two_inputs()
    with pytest.raises(ValueError, match=r"graph @g takes 2 input\(s\), got 1"):
        kiln.interpret(g, np.zeros((2, 3)))


def test_inputs_are_converted_to_the_declared_dtype():
    g = Graph()
    x = g.add_input("x", T(3, dtype=DType.f64))
    g.set_outputs([g.op("neg", x)])
    out = kiln.interpret(g, [1, 2, 3])
    assert out.dtype == np.float64 and out.tolist() == [-1.0, -2.0, -3.0]


def test_missing_param_value():
    g = parse("graph @g(%x: f32[N,3]) -> f32[N,3] {\n  param %b: f32[3]\n"
              "  %0: f32[N,3] = add(%x, %b)\n  return %0\n}\n")
    with pytest.raises(ValueError, match=r"param %b has no value \(pass params=\{'b': array\}\)"):
        kiln.interpret(g, np.zeros((2, 3)))
    out = kiln.interpret(g, np.zeros((2, 3)), params={"b": np.array([1, 2, 3], np.float32)})
    assert out.tolist() == [[1, 2, 3], [1, 2, 3]]


def test_params_given_override_held_values():
    g = Graph()
    x = g.add_input("x", T(2))
    b = g.add_param("b", np.array([1.0, 1.0], np.float32))
    g.set_outputs([g.op("mul", x, b)])
    assert kiln.interpret(g, np.array([2.0, 3.0])).tolist() == [2.0, 3.0]
    assert kiln.interpret(g, np.array([2.0, 3.0]), params={"b": np.array([0.5, 2.0], np.float32)}).tolist() \
        == [1.0, 6.0]


def test_several_outputs_come_back_as_a_tuple():
    g = Graph()
    x = g.add_input("x", T(2))
    g.set_outputs([g.op("neg", x), x])
    out = kiln.interpret(g, np.array([1.0, 2.0]))
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].tolist() == [-1.0, -2.0] and out[1].tolist() == [1.0, 2.0]


def test_symbolic_reshape_attr_is_made_concrete():
    g = Graph()
    x = g.add_input("x", T("N", 2, 3))
    g.set_outputs([g.op("reshape", x, shape=["N", 6])])
    for n in (1, 5):
        assert kiln.interpret(g, np.zeros((n, 2, 3))).shape == (n, 6)


@pytest.fixture
def lying_op():
    """An op whose reference disagrees with its type inference."""
    class Lies(OpDef):
        name = "test_lies"
        num_inputs = 1

        def infer(self, x):
            return x

        def reference(self, x):
            return np.concatenate([x, x]).astype(np.float64)

    OPS["test_lies"] = Lies()
    yield
    del OPS["test_lies"]


def test_reference_disagreeing_with_its_type_is_caught(lying_op):
    g = Graph()
    x = g.add_input("x", T("N"))
    g.set_outputs([g.op("test_lies", x)])
    with pytest.raises(AssertionError, match=r"reference of test_lies gave float64\[4\], its type says "
                                             r"f32\[N\] = float32\[2\]"):
        kiln.interpret(g, np.zeros(2))
