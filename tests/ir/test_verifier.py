"""The verifier: hand-broken graphs are rejected with messages naming the node and
the problem; valid graphs pass."""
import numpy as np
import pytest

from kiln.ir import DType, Graph, OpDef, TensorType, VerifyError, parse, verify
from kiln.ir.graph import Node


def T(*shape, dtype=DType.f32):
    return TensorType(shape, dtype)


def small():
    """graph @g(%x: f32[N,3]) -> f32[N,3]: relu(add(matmul(x, w), b))."""
    g = Graph("g")
    x = g.add_input("x", T("N", 3))
    w = g.add_param("w", np.ones((3, 3), np.float32))
    b = g.add_param("b", np.zeros(3, np.float32))
    g.set_outputs([g.op("relu", g.op("add", g.op("matmul", x, w), b))])
    return g


VALID = [
    small,
    lambda: parse("graph @k() -> f32[2] {\n  %0: f32[2] = constant() {value=[1.0, 2.0]}\n  return %0\n}\n"),
    lambda: parse("graph @p(%x: f32[N,2]) -> (f32[N,2], f32[2,2], f32[N,2]) {\n  param %w: f32[2,2]\n"
                  "  %0: f32[N,2] = matmul(%x, %w)\n  return %0, %w, %x\n}\n"),
    lambda: parse("graph @s(%x: f32[N,T,4]) -> f32[T,N] {\n"
                  "  %0: f32[N,T] = reduce_sum(%x) {axes=[2]}\n"
                  "  %1: f32[T,N] = transpose(%0) {perm=[1, 0]}\n  return %1\n}\n"),
]


@pytest.mark.parametrize("make", VALID)
def test_valid_graphs_pass(make):
    g = make()
    assert verify(g) is g


def test_use_before_def():
    g = small()
    g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]   # add now runs before matmul
    with pytest.raises(VerifyError, match=r"graph @g: node `%0: f32\[N,3\] = add\(%1, %b\)`: operand 0 "
                                          r"\(%1\) is used before it is defined or is not defined in this graph"):
        verify(g)


def test_value_from_another_graph():
    g, other = small(), small()
    n = g.nodes[2]
    g.nodes[2] = Node(n.op, (other.nodes[1].output,), n.attrs, [n.output.type])
    g.outputs = [g.nodes[2].output]
    with pytest.raises(VerifyError, match=r"node `%2: f32\[N,3\] = relu\(%<undefined>\)`: operand 0 "
                                          r"\(<Value add#0: f32\[N,3\]>\) is used before it is defined"):
        verify(g)


def test_input_of_another_graph():
    g, other = small(), small()
    n = g.nodes[0]
    g.nodes[0] = Node(n.op, (other.inputs[0], n.inputs[1]), n.attrs, [n.output.type])
    with pytest.raises(VerifyError, match=r"operand 0 \(%x\) is used before it is defined or is not defined"):
        verify(g)


def test_output_type_does_not_match_inference():
    g = small()
    g.nodes[2].outputs[0].type = T("N", 4)
    with pytest.raises(VerifyError, match=r"node `%2: f32\[N,4\] = relu\(%1\)`: output types f32\[N,4\] do "
                                          r"not match the inferred f32\[N,3\]"):
        verify(g)


def test_output_dtype_does_not_match_inference():
    g = small()
    g.nodes[0].outputs[0].type = T("N", 3, dtype=DType.f64)
    with pytest.raises(VerifyError, match=r"= matmul\(%x, %w\)`: output types f64\[N,3\] do not match "
                                          r"the inferred f32\[N,3\]"):
        verify(g)


def test_operand_types_no_longer_fit():
    g = small()
    g.params["w"].type = T(4, 3)
    g.param_values.pop("w")
    with pytest.raises(VerifyError, match=r"matmul\(%x, %w\)`: matmul: inner dimensions differ"):
        verify(g)


def test_same_value_defined_twice():
    g = small()
    g.nodes.insert(2, g.nodes[1])        # the add node, hence its output, appears twice
    with pytest.raises(VerifyError, match=r"node `%2: f32\[N,3\] = add\(%0, %b\)`: output %2 is defined "
                                          r"twice \(SSA\)"):
        verify(g)


def test_output_shared_by_two_nodes():
    g = small()
    n = g.nodes[2]
    twin = Node(n.op, n.inputs, n.attrs, [n.output.type])
    twin.outputs = n.outputs                 # two nodes claim the same Value
    g.nodes.append(twin)
    with pytest.raises(VerifyError, match=r"relu\(%1\)`: output %3 is defined twice \(SSA\)"):
        verify(g)


def test_output_not_pointing_back():
    g = small()
    n = g.nodes[2]
    n.outputs[0].index = 1
    with pytest.raises(VerifyError, match=r"relu\(%1\)`: output 0 does not point back to this node"):
        verify(g)


def test_graph_output_not_defined():
    g, other = small(), small()
    g.outputs = [g.nodes[2].output, other.nodes[2].output]
    with pytest.raises(VerifyError, match=r"graph @g: output 1 \(<Value relu#0: f32\[N,3\]>\) is not "
                                          r"defined in this graph"):
        verify(g)


def test_no_outputs():
    g = small()
    g.outputs = []
    with pytest.raises(VerifyError, match=r"graph @g: graph has no outputs"):
        verify(g)


def test_param_value_of_wrong_shape():
    g = small()
    g.param_values["b"] = np.zeros(4, np.float32)
    with pytest.raises(VerifyError, match=r"param %b is declared f32\[3\] but its value is f32\[4\]"):
        verify(g)


def test_param_value_of_wrong_dtype():
    g = small()
    g.param_values["w"] = np.ones((3, 3), np.float64)
    with pytest.raises(VerifyError, match=r"param %w is declared f32\[3,3\] but its value is f64\[3,3\]"):
        verify(g)


def test_value_held_for_a_non_param():
    g = small()
    g.param_values["ghost"] = np.zeros(3, np.float32)
    with pytest.raises(VerifyError, match=r"a value is held for %ghost, which is not a param"):
        verify(g)


def test_param_registered_under_another_name():
    g = small()
    g.params["w2"] = g.params.pop("w")
    g.param_values.pop("w")
    with pytest.raises(VerifyError, match=r"param %w2 is not a parameter value named w2"):
        verify(g)


def test_input_listed_twice():
    g = small()
    g.inputs.append(g.inputs[0])
    with pytest.raises(VerifyError, match=r"input %x is listed twice"):
        verify(g)


def test_symbol_no_input_binds():
    g = Graph("g")
    x = g.add_input("x", T("N", 3))
    m = g.add_param("m", type=T("M", 3))
    g.set_outputs([g.op("relu", x), m])
    with pytest.raises(VerifyError, match=r"graph @g: %m has type f32\[M,3\] with symbol\(s\) M that no "
                                          r"input binds"):
        verify(g)


def test_unregistered_op():
    class Fake(OpDef):
        name = "relu"   # pretends to be relu, but is not the registered declaration
        num_inputs = 1

        def infer(self, x):
            return x

    g = small()
    n = g.nodes[2]
    g.nodes[2] = Node(Fake(), n.inputs, n.attrs, [n.output.type])
    g.outputs = [g.nodes[2].output]
    with pytest.raises(VerifyError, match=r"relu\(%1\)`: op relu is not registered"):
        verify(g)


def test_verify_does_not_mutate():
    g = small()
    before = str(g)
    verify(g)
    assert str(g) == before
