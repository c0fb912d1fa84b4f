"""simplify: CSE and algebraic rules, text in / text out, plus BatchNorm folding and
differential checks."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, TensorType, parse, verify
from kiln.passes import PassManager, get_pass
from kiln.passes.simplify import RULES

from .test_fusion import random_fusible_graph
from .test_pass_differential import assert_same, random_graph
from .util import ir, parse_with

simplify = get_pass("simplify")
dce = get_pass("dce")


def run(text, **values):
    return str(verify(dce(simplify(parse_with(text, **values))))).strip()


def test_cse_merges_identical_nodes_and_constants():
    out = run("""
        graph @c(%x: f32[N,4]) -> f32[N,4] {
          %0: f32[N,4] = exp(%x)
          %1: f32[N,4] = exp(%x)
          %2: f32[] = constant() {value=2.0}
          %3: f32[] = constant() {value=2.0}
          %4: f32[N,4] = mul(%0, %2)
          %5: f32[N,4] = mul(%1, %3)
          %6: f32[N,4] = add(%4, %5)
          return %6
        }""")
    assert out == ir("""
        graph @c(%x: f32[N,4]) -> f32[N,4] {
          %0: f32[N,4] = exp(%x)
          %1: f32[] = constant() {value=2.0}
          %2: f32[N,4] = mul(%0, %1)
          %3: f32[N,4] = add(%2, %2)
          return %3
        }""").strip()


@pytest.mark.parametrize("body,expect", [
    ("%0: f32[] = constant() {value=1.0}\n  %1: f32[N,4] = mul(%x, %0)", "return %x"),
    ("%0: f32[] = constant() {value=1.0}\n  %1: f32[N,4] = mul(%0, %x)", "return %x"),
    ("%0: f32[] = constant() {value=0.0}\n  %1: f32[N,4] = add(%x, %0)", "return %x"),
    ("%0: f32[] = constant() {value=0.0}\n  %1: f32[N,4] = sub(%x, %0)", "return %x"),
    ("%0: f32[] = constant() {value=1.0}\n  %1: f32[N,4] = div(%x, %0)", "return %x"),
    ("%0: f32[N,4] = neg(%x)\n  %1: f32[N,4] = neg(%0)", "return %x"),
    ("%0: f32[4,N] = transpose(%x) {perm=[1, 0]}\n  %1: f32[N,4] = transpose(%0) {perm=[1, 0]}", "return %x"),
    ("%0: f32[N,4] = transpose(%x) {perm=[0, 1]}\n  %1: f32[N,4] = exp(%0)", "exp(%x)"),
    ("%0: f32[N,2,2] = reshape(%x) {shape=[N, 2, 2]}\n  %1: f32[N,4] = reshape(%0) {shape=[N, 4]}", "return %x"),
    ("%0: f32[N,4] = cast(%x) {dtype=f32}\n  %1: f32[N,4] = exp(%0)", "exp(%x)"),
])
def test_identities(body, expect):
    out = run(f"graph @i(%x: f32[N,4]) -> f32[N,4] {{\n  {body}\n  return %1\n}}\n")
    assert expect in out
    assert len(out.splitlines()) <= 4


def test_mul_by_one_that_broadcasts_is_kept():
    out = run("""
        graph @b(%x: f32[4]) -> f32[1,4] {
          %0: f32[1,4] = constant() {value=[[1.0, 1.0, 1.0, 1.0]]}
          %1: f32[1,4] = mul(%x, %0)
          return %1
        }""")
    assert "mul(%x, %0)" in out   # x*1 widens [4] to [1,4]: not an identity


def test_reshape_chain_collapses_to_one():
    out = run("""
        graph @r(%x: f32[N,4]) -> f32[N,4,1] {
          %0: f32[N,2,2] = reshape(%x) {shape=[N, 2, 2]}
          %1: f32[N,4,1] = reshape(%0) {shape=[N, 4, 1]}
          return %1
        }""")
    assert out.count("reshape(") == 1 and "reshape(%x) {shape=[N, 4, 1]}" in out


def batchnorm_after_dense(rng):
    g = Graph("bn")
    x = g.add_input("x", TensorType(("N", 8)))
    w = g.add_param("d.kernel", rng.standard_normal((8, 4)).astype("f4"))
    b = g.add_param("d.bias", rng.standard_normal(4).astype("f4"))
    gamma = g.add_param("bn.gamma", (rng.random(4) + .5).astype("f4"))
    beta = g.add_param("bn.beta", rng.standard_normal(4).astype("f4"))
    mean = g.add_param("bn.moving_mean", rng.standard_normal(4).astype("f4"))
    var = g.add_param("bn.moving_variance", (rng.random(4) + .5).astype("f4"))
    y = g.op("add", g.op("matmul", x, w), b)
    scale = g.op("div", gamma, g.op("sqrt", g.op("add", var, g.constant(1e-3))))
    shift = g.op("sub", beta, g.op("mul", mean, scale))
    g.set_outputs([g.op("relu", g.op("add", g.op("mul", y, scale), shift))])
    return g


def test_batchnorm_folds_into_dense_weights_and_bias():
    rng = np.random.default_rng(0)
    g = batchnorm_after_dense(rng)
    out = PassManager(["simplify", "constfold", "dce"]).run(g)
    ops = [n.op.name for n in out.nodes]
    assert [o for o in ops if o != "constant"] == ["matmul", "add", "relu"], ops
    assert len(out.params) == 1                     # the scaled kernel
    w = g.param_values
    scale = w["bn.gamma"] / np.sqrt(w["bn.moving_variance"] + 1e-3)
    folded = next(iter(out.param_values.values()))
    np.testing.assert_allclose(folded, w["d.kernel"] * scale, rtol=1e-6)
    assert_same(g, out, rng)


def test_gathered_rows_moved_among_index_axes_gather_by_moved_indices():
    """transpose(gather(table, idx)) that keeps the table's axes last becomes a gather
    of the transposed indices (an embedding made time-major for an RNN); values equal."""
    text = """
        graph @e(%x: i32[N,5]) -> f32[5,N,3] {
          param %t: f32[7,3]
          %0: f32[N,5,3] = gather(%t, %x) {axis=0}
          %1: f32[5,N,3] = transpose(%0) {perm=[1, 0, 2]}
          return %1
        }"""
    table = np.random.default_rng(0).random((7, 3), dtype=np.float32)
    g = parse_with(text, t=table)
    out = str(verify(dce(simplify(g))))
    assert "transpose(%x) {perm=[1, 0]}" in out and out.count("gather(") == 1
    x = np.random.default_rng(1).integers(0, 7, (4, 5)).astype(np.int32)
    np.testing.assert_array_equal(kiln.interpret(simplify(g), x), table[x].transpose(1, 0, 2))
    # the table's axis moved, or the rows read elsewhere too: kept
    for body in ("%1: f32[N,3,5] = transpose(%0) {perm=[0, 2, 1]}\n  return %1",
                 "%1: f32[5,N,3] = transpose(%0) {perm=[1, 0, 2]}\n  %2: f32[N,5,3] = exp(%0)\n"
                 "  return %1, %2"):
        outs = "f32[N,3,5]" if "0, 2, 1" in body else "f32[5,N,3], f32[N,5,3]"
        kept = run(f"graph @k(%x: i32[N,5]) -> ({outs}) {{\n  param %t: f32[7,3]\n"
                   f"  %0: f32[N,5,3] = gather(%t, %x) {{axis=0}}\n  {body}\n}}\n", t=table)
        assert "transpose(%0)" in kept, kept


def test_rules_are_a_table():
    assert {"mul", "add", "sub", "div", "neg", "transpose", "reshape", "cast"} <= set(RULES)


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_unchanged_by_simplify(seed):
    rng = np.random.default_rng(seed)
    for g in (random_graph(seed), random_fusible_graph(seed)):
        out = PassManager(["simplify"]).run(g)
        assert_same(g, out, rng)
        assert len(out.nodes) <= len(g.nodes) + 4
