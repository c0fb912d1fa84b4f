"""Dead-code elimination: text in, text out."""
import numpy as np

import kiln
from kiln.ir import verify
from kiln.passes import get_pass

from .util import ir, parse_with

dce = get_pass("dce")


def test_drops_dead_nodes_and_unused_params():
    g = parse_with("""
        graph @g(%x: f32[N,3], %unused_input: f32[2]) -> f32[N,3] {
          param %w: f32[3,3]
          param %b: f32[3]
          param %dead.w: f32[3,3]
          %0: f32[N,3] = matmul(%x, %w)
          %1: f32[N,3] = matmul(%x, %dead.w)
          %2: f32[N,3] = relu(%1)
          %3: f32[N,3] = add(%0, %b)
          %4: f32[] = constant() {value=2.0}
          %5: f32[N,3] = mul(%3, %4)
          %6: f32[N,3] = exp(%5)
          return %5
        }
        """, w=np.eye(3), b=[1, 2, 3], dead__w=np.ones((3, 3)))
    out = dce(g)
    assert str(out) == ir("""
        graph @g(%x: f32[N,3], %unused_input: f32[2]) -> f32[N,3] {
          param %w: f32[3,3]
          param %b: f32[3]
          %0: f32[N,3] = matmul(%x, %w)
          %1: f32[N,3] = add(%0, %b)
          %2: f32[] = constant() {value=2.0}
          %3: f32[N,3] = mul(%1, %2)
          return %3
        }
        """)
    verify(out)
    assert sorted(out.param_values) == ["b", "w"]          # the dead param's value is gone too
    assert out.param_values["b"].tolist() == [1, 2, 3]
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(kiln.interpret(out, x, np.zeros(2)), kiln.interpret(g, x, np.zeros(2)))


def test_nothing_dead_is_unchanged():
    text = ir("""
        graph @g(%x: f32[N,3]) -> (f32[N,3], f32[3]) {
          param %b: f32[3]
          %0: f32[N,3] = add(%x, %b)
          %1: f32[3] = reduce_sum(%0) {axes=[0], keepdims=false}
          return %0, %1
        }
        """)
    g = parse_with(text)
    out = dce(g)
    assert str(out) == text
    assert out is not g and out.nodes[0] is not g.nodes[0]     # a new graph


def test_outputs_that_are_params_and_inputs_keep_them():
    g = parse_with("""
        graph @g(%x: f32[2]) -> (f32[2], f32[2]) {
          param %p: f32[2]
          param %q: f32[2]
          %0: f32[2] = add(%x, %q)
          return %p, %x
        }
        """, p=[1, 2], q=[3, 4])
    assert str(dce(g)) == ir("""
        graph @g(%x: f32[2]) -> (f32[2], f32[2]) {
          param %p: f32[2]
          return %p, %x
        }
        """)


def test_param_shared_by_live_and_dead_nodes_stays():
    g = parse_with("""
        graph @g(%x: f32[2]) -> f32[2] {
          param %p: f32[2]
          %0: f32[2] = mul(%p, %p)
          %1: f32[2] = add(%x, %p)
          return %1
        }
        """)
    assert str(dce(g)) == ir("""
        graph @g(%x: f32[2]) -> f32[2] {
          param %p: f32[2]
          %0: f32[2] = add(%x, %p)
          return %0
        }
        """)


def test_dead_diamond_feeding_only_dead_nodes():
    g = parse_with("""
        graph @g(%x: f32[2]) -> f32[2] {
          %0: f32[2] = exp(%x)
          %1: f32[2] = neg(%0)
          %2: f32[2] = relu(%0)
          %3: f32[2] = add(%1, %2)
          %4: f32[2] = tanh(%x)
          return %4
        }
        """)
    assert str(dce(g)) == ir("""
        graph @g(%x: f32[2]) -> f32[2] {
          %0: f32[2] = tanh(%x)
          return %0
        }
        """)


def test_input_graph_is_left_alone():
    g = parse_with("""
        graph @g(%x: f32[2]) -> f32[2] {
          param %p: f32[2]
          %0: f32[2] = exp(%x)
          return %x
        }
        """, p=[1, 2])
    before = str(g)
    dce(g)
    assert str(g) == before and "p" in g.param_values and len(g.nodes) == 1
