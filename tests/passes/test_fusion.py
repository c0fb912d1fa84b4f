"""The fusion pass: text-in/text-out rules, and differential tests through the
interpreter and through compiled code (one kernel per group)."""
import re
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, OpTypeError, TensorType, parse, verify
from kiln.passes import PassManager, get_pass
from kiln.passes.fusion import RULES

from .util import ir

fusion = get_pass("fusion")


def fused(text: str) -> str:
    return str(verify(fusion(parse(ir(text)))))


def test_dense_relu_becomes_matmul_with_epilogue():
    out = fused("""
        graph @d(%x: f32[N,8]) -> f32[N,4] {
          param %w: f32[8,4]
          param %b: f32[4]
          %0: f32[N,4] = matmul(%x, %w)
          %1: f32[N,4] = add(%0, %b)
          %2: f32[N,4] = relu(%1)
          return %2
        }""")
    assert out.strip() == ir("""
        graph @d(%x: f32[N,8]) -> f32[N,4] {
          param %w: f32[8,4]
          param %b: f32[4]
          %0: f32[N,4] = fusion(%x, %w, %b) {
            ^(%p0: f32[N,8], %p1: f32[8,4], %p2: f32[4]):
            %0.0: f32[N,4] = matmul(%p0, %p1)
            %0.1: f32[N,4] = add(%0.0, %p2)
            %0.2: f32[N,4] = relu(%0.1)
            yield %0.2
          }
          return %0
        }""").strip()


def test_elementwise_chain_with_scalar_constant_is_one_loop():
    out = fused("""
        graph @e(%x: f32[N,8], %y: f32[8]) -> f32[N,8] {
          %0: f32[] = constant() {value=0.5}
          %1: f32[N,8] = mul(%x, %0)
          %2: f32[N,8] = add(%1, %y)
          %3: f32[N,8] = tanh(%2)
          return %3
        }""")
    assert out.strip() == ir("""
        graph @e(%x: f32[N,8], %y: f32[8]) -> f32[N,8] {
          %0: f32[N,8] = fusion(%x, %y) {
            ^(%p0: f32[N,8], %p1: f32[8]):
            %0.0: f32[] = constant() {value=0.5}
            %0.1: f32[N,8] = mul(%p0, %0.0)
            %0.2: f32[N,8] = add(%0.1, %p1)
            %0.3: f32[N,8] = tanh(%0.2)
            yield %0.3
          }
          return %0
        }""").strip()


def test_value_used_twice_inside_the_group_fuses_and_one_used_outside_is_an_extra_result():
    out = fused("""
        graph @m(%x: f32[N,8]) -> (f32[N,8], f32[N,8]) {
          %0: f32[N,8] = exp(%x)
          %1: f32[N,8] = mul(%0, %0)
          %2: f32[N,8] = neg(%x)
          %3: f32[N,8] = relu(%2)
          %4: f32[N,8] = add(%3, %2)
          return %1, %2
        }""")
    # exp fuses into mul (both uses inside); neg is a graph output read by relu/add (dead code
    # for DCE, but fusion keeps them): it joins their loop as a second result
    assert "%0: f32[N,8] = fusion(%x) {" in out and "%0.0: f32[N,8] = exp(%p0)" in out
    assert "%1: f32[N,8], %2: f32[N,8] = fusion(%x) {" in out
    assert "yield %1.2, %1.0" in out and "return %0, %2" in out


def adam_like():
    g = Graph("adam")
    grad = g.add_input("g", TensorType((4, 8)))
    lr = g.add_input("lr", TensorType(()))
    rng = np.random.default_rng(0)
    w, m, v = (g.add_param(n, rng.random((4, 8), dtype=np.float32)) for n in "wmv")
    m2 = g.op("add", g.op("mul", m, g.op("constant", value=np.float32(0.9))),
              g.op("mul", grad, g.op("constant", value=np.float32(0.1))))
    v2 = g.op("add", v, g.op("mul", grad, grad))
    w2 = g.op("sub", w, g.op("mul", g.op("div", m2, g.op("sqrt", v2)), lr))
    for p, new in ((w, w2), (m, m2), (v, v2)):
        g.add_update(p, new)
    g.set_outputs([])
    return g


def test_optimizer_update_is_one_loop_with_three_results():
    """Adam's m, v and weight updates: m and v are state updates read by the weight's
    update, so all three are computed in one pass (m, v, g, w read once each)."""
    out = str(verify(fusion(adam_like())))
    assert out.count("fusion(") == 1
    assert re.search(r"%\d+: f32\[4,8\], %\d+: f32\[4,8\], %\d+: f32\[4,8\] = fusion\(", out)


def test_optimizer_update_in_place_matches_the_interpreter():
    g = adam_like()
    exe = kiln.compile(g)
    before = {k: v.copy() for k, v in g.param_values.items()}
    grad = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    exe(grad, np.float32(0.01))
    m2 = before["m"] * np.float32(0.9) + grad * np.float32(0.1)
    v2 = before["v"] + grad * grad
    np.testing.assert_allclose(exe.params["m"], m2, rtol=1e-6)
    np.testing.assert_allclose(exe.params["v"], v2, rtol=1e-6)
    np.testing.assert_allclose(exe.params["w"], before["w"] - m2 / np.sqrt(v2) * np.float32(0.01), rtol=1e-5)
    from kiln.passes.memory import classify
    final = exe.graph
    storage = classify(final)
    assert all(storage[v] == ("alias", p) for p, v in final.updates)     # all three in place


def test_no_extra_result_when_an_outside_reader_comes_before_the_group():
    out = fused("""
        graph @o(%x: f32[N,8]) -> (f32[N,8], f32[N,1]) {
          %0: f32[N,8] = neg(%x)
          %1: f32[N,1] = reduce_sum(%0) {axes=[1], keepdims=true}
          %2: f32[N,8] = exp(%x)
          %3: f32[N,8] = add(%2, %1)
          %4: f32[N,8] = mul(%3, %0)
          return %4, %1
        }""")
    # %0 is read by the reduction (which the mul's group reads); it cannot join the mul's loop
    assert "= neg(" in out.split("reduce_sum")[0]


def test_no_extra_result_of_another_shape():
    out = fused("""
        graph @s(%x: f32[N,8], %y: f32[8]) -> (f32[8], f32[N,8]) {
          %0: f32[8] = exp(%y)
          %1: f32[N,8] = add(%x, %0)
          return %0, %1
        }""")
    assert "%0: f32[8] = exp(%y)" in out


def test_softmax_and_transpose_are_not_fused_reduction_takes_prologue():
    out = fused("""
        graph @r(%x: f32[N,8]) -> (f32[N,1], f32[8,N]) {
          %0: f32[N,8] = mul(%x, %x)
          %1: f32[N,1] = reduce_sum(%0) {axes=[1], keepdims=true}
          %2: f32[N,1] = sqrt(%1)
          %3: f32[N,8] = softmax(%x) {axis=-1}
          %4: f32[N,8] = exp(%3)
          %5: f32[8,N] = transpose(%4) {perm=[1, 0]}
          return %2, %5
        }""")
    assert "%0.0: f32[N,8] = mul(%p0, %p0)" in out and "reduce_sum(%0.0)" in out
    assert "%1: f32[N,1] = sqrt(%0)" in out          # no elementwise after a reduction
    assert "%2: f32[N,8] = softmax(%x) {axis=-1}" in out
    assert "%3: f32[N,8] = exp(%2)" in out and "%4: f32[8,N] = transpose(%3)" in out


def test_matmul_does_not_join_a_group_whose_result_is_larger():
    out = fused("""
        graph @b(%x: f32[N,8], %w: f32[8,1], %z: f32[N,4]) -> f32[N,4] {
          %0: f32[N,1] = matmul(%x, %w)
          %1: f32[N,4] = add(%0, %z)
          return %1
        }""")
    assert "%0: f32[N,1] = matmul(%x, %w)" in out and "fusion" not in out


def test_rules_are_data():
    assert {r.group for r in RULES} == {"loop", "epilogue", "reduce"}
    assert all(r.why for r in RULES)


# -- differential: interpreter and compiled code -----------------------------------------------

UNARY = ["neg", "relu", "sigmoid", "tanh", "exp"]
BINARY = ["add", "sub", "mul", "maximum", "minimum"]


def random_fusible_graph(seed: int) -> Graph:
    """Random DAGs rich in what fusion groups: elementwise chains with broadcasting and
    reuse, matmuls feeding epilogues, reductions fed by prologues, scalar constants."""
    rng = np.random.default_rng(seed)
    g = Graph(f"f{seed}")
    pool = [g.add_input("x", TensorType(("N", 6))), g.add_input("y", TensorType(("N", 1, 6)))]
    for i, shape in enumerate([(6,), (6, 6), (1, 6), (6, 1), (3, 6, 6)]):
        pool.append(g.add_param(f"p{i}", rng.uniform(-1, 1, shape).astype(np.float32)))
    for _ in range(25):
        kind = rng.integers(0, 5)
        a, b = pool[rng.integers(len(pool))], pool[rng.integers(len(pool))]
        try:
            if kind == 0:
                name = UNARY[rng.integers(len(UNARY))]
                v = g.op(name, g.op("tanh", a) if name == "exp" else a)
            elif kind == 1:
                v = g.op(BINARY[rng.integers(len(BINARY))], a, b)
            elif kind == 2:
                v = g.op("mul", a, g.constant(float(rng.uniform(-2, 2))))
            elif kind == 3:
                v = g.op("tanh", g.op("matmul", a, b))
            elif a.type.rank:
                v = g.op(["reduce_sum", "reduce_mean", "reduce_max"][rng.integers(3)],
                         g.op("mul", a, a) if rng.integers(2) else a,
                         axes=[int(rng.integers(a.type.rank))], keepdims=bool(rng.integers(2)))
            else:
                continue
        except OpTypeError:
            continue
        pool.append(v)
    batched = [v for v in pool[7:] if "N" in v.type.shape]
    g.set_outputs(batched[-3:] or [pool[0]])
    return verify(g)


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_fused_agree_with_interpreter_and_compiled(seed):
    g = random_fusible_graph(seed)
    out = PassManager(["dce", "fusion"]).run(g)
    exe = kiln.compile(g, passes=["dce", "fusion"])
    assert exe.ir == str(out)
    rng = np.random.default_rng(seed)
    for n in (1, 4):
        xs = [rng.standard_normal(v.type.concrete({"N": n})).astype(np.float32) for v in g.inputs]
        want = kiln.interpret(g, *xs)
        want = want if isinstance(want, tuple) else (want,)
        via_fused = kiln.interpret(out, *xs)
        via_fused = via_fused if isinstance(via_fused, tuple) else (via_fused,)
        got = exe(*xs)
        got = got if isinstance(got, tuple) else (got,)
        for w, f, c in zip(want, via_fused, got):
            np.testing.assert_allclose(f, w, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(c, w, rtol=2e-5, atol=2e-5 * max(1.0, float(np.abs(w).max())))


def test_random_graphs_do_fuse():
    """Guards the test above against a generator whose graphs never fuse."""
    groups = sum(str(PassManager(["dce", "fusion"]).run(random_fusible_graph(s))).count("= fusion(")
                 for s in range(12))
    assert groups >= 24


def kernels(g: Graph) -> int:
    return sum(1 for n in g.nodes if n.op.family not in ("reshape", "constant"))


def test_mlp_kernels_halved():
    m = kiln.Sequential([kiln.Input(shape=(784,)), kiln.layers.Dense(64, activation="relu"),
                         kiln.layers.Dense(64, activation="relu"), kiln.layers.Dense(10, activation="softmax")])
    before = kernels(kiln.lower(m))
    after = kernels(kiln.compile(m).graph)
    assert (before, after) == (9, 4)


@pytest.mark.parametrize("master", ["conv2d", "max_pool2d"])
def test_conv_and_pool_masters_take_an_epilogue(master):
    rng = np.random.default_rng(3)
    g = Graph("c")
    x = g.add_input("x", TensorType(("N", 6, 5, 3)))
    if master == "conv2d":
        w = g.add_param("w", rng.standard_normal((3, 3, 3, 4)).astype(np.float32))
        y = g.op("conv2d", x, w, strides=(1, 1), dilations=(1, 1), pads=(1, 1, 1, 1), groups=1)
        b = g.add_param("b", rng.standard_normal(4).astype(np.float32))
    else:
        y = g.op("max_pool2d", x, window=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0))
        b = g.add_param("b", rng.standard_normal(3).astype(np.float32))
    g.set_outputs([g.op("relu", g.op("add", y, b))])
    # without the layout pass: the conv stays a direct conv2d (the packed, implicit-GEMM
    # conv and its tile epilogue are tested in tests/codegen/test_gemm.py)
    exe = kiln.compile(g, passes=["simplify", "constfold", "dce", "fusion", "memory"])
    assert exe.ir.count("= fusion(") == 1 and f"= {master}(" in exe.ir
    xx = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(exe(xx), kiln.interpret(g, xx), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axes,begin,end,steps", [
    ([2], [0], [4], [1]), ([2], [4], [8], [1]), ([2], [7], [-9], [-1]), ([2], [1], [8], [3]),
    ([1, 2], [1, 2], [3, 6], [1, 2]),
])
def test_slices_are_read_in_place_inside_loop_groups(axes, begin, end, steps):
    rng = np.random.default_rng(5)
    g = Graph("s")
    x = g.add_input("x", TensorType(("N", 3, 8)))
    h = g.op("exp", x)                            # read by two slices: stays a buffer
    a = g.op("slice", h, axes=axes, begin=begin, end=end, steps=steps)
    b = g.op("slice", h, axes=[2], begin=[0], end=[8], steps=[2])
    g.set_outputs([g.op("tanh", g.op("sigmoid", a)), g.op("neg", b)])
    fused = PassManager(["fusion"]).run(g)
    in_groups = [m.op.name for n in fused.nodes for r in n.regions for m in r.nodes]
    assert in_groups.count("slice") == 2 and not any(n.op.name == "slice" for n in fused.nodes)
    exe = kiln.compile(g, passes=["fusion"])
    for n in (1, 4):
        xx = rng.standard_normal((n, 3, 8)).astype(np.float32)
        for got, want in zip(exe(xx), kiln.interpret(g, xx)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_extra_result_not_computed_from_its_param_is_not_written_over_it():
    """a <- neg(x) while the same kernel reads a for another result: writing neg(x) into
    a's buffer could land before a is read (the compiler may reorder a load and a store
    through different noalias pointers), so that update is copied at the end instead."""
    from kiln.passes.memory import classify
    g = Graph("h")
    x = g.add_input("x", TensorType((64, 8)))
    a = g.add_param("a", np.arange(512, dtype=np.float32).reshape(64, 8))
    n = g.op("neg", x)
    g.set_outputs([g.op("add", n, a)])
    g.add_update(a, n)
    exe = kiln.compile(g)
    final = exe.graph
    assert sum(len(nd.outputs) for nd in final.nodes if nd.op.family == "fusion") == 2
    assert all(classify(final)[v] != ("alias", p) for p, v in final.updates)
    xv = np.random.default_rng(2).standard_normal((64, 8)).astype(np.float32)
    a0 = g.param_values["a"].copy()
    np.testing.assert_array_equal(exe(xv), -xv + a0)
    np.testing.assert_array_equal(exe.params["a"], -xv)


def test_no_extra_result_read_by_a_slice_in_the_group():
    """A slice reads its operand in place (a strided view of a buffer): a value a slice
    in the group reads cannot become a value computed inside it."""
    out = fused("""
        graph @r(%x: f32[N,8]) -> (f32[N,8], f32[N,8]) {
          %0: f32[N,8] = neg(%x)
          %1: f32[N,8] = slice(%0) {axes=[1], begin=[7], end=[-9], steps=[-1]}
          %2: f32[N,8] = add(%1, %0)
          return %2, %0
        }""")
    assert "%0: f32[N,8] = neg(%x)" in out
