"""Constant folding: text in, text out."""
import numpy as np
import pytest

import kiln
from kiln.ir import OPS, Attr, AttrKind, OpDef, TensorType, verify
from kiln.passes import PassManager, get_pass

from .util import ir, parse_with

constfold = get_pass("constfold")
inference = PassManager(["constfold", "dce"])   # folding, then removing what it orphaned


def test_constants_fold_to_a_constant_and_chains_fold_in_one_sweep():
    g = parse_with("""
        graph @g(%x: f32[N,2]) -> f32[N,2] {
          %0: f32[2] = constant() {value=[1.0, 2.0]}
          %1: f32[] = constant() {value=3.0}
          %2: f32[2] = add(%0, %1)
          %3: f32[2] = neg(%2)
          %4: f32[N,2] = mul(%x, %3)
          return %4
        }
        """)
    assert str(constfold(g)) == ir("""
        graph @g(%x: f32[N,2]) -> f32[N,2] {
          %0: f32[2] = constant() {value=[1.0, 2.0]}
          %1: f32[] = constant() {value=3.0}
          %2: f32[2] = constant() {value=[4.0, 5.0]}
          %3: f32[2] = constant() {value=[-4.0, -5.0]}
          %4: f32[N,2] = mul(%x, %3)
          return %4
        }
        """)
    assert str(inference.run(g)) == ir("""
        graph @g(%x: f32[N,2]) -> f32[N,2] {
          %0: f32[2] = constant() {value=[-4.0, -5.0]}
          %1: f32[N,2] = mul(%x, %0)
          return %1
        }
        """)


def test_params_with_values_fold():
    g = parse_with("""
        graph @g(%x: f32[N,3]) -> f32[N,3] {
          param %dense.bias: f32[3]
          param %scale: f32[]
          %0: f32[3] = sqrt(%dense.bias)
          %1: f32[3] = mul(%0, %scale)
          %2: f32[N,3] = add(%x, %1)
          return %2
        }
        """, dense__bias=[0.0, 1.0, 4.0], scale=-0.5)
    out = inference.run(g)
    assert str(out) == ir("""
        graph @g(%x: f32[N,3]) -> f32[N,3] {
          %0: f32[3] = constant() {value=[-0.0, -0.5, -1.0]}
          %1: f32[N,3] = add(%x, %0)
          return %1
        }
        """)
    assert out.param_values == {}


def test_params_without_values_do_not_fold():
    text = ir("""
        graph @g(%x: f32[N,3]) -> f32[N,3] {
          param %b: f32[3]
          %0: f32[3] = exp(%b)
          %1: f32[N,3] = add(%x, %0)
          return %1
        }
        """)
    assert str(constfold(parse_with(text))) == text


def test_large_results_become_params_named_fold():
    g = parse_with("""
        graph @g(%x: f32[N,4]) -> (f32[N,5], f32[4,5]) {
          param %w: f32[4,5]
          param %fold: f32[5]
          %0: f32[] = constant() {value=2.0}
          %1: f32[4,5] = mul(%w, %0)
          %2: f32[4,5] = add(%1, %fold)
          %3: f32[N,5] = matmul(%x, %2)
          return %3, %1
        }
        """, w=np.arange(20).reshape(4, 5), fold=np.arange(5))
    out = inference.run(g)
    assert str(out) == ir("""
        graph @g(%x: f32[N,4]) -> (f32[N,5], f32[4,5]) {
          param %fold.1: f32[4,5]
          param %fold.2: f32[4,5]
          %0: f32[N,5] = matmul(%x, %fold.2)
          return %0, %fold.1
        }
        """)
    w = np.arange(20, dtype=np.float32).reshape(4, 5)
    np.testing.assert_array_equal(out.param_values["fold.1"], w * 2)
    np.testing.assert_array_equal(out.param_values["fold.2"], w * 2 + np.arange(5))
    assert out.param_values["fold.2"].dtype == np.float32
    verify(out)


@pytest.mark.parametrize("n,folded_into", [(16, "constant"), (17, "param")])
def test_constant_size_limit(n, folded_into):
    g = parse_with(f"""
        graph @g() -> f32[{n}] {{
          param %p: f32[{n}]
          %0: f32[{n}] = neg(%p)
          return %0
        }}
        """, p=np.arange(n))
    out = inference.run(g)
    if folded_into == "constant":
        assert out.params == {} and [nd.op.name for nd in out.nodes] == ["constant"]
        assert out.nodes[0].attrs["value"].tolist() == [-float(i) for i in range(n)]
    else:
        assert list(out.params) == ["fold"] and out.nodes == []
        assert out.outputs == [out.params["fold"]]
        assert out.param_values["fold"].tolist() == [-float(i) for i in range(n)]


def test_graph_outputs_fold_and_ints_and_casts():
    g = parse_with("""
        graph @g() -> (i32[3], f32[3], f32[]) {
          %0: i32[3] = constant() {value=[1, -2, 3]}
          %1: i32[3] = mul(%0, %0)
          %2: f32[3] = cast(%1) {dtype=f32}
          %3: f32[3] = log(%2)
          %4: f32[] = constant() {value=0.0}
          %5: f32[] = log(%4)
          return %1, %2, %5
        }
        """)
    assert str(inference.run(g)) == ir("""
        graph @g() -> (i32[3], f32[3], f32[]) {
          %0: i32[3] = constant() {value=[1, 4, 9]}
          %1: f32[3] = constant() {value=[1.0, 4.0, 9.0]}
          %2: f32[] = constant() {value=-inf}
          return %0, %1, %2
        }
        """)


def test_attributes_are_used_when_folding():
    g = parse_with("""
        graph @g() -> (f32[3,2], f32[1,3], f32[6]) {
          %0: f32[2,3] = constant() {value=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}
          %1: f32[3,2] = transpose(%0) {perm=[1, 0]}
          %2: f32[1,3] = reduce_max(%0) {axes=[0], keepdims=true}
          %3: f32[6] = reshape(%0) {shape=[-1]}
          return %1, %2, %3
        }
        """)
    assert str(inference.run(g)) == ir("""
        graph @g() -> (f32[3,2], f32[1,3], f32[6]) {
          %0: f32[3,2] = constant() {value=[[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]}
          %1: f32[1,3] = constant() {value=[[4.0, 5.0, 6.0]]}
          %2: f32[6] = constant() {value=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}
          return %0, %1, %2
        }
        """)


def test_constants_alone_are_not_refolded():
    text = ir("""
        graph @g(%x: f32[2]) -> (f32[2], f32[17]) {
          %0: f32[2] = constant() {value=[1.0, 2.0]}
          %1: f32[17] = constant() {value=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0]}
          %2: f32[2] = add(%x, %0)
          return %2, %1
        }
        """)
    out = constfold(parse_with(text))
    assert str(out) == text and out.params == {}


@pytest.fixture
def broadcast_to_op():
    """A throwaway op whose output shape comes from an attribute and may be symbolic."""
    class BroadcastTo(OpDef):
        name = "test_broadcast_to"
        num_inputs = 1
        attrs = (Attr("shape", AttrKind.SHAPE),)

        def infer(self, x, *, shape):
            return TensorType(shape, x.dtype)

        def reference(self, x, *, shape):
            return np.broadcast_to(x, shape).copy()

    OPS["test_broadcast_to"] = BroadcastTo()
    yield
    del OPS["test_broadcast_to"]


def test_symbolic_outputs_never_fold(broadcast_to_op):
    text = ir("""
        graph @g(%x: f32[N,2]) -> (f32[N,2], f32[3,2]) {
          %0: f32[2] = constant() {value=[1.0, 2.0]}
          %1: f32[N,2] = test_broadcast_to(%0) {shape=[N, 2]}
          %2: f32[N,2] = add(%x, %1)
          %3: f32[3,2] = test_broadcast_to(%0) {shape=[3, 2]}
          return %2, %3
        }
        """)
    out = constfold(parse_with(text))
    assert [n.op.name for n in out.nodes] == ["constant", "test_broadcast_to", "add", "constant"]
    assert out.nodes[3].attrs["value"].tolist() == [[1.0, 2.0]] * 3
    x = np.ones((4, 2), np.float32)
    for a, b in zip(kiln.interpret(out, x), kiln.interpret(parse_with(text), x)):
        np.testing.assert_array_equal(a, b)


def test_input_graph_is_left_alone():
    g = parse_with("""
        graph @g(%x: f32[3]) -> f32[3] {
          param %p: f32[3]
          %0: f32[3] = exp(%p)
          %1: f32[3] = add(%x, %0)
          return %1
        }
        """, p=[0, 0, 0])
    before = str(g)
    out = constfold(g)
    assert str(g) == before and g.param_values["p"].tolist() == [0, 0, 0]
    assert str(out) != before
