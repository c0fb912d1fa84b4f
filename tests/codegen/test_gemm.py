"""The packed GEMM microkernel and its fused epilogues, against numpy written here.

Shapes cover full MR-row blocks and leftover rows, panel widths that divide n and a
partial last panel, n smaller than one panel, batch dims, and epilogue operands
broadcast in every way an epilogue sees them."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, TensorType
from kiln.passes import PassManager, pipeline
from kiln.passes.layout import panel_width

COVERED = {"pack_panels", "matmul_packed", "conv2d_packed"}
rng = np.random.default_rng(7)


def dense_graph(k, p, a_shape=("N",), epilogue=None):
    g = Graph("d")
    x = g.add_input("x", TensorType((*a_shape, k)))
    w = g.add_param("w", rng.standard_normal((k, p)).astype(np.float32))
    y = g.op("matmul", x, w)
    if epilogue:
        y = epilogue(g, y)
    g.set_outputs([y])
    return g


@pytest.mark.parametrize("k,p", [(7, 1), (7, 5), (13, 32), (13, 33), (64, 64), (3, 70), (33, 100)])
def test_packed_gemm_matches_numpy_for_all_row_counts(k, p):
    g = dense_graph(k, p)
    exe = kiln.compile(g)
    assert "matmul_packed" in exe.ir          # the layout pass took it
    w = g.param_values["w"].astype(np.float64)
    for m in (1, 5, 6, 7, 13, 37):
        x = rng.standard_normal((m, k)).astype(np.float32)
        np.testing.assert_allclose(exe(x), x @ w, rtol=1e-5, atol=1e-5 * np.sqrt(k))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k,panels,extra", [(19, 4, 5), (200, 8, 0), (9, 9, 3)])
def test_leftover_rows_in_pairs_over_grouped_panels(k, panels, extra, threads):
    """Rows past the last full register tile go two at a time over groups of panels,
    then one at a time (an odd row, panels past the groups, a partial panel): every
    row count from 1 to 2 tiles + 5, split across threads or not."""
    p = panels * panel_width() + extra
    g = dense_graph(k, p)
    exe = kiln.compile(g, threads=threads, cache=False)
    w = g.param_values["w"].astype(np.float64)
    for m in (*range(1, 18), 37):
        x = rng.standard_normal((m, k)).astype(np.float32)
        np.testing.assert_allclose(exe(x), x @ w, rtol=1e-5, atol=1e-5 * np.sqrt(k))


def test_batch_dims_flatten_into_rows():
    g = dense_graph(9, 20, a_shape=("N", 3))
    exe = kiln.compile(g)
    x = rng.standard_normal((4, 3, 9)).astype(np.float32)
    np.testing.assert_allclose(exe(x), x @ g.param_values["w"], rtol=1e-5, atol=1e-5)


EPILOGUES = {
    "bias_relu": (lambda g, y, p: g.op("relu", g.op("add", y, g.add_param("b", rng.standard_normal(p).astype("f4")))),
                  lambda y, v: np.maximum(y + v["b"], 0)),
    "residual": (lambda g, y, p: g.op("add", y, g.add_input("r", TensorType(("N", 3, p)))),
                 None),
    "row_broadcast": (lambda g, y, p: g.op("mul", y, g.add_param("s", rng.standard_normal((3, 1)).astype("f4"))),
                      lambda y, v: y * v["s"]),
    "scalar": (lambda g, y, p: g.op("tanh", g.op("mul", y, g.constant(0.25))),
               lambda y, v: np.tanh(y * 0.25)),
}


@pytest.mark.parametrize("name", list(EPILOGUES))
@pytest.mark.parametrize("p", [8, 33])
def test_fused_epilogues_on_tiles(name, p):
    build, ref = EPILOGUES[name]
    g = dense_graph(11, p, a_shape=("N", 3), epilogue=lambda g, y: build(g, y, p))
    exe = kiln.compile(g)
    assert exe.ir.count("= fusion(") == 1 and "matmul_packed(" in exe.ir
    x = rng.standard_normal((5, 3, 11)).astype(np.float32)
    y = x.astype(np.float64) @ g.param_values["w"]
    if name == "residual":
        r = rng.standard_normal((5, 3, p)).astype(np.float32)
        got, want = exe(x, r), y + r
    else:
        got, want = exe(x), ref(y, g.param_values)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_runtime_pack_panels_kernel():
    g = Graph("p")
    x = g.add_input("x", TensorType((5, 11)))
    g.set_outputs([g.op("pack_panels", x, nr=4)])
    a = rng.standard_normal((5, 11)).astype(np.float32)
    np.testing.assert_array_equal(kiln.compile(g, passes=[])(a), kiln.interpret(g, a))


@pytest.mark.parametrize("nr", [4, 8, 16, 32])
@pytest.mark.parametrize("shape,perm", [
    ((40, 64), None), ((40, 70), None),            # whole panels (vector rows) and a partial one
    ((37, 70), None), ((301, 100), None),          # rows past whole PACK_ROWS units; split on threads
    ((64, 48), (1, 0)), ((37, 70), (1, 0)),        # transposes: whole KB blocks, K tail, partial panel
    ((3, 33, 40), (0, 2, 1)), ((2, 16, 3, 32), (0, 2, 3, 1)),   # batched, through a permutation
    ((5, 3, 32), (1, 0, 2)),                       # P contiguous, batch dims swapped
])
def test_runtime_pack_panels_vector_paths_match_the_interpreter(nr, shape, perm):
    """pack_panels copies whole panels by vectors and transposes S x S blocks in
    registers; every path (and the element-by-element rest) is a pure copy, so the
    result is bit for bit the interpreter's -- at batch sizes given at run time too."""
    g = Graph("p")
    dyn = 1 if perm and perm[-1] == 0 else 0      # P stays static
    x = g.add_input("x", TensorType(tuple("N" if i == dyn else d for i, d in enumerate(shape))))
    attrs = {"nr": nr} if perm is None else {"nr": nr, "perm": perm}
    g.set_outputs([g.op("pack_panels", x, **attrs)])
    exe = kiln.compile(g, passes=[], threads=2)
    for n in (shape[dyn], 1):
        a = rng.standard_normal(tuple(n if i == dyn else d for i, d in enumerate(shape)))
        a = a.astype(np.float32)
        np.testing.assert_array_equal(exe(a), kiln.interpret(g, a))


def test_layout_pass_packs_constant_weights_once_at_compile_time():
    g = dense_graph(16, 40)
    out = PassManager(["layout", "constfold", "dce"]).run(g)
    names = [n.op.name for n in out.nodes]
    assert names == ["matmul_packed"]                       # packing was folded away
    (packed,) = out.param_values.values()
    nr = panel_width()
    assert packed.shape == (-(-40 // nr), 16, nr)
    assert "layout" in pipeline("inference")


def test_layout_packs_run_time_operands_and_absorbs_transposes():
    """x^T @ dy and dy @ W^T (a backward pass): packed per call, no transpose left."""
    g = Graph("bwd")
    x = g.add_input("x", TensorType(("N", 37)))
    dy = g.add_input("dy", TensorType(("N", 45)))
    w = g.add_input("w", TensorType((37, 45)))
    dw = g.op("matmul", g.op("transpose", x, perm=(1, 0)), dy)           # [37, 45], K = N
    dx = g.op("matmul", dy, g.op("transpose", w, perm=(1, 0)))           # [N, 37]
    g.set_outputs([dw, dx])
    out = PassManager(["layout", "dce"]).run(g)
    names = [n.op.name for n in out.nodes]
    assert "transpose" not in names and "matmul" not in names
    assert names.count("matmul_packed") == 2
    packs = [n for n in out.nodes if n.op.name == "pack_panels"]
    assert sorted(tuple(n.attrs["perm"]) for n in packs) == [(), (1, 0)]
    assert any(n.attrs["transpose_a"] for n in out.nodes if n.op.name == "matmul_packed")
    exe = kiln.compile(out, passes=[], cache=False)
    for n in (1, 7, 64):
        xs = [rng.standard_normal(s).astype(np.float32) for s in ((n, 37), (n, 45), (37, 45))]
        got_dw, got_dx = exe(*xs)
        np.testing.assert_allclose(got_dw, xs[0].T @ xs[1], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got_dx, xs[1] @ xs[2].T, rtol=1e-4, atol=1e-4)
        ref = kiln.interpret(out, *xs)
        np.testing.assert_allclose(got_dw, ref[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_matmul_packed_transpose_a_symbolic_k(threads):
    """matmul_packed{transpose_a} with the batch as the inner axis, several panel
    counts (split by panels and by rows), against numpy."""
    for m, p in ((5, 3), (200, 10), (13, 130)):
        g = Graph("ta")
        a = g.add_input("a", TensorType(("N", m)))
        b = g.add_input("b", TensorType(("N", p)))
        g.set_outputs([g.op("matmul_packed", a, g.op("pack_panels", b, nr=panel_width()),
                            n=p, transpose_a=True)])
        exe = kiln.compile(g, passes=[], cache=False, threads=threads)
        for n in (0, 1, 6, 50):
            av = rng.standard_normal((n, m)).astype(np.float32)
            bv = rng.standard_normal((n, p)).astype(np.float32)
            np.testing.assert_allclose(exe(av, bv), av.T @ bv, rtol=1e-4, atol=1e-4)


def _vector_epilogue_pair(monkeypatch, g, threads=2):
    """``g`` compiled with the epilogue in registers and with the pass over stored rows."""
    from kiln.codegen.llvm import fused
    exes = []
    for on in (True, False):
        monkeypatch.setattr(fused, "VECTOR_EPILOGUE", on)
        exes.append(kiln.compile(g, threads=threads, cache=False, tiered=False))
    return exes


def _epilogue_arith(g, y, r, s):
    y = g.op("maximum", g.op("mul", g.op("relu", g.op("sub", y, r)), s), g.constant(-0.5))
    return g.op("minimum", y, g.op("square", r))


def _epilogue_arith_ref(y, r, s):
    return np.minimum(np.maximum(np.maximum(y - r, 0) * s, -0.5), r ** 2)


def _epilogue_math(g, y, r, s):     # a GELU, a relu's gradient, sigmoid, tanh, exp, sqrt, abs
    gelu = g.op("mul", g.op("mul", y, g.constant(0.5)),
                g.op("add", g.op("erf", g.op("mul", y, g.constant(0.7071067811865476))), g.constant(1.0)))
    grad = g.op("where", g.op("greater", r, g.constant(0.0)), gelu, g.op("tanh", y))
    t = g.op("add", grad, g.op("mul", g.op("sigmoid", s), g.op("exp", g.op("neg", g.op("abs", r)))))
    return g.op("add", t, g.op("sqrt", g.op("abs", y)))


def _epilogue_math_ref(y, r, s):
    from math import erf
    gelu = 0.5 * y * (1 + np.vectorize(erf)(y / np.sqrt(2)))
    return (np.where(r > 0, gelu, np.tanh(y)) + np.exp(-np.abs(r)) / (1 + np.exp(-s))
            + np.sqrt(np.abs(y)))


@pytest.mark.parametrize("epilogue", [(_epilogue_arith, _epilogue_arith_ref),
                                      (_epilogue_math, _epilogue_math_ref)], ids=["arith", "math"])
@pytest.mark.parametrize("threads", [1, 2])
def test_register_epilogue_equals_the_row_pass_bit_for_bit(monkeypatch, threads, epilogue):
    """A GEMM's epilogue made of plain float ops runs on the accumulators before they are
    stored: full tiles, row pairs over grouped panels, single rows, and the partial panel
    (still a pass over the stored row) give the row pass's bits, and numpy's values."""
    p = 4 * panel_width() + 5
    g = Graph("e")
    x = g.add_input("x", TensorType(("N", 21)))
    r = g.add_input("r", TensorType(("N", p)))
    s = g.add_input("s", TensorType(("N", 1)))
    w = g.add_param("w", rng.standard_normal((21, p)).astype(np.float32))
    bias = g.add_param("b", rng.standard_normal(p).astype(np.float32))
    build, ref = epilogue
    g.set_outputs([build(g, g.op("add", g.op("matmul", x, w), bias), r, s)])
    fast, rows = _vector_epilogue_pair(monkeypatch, g, threads)
    assert fast.ir.count("= fusion(") == 1
    for m in (*range(1, 14), 37):
        xs = [rng.standard_normal(shape).astype(np.float32) for shape in ((m, 21), (m, p), (m, 1))]
        got = fast(*xs)
        np.testing.assert_array_equal(got, rows(*xs))
        y = xs[0].astype(np.float64) @ g.param_values["w"] + g.param_values["b"]
        np.testing.assert_allclose(got, ref(y, xs[1], xs[2]), rtol=1e-4, atol=1e-4)


def test_register_epilogue_of_a_masked_conv_block(monkeypatch):
    """A conv's last, partial row block runs masked: the epilogue of its missing rows
    reads the last row's operands (in bounds) and their results are dropped."""
    g = Graph("c")
    x = g.add_input("x", TensorType(("N", 5, 5, 3)))
    res = g.add_input("res", TensorType(("N", 5, 5, 40)))
    w = g.add_param("w", rng.standard_normal((3, 3, 3, 40)).astype(np.float32))
    y = g.op("conv2d", x, w, strides=(1, 1), dilations=(1, 1), pads=(1, 1, 1, 1), groups=1)
    g.set_outputs([g.op("relu", g.op("add", y, res))])
    fast, rows = _vector_epilogue_pair(monkeypatch, g)
    assert "conv2d_packed(" in fast.ir
    for n in (1, 2):                      # 25 and 50 output pixels: not a multiple of 6
        xs = rng.standard_normal((n, 5, 5, 3)).astype(np.float32)
        rs = rng.standard_normal((n, 5, 5, 40)).astype(np.float32)
        np.testing.assert_array_equal(fast(xs, rs), rows(xs, rs))
        np.testing.assert_allclose(fast(xs, rs), kiln.interpret(g, xs, rs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw,c,o,k,strides,dil,pads", [
    ((7, 9), 3, 5, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((8, 8), 4, 40, (3, 3), (2, 2), (1, 1), (0, 1, 0, 1)),
    ((5, 6), 2, 33, (2, 2), (1, 1), (2, 2), (0, 0, 0, 0)),
    ((6, 5), 8, 64, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
    ((9, 4), 1, 7, (3, 1), (2, 1), (1, 1), (2, 0, 0, 0)),
])
def test_implicit_gemm_conv_with_epilogue(hw, c, o, k, strides, dil, pads):
    g = Graph("c")
    x = g.add_input("x", TensorType(("N", *hw, c)))
    w = g.add_param("w", rng.standard_normal((*k, c, o)).astype(np.float32))
    b = g.add_param("b", rng.standard_normal(o).astype(np.float32))
    y = g.op("conv2d", x, w, strides=strides, dilations=dil, pads=pads, groups=1)
    g.set_outputs([g.op("relu", g.op("add", y, b))])
    exe = kiln.compile(g)
    assert "conv2d_packed(" in exe.ir and exe.ir.count("= fusion(") == 1
    for n in (1, 3):
        xx = rng.standard_normal((n, *hw, c)).astype(np.float32)
        np.testing.assert_allclose(exe(xx), kiln.interpret(g, xx), rtol=1e-5, atol=1e-5)


def test_grouped_conv_is_left_to_the_direct_kernel():
    g = Graph("c")
    x = g.add_input("x", TensorType(("N", 5, 5, 4)))
    w = g.add_param("w", rng.standard_normal((3, 3, 2, 4)).astype(np.float32))
    g.set_outputs([g.op("conv2d", x, w, strides=(1, 1), dilations=(1, 1), pads=(1, 1, 1, 1), groups=2)])
    exe = kiln.compile(g)
    assert "conv2d_packed" not in exe.ir
    xx = rng.standard_normal((2, 5, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(exe(xx), kiln.interpret(g, xx), rtol=1e-5, atol=1e-5)


def test_layout_packs_a_scans_loop_invariant_weight_once():
    from kiln.frontend import layers as L
    kiln.utils.set_random_seed(0)
    m = kiln.Sequential([kiln.Input(shape=(7, 5)), L.LSTM(9, return_sequences=True)])
    exe = kiln.compile(m)
    (scan,) = [n for n in exe.graph.nodes if n.op.name == "scan"]
    assert "matmul_packed(%c0" in str(exe.graph) or "matmul_packed(%p" in str(exe.graph).split("scan(")[1]
    x = rng.standard_normal((3, 7, 5)).astype(np.float32)
    np.testing.assert_allclose(exe(x), kiln.interpret(kiln.lower(m), x), rtol=1e-5, atol=1e-6)


def test_weights_a_graph_updates_are_packed_at_run_time():
    g = Graph("t")
    x = g.add_input("x", TensorType(("N", 6)))
    w = g.add_param("w", rng.standard_normal((6, 5)).astype(np.float32))
    y = g.op("matmul", x, w)
    g.add_update(w, g.op("mul", w, g.constant(0.5)))      # w halves after every call
    g.set_outputs([y])
    exe = kiln.compile(g, passes="training")
    assert any(n.op.name == "pack_panels" for n in exe.graph.nodes)   # not folded: a variable
    xx = rng.standard_normal((3, 6)).astype(np.float32)
    w0 = g.param_values["w"].astype(np.float64)
    np.testing.assert_allclose(exe(xx), xx @ w0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exe(xx), xx @ (w0 * 0.5), rtol=1e-5, atol=1e-5)   # repacked


@pytest.mark.parametrize("threads", [1, 2])
def test_batched_matmuls_get_batched_panels_packed_through_their_transposes(threads):
    """Attention's q @ k^T (k^T a transpose of [B,S,H,D]) and p @ v: batched panels,
    no transpose materialized for the right operands; M, K, P not multiples of the tiles."""
    g = Graph("attn")
    q = g.add_input("q", TensorType(("N", 3, 13, 7)))        # [B, H, T, D]
    k = g.add_input("k", TensorType(("N", 11, 3, 7)))        # [B, S, H, D]
    v = g.add_input("v", TensorType(("N", 3, 11, 37)))       # [B, H, S, Dv]
    s = g.op("matmul", q, g.op("transpose", k, perm=(0, 2, 3, 1)))      # [B, H, T, S]
    g.set_outputs([g.op("matmul", g.op("relu", s), v)])
    out = PassManager(["layout", "dce"]).run(g)
    names = [n.op.name for n in out.nodes]
    assert "transpose" not in names and names.count("matmul_packed") == 2
    perms = [tuple(n.attrs["perm"]) for n in out.nodes if n.op.name == "pack_panels"]
    assert sorted(perms) == [(), (0, 2, 3, 1)]
    exe = kiln.compile(out, passes=["fusion", "memory"], cache=False, threads=threads)
    for n in (1, 2, 5):
        qv, kv, vv = (rng.standard_normal(t.shape[:0] + (n,) + t.shape[1:]).astype(np.float32)
                      for t in (q.type, k.type, v.type))
        want = np.maximum(qv @ kv.transpose(0, 2, 3, 1), 0) @ vv
        np.testing.assert_allclose(exe(qv, kv, vv), want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(kiln.interpret(out, qv, kv, vv), want, rtol=1e-4, atol=1e-4)


def test_broadcast_batched_matmul_keeps_the_plain_kernel():
    g = Graph("bc")
    a = g.add_input("a", TensorType(("N", 4, 5)))
    b = g.add_input("b", TensorType((5, 6)))
    c = g.add_input("c", TensorType((1, 5, 6)))
    g.set_outputs([g.op("matmul", a, b), g.op("matmul", a, c)])
    names = [n.op.name for n in PassManager(["layout", "dce"]).run(g).nodes]
    assert names.count("matmul_packed") == 1 and names.count("matmul") == 1


def _pooled_convs(graph):
    return [k for n in graph.nodes for k in ([n] + (list(n.regions[0].nodes) if n.op.name == "fusion" else []))
            if k.op.name == "conv2d_packed" and k.attrs["pool"]]


@pytest.mark.parametrize("layers,fused", [
    (lambda L: [L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(2)], True),
    (lambda L: [L.Conv2D(40, 3, padding="same"), L.MaxPooling2D((2, 3))], True),
    (lambda L: [L.Conv2D(5, (2, 3), strides=2, padding="same", activation="relu"), L.MaxPooling2D(2)], True),
    (lambda L: [L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(2, strides=1)], False),   # overlapping
    (lambda L: [L.Conv2D(8, 3, activation="tanh"), L.MaxPooling2D(2)], False),             # not a max-commuting op
])
def test_max_pool_after_conv_bias_relu_is_computed_by_the_conv(layers, fused):
    """max_pool(relu(conv + b)) == relu(max_pool(conv) + b) for non-overlapping windows:
    the conv computes the pooled output; partial last windows dropped, NaN propagated."""
    kiln.utils.set_random_seed(0)
    model = kiln.Sequential([kiln.Input((11, 13, 3)), *layers(kiln.layers)])
    for threads in (1, 2):
        exe = kiln.compile(model, threads=threads, cache=False)
        assert bool(_pooled_convs(exe.graph)) is fused
        for n in (1, 3, 20):
            x = rng.random((n, 11, 13, 3), dtype=np.float32) - 0.5
            if n == 3:
                x[1, 4, 5, 0] = np.nan
            np.testing.assert_allclose(exe(x), kiln.interpret(kiln.lower(model), x), rtol=1e-5, atol=1e-6)


def test_conv_output_used_elsewhere_is_not_pooled_in_place():
    kiln.utils.set_random_seed(1)
    L = kiln.layers
    x = kiln.Input((8, 8, 2))
    c = L.Conv2D(4, 3, activation="relu")(x)
    model = kiln.Model(x, [L.MaxPooling2D(2)(c), L.Flatten()(c)])
    exe = kiln.compile(model, cache=False)
    assert not _pooled_convs(exe.graph)
    xv = rng.random((2, 8, 8, 2), dtype=np.float32)
    for got, want in zip(exe(xv), kiln.interpret(kiln.lower(model), xv)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
