"""lstm_cell_packed: an LSTM step's gate GEMM with the gates as its epilogue (CPU
layout pass, inference). Checked against Keras' LSTM equations in float64 numpy,
written here, and against the interpreter of the graph before any pass."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, OpTypeError, TensorType, interpret
from kiln.ir.ops.lstm import interleave
from kiln.passes.layout import panel_width

rng = np.random.default_rng(11)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0)


def np_step(xh, w, b, c, act=np.tanh, ract=sigmoid):
    """Keras' LSTM cell on [x, h] with the kernels stacked: gates i, f, c, o."""
    u = c.shape[1]
    z = xh.astype(np.float64) @ w + b
    i, f, g, o = (z[:, k * u:(k + 1) * u] for k in range(4))
    c_new = ract(f) * c + ract(i) * act(g)
    return ract(o) * act(c_new), c_new


def cell_graph(k, u, nr, block, w, b, activation="tanh", recurrent_activation="sigmoid"):
    g = Graph("cell")
    xh = g.add_input("xh", TensorType(("N", k)))
    c = g.add_input("c", TensorType(("N", u)))
    order = interleave(4 * u, block)
    wp = g.op("pack_panels", g.add_param("w", np.ascontiguousarray(w[:, order])), nr=nr)
    h2, c2 = g.op("lstm_cell_packed", xh, wp, g.add_param("b", b[order]), c, n=4 * u, block=block,
                  activation=activation, recurrent_activation=recurrent_activation)
    g.set_outputs([h2, c2])
    return g


def test_interleave_puts_the_four_gates_of_a_block_of_units_side_by_side():
    # 2 blocks of 2 units: i0 i1 f0 f1 c0 c1 o0 o1 | i2 i3 f2 f3 c2 c3 o2 o3
    assert interleave(16, 2).tolist() == [0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15]


@pytest.mark.parametrize("k,u,nr,block", [(5, 4, 8, 2), (24, 16, 16, 4), (40, 16, 32, 8),
                                          (7, 24, 32, 8), (3, 16, 64, 8)])
@pytest.mark.parametrize("acts", [("tanh", "sigmoid"), ("relu", "sigmoid"), ("tanh", "tanh")])
def test_reference_and_kernel_are_keras_lstm_step(k, u, nr, block, acts):
    fns = {"tanh": np.tanh, "sigmoid": sigmoid, "relu": relu}
    w = rng.standard_normal((k, 4 * u)).astype(np.float32) * 0.5
    b = rng.standard_normal(4 * u).astype(np.float32)
    g = cell_graph(k, u, nr, block, w, b, *acts)
    exe = kiln.compile(g, cache=False)
    for n in (1, 2, 7, 13):        # a GEMV, part of a tile, full tiles and a rest
        xh = rng.standard_normal((n, k)).astype(np.float32)
        c = rng.standard_normal((n, u)).astype(np.float32)
        want = np_step(xh, w, b, c, fns[acts[0]], fns[acts[1]])
        for got in (interpret(g, xh, c), exe(xh, c)):
            for a, e in zip(got, want):
                assert a.dtype == np.float32
                np.testing.assert_allclose(a, e, rtol=2e-5, atol=2e-6)


def test_bad_operands_and_attributes_are_named():
    g = Graph("bad")
    xh = g.add_input("xh", TensorType(("N", 6)))
    c = g.add_input("c", TensorType(("N", 4)))
    wp = g.op("pack_panels", g.add_param("w", np.zeros((6, 16), np.float32)), nr=8)
    b = g.add_param("b", np.zeros(16, np.float32))
    with pytest.raises(OpTypeError, match="activation must name a unary elementwise op"):
        g.op("lstm_cell_packed", xh, wp, b, c, n=16, block=2, activation="add")
    with pytest.raises(OpTypeError, match="multiple of block=3"):
        g.op("lstm_cell_packed", xh, wp, b, c, n=16, block=3)
    with pytest.raises(OpTypeError, match=r"c \[N, 4\]"):
        g.op("lstm_cell_packed", xh, wp, b, xh, n=16, block=2)
    with pytest.raises(OpTypeError, match="whole panels"):
        g.op("lstm_cell_packed", xh, wp, b, c, n=16, block=4, activation="tanh")


def _lstm_graph(units, **kw):
    layer = kiln.layers.LSTM(units, **kw)
    layer.build((None, 9, 5))
    layer.set_weights([rng.uniform(-0.5, 0.5, v.shape).astype(np.float32) for v in layer.weights])
    g = Graph("lstm")
    x = g.add_input("x", TensorType(("N", 9, 5)))
    with g.building():
        out = layer(x)
    g.set_outputs(list(out) if isinstance(out, (list, tuple)) else [out])
    return g


@pytest.mark.parametrize("kw", [{}, {"return_sequences": True}, {"go_backwards": True},
                                {"activation": "relu"}, {"return_state": True},
                                {"use_bias": False}])
def test_lstm_layers_compile_to_one_op_per_step(kw):
    """The layout pass replaces the body's GEMM, bias, slices and gates with one
    lstm_cell_packed when the units fill whole blocks (and the layer has a bias); the
    results are the interpreter's (of the graph before any pass) at every batch size
    -- a GEMV, tiles, a row-split recurrence -- and thread count."""
    block = panel_width() // 4
    for units in (2 * block, 3 * block + 1):
        g = _lstm_graph(units, **kw)
        for threads in (1, 2):
            exe = kiln.compile(g, threads=threads, cache=False)
            (scan,) = [n for n in exe.graph.nodes if n.op.name == "scan"]
            ops = [n.op.name for n in scan.regions[0].nodes]
            fused = units % block == 0 and kw.get("use_bias", True)
            assert ("lstm_cell_packed" in ops) == fused, ops
            assert ("lstm_project" in [n.op.name for n in exe.graph.nodes]) == fused
            for n in (1, 3, 37):
                x = np.random.default_rng(n).standard_normal((n, 9, 5)).astype(np.float32)
                want, got = interpret(g, x), exe(x)
                for a, e in zip(got if isinstance(got, tuple) else (got,),
                                want if isinstance(want, tuple) else (want,)):
                    np.testing.assert_allclose(a, e, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("kw", [{}, {"go_backwards": True, "return_sequences": True}])
def test_small_batches_take_the_projection_made_beforehand_with_the_same_sums(kw):
    """Up to LSTM_PROJECT_MAX_ROWS rows the x part of every step's GEMM comes from
    lstm_project (one GEMM for all steps) and each step multiplies only h, its sums
    starting from it: bit for bit what the whole GEMM per step gives -- the rows of a
    larger batch, which takes that path -- and the interpreter's results."""
    from kiln.passes.layout import LSTM_PROJECT_MAX_ROWS as most
    g = _lstm_graph(2 * (panel_width() // 4), **kw)
    exe = kiln.compile(g, cache=False)
    (scan,) = [n for n in exe.graph.nodes if n.op.name == "scan"]
    (cell,) = [n for n in scan.regions[0].nodes if n.op.name == "lstm_cell_packed"]
    assert len(cell.inputs) == 6 and cell.attrs["x_width"] == 5
    x = rng.standard_normal((most + 5, 9, 5)).astype(np.float32)
    big = exe(x)
    np.testing.assert_allclose(big, interpret(g, x), rtol=2e-5, atol=2e-6)
    for n in (1, 2, most):
        small = exe(x[:n])
        np.testing.assert_allclose(small, interpret(g, x[:n]), rtol=2e-5, atol=2e-6)
        np.testing.assert_array_equal(small, big[:n])


def test_projection_kernel_is_the_x_part_of_the_gemm_up_to_max_rows():
    """lstm_project against numpy: xw = x @ W[:x_width] over all steps and ok = true up
    to max_rows rows; past it ok = false (and xw is not computed)."""
    nr = panel_width()
    w = rng.standard_normal((7 + 9, 2 * nr)).astype(np.float32)
    g = Graph("proj")
    x = g.add_input("x", TensorType((5, "N", 7)))
    wp = g.op("pack_panels", g.add_param("w", w), nr=nr)
    xw, ok = g.op("lstm_project", x, wp, n=2 * nr, x_width=7, max_rows=3)
    g.set_outputs([xw, ok])
    exe = kiln.compile(g, cache=False)
    for n in (1, 3, 4):
        xv = rng.standard_normal((5, n, 7)).astype(np.float32)
        got_xw, got_ok = exe(xv)
        ref_xw, ref_ok = interpret(g, xv)
        want = xv.astype(np.float64) @ w[:7]
        assert bool(got_ok) == (n <= 3) == bool(ref_ok)
        np.testing.assert_allclose(ref_xw, want, rtol=1e-5, atol=1e-5)
        if n <= 3:
            np.testing.assert_allclose(got_xw, want, rtol=1e-5, atol=1e-5)


def test_projection_operands_are_checked():
    g = Graph("bad")
    x = g.add_input("x", TensorType((4, "N", 6)))
    wp = g.op("pack_panels", g.add_param("w", np.zeros((10, 16), np.float32)), nr=8)
    xw, ok = g.op("lstm_project", x, wp, n=16, x_width=6, max_rows=8)
    assert xw.type == TensorType((4, "N", 16)) and str(ok.type) == "bool[]"
    with pytest.raises(OpTypeError, match=r"x \[T, N, 5\]"):
        g.op("lstm_project", x, wp, n=16, x_width=5, max_rows=8)
    with pytest.raises(OpTypeError, match="max_rows >= 1"):
        g.op("lstm_project", x, wp, n=16, x_width=6, max_rows=0)
    xh = g.add_input("xh", TensorType(("N", 10)))
    c = g.add_input("c", TensorType(("N", 4)))
    b = g.add_param("b", np.zeros(16, np.float32))
    step = g.add_input("xw_t", TensorType(("N", 16)))
    g.op("lstm_cell_packed", xh, wp, b, c, step, ok, n=16, block=2, x_width=6)
    with pytest.raises(OpTypeError, match="x_width=10 must split"):
        g.op("lstm_cell_packed", xh, wp, b, c, step, ok, n=16, block=2, x_width=10)
    with pytest.raises(OpTypeError, match="ok a bool scalar"):
        g.op("lstm_cell_packed", xh, wp, b, c, step, step, n=16, block=2, x_width=6)
    for operands in ((xh, wp, b, c, step), (xh, wp, b)):
        with pytest.raises(OpTypeError, match=r"4 operands \(xh, wp, bias, c\), or 6"):
            g.op("lstm_cell_packed", *operands, n=16, block=2, x_width=6)


def _hand_body_graph(extra_reader: bool):
    """An LSTM recurrence built op by op, its commutative operands in the other order
    than the frontend's; ``extra_reader``: the input gate is also a per-step output."""
    from kiln.ir.ops.control import build_scan
    u = 2 * (panel_width() // 4)
    g = Graph("hand")
    x = g.add_input("x", TensorType((5, "N", 3)))
    h0 = g.add_input("h0", TensorType(("N", u)))
    c0 = g.add_input("c0", TensorType(("N", u)))
    w = g.add_param("w", rng.uniform(-0.5, 0.5, (3 + u, 4 * u)).astype(np.float32))
    bias = g.add_param("b", rng.uniform(-0.5, 0.5, 4 * u).astype(np.float32))

    def body(bg, cs, xs, ws):
        z = bg.op("add", ws[1], bg.op("matmul", bg.op("concat", xs[0], cs[0], axis=-1), ws[0]))
        i, f, g_, o = (bg.op("slice", z, axes=(-1,), begin=(k * u,), end=((k + 1) * u,))
                       for k in range(4))
        i, f, o, g_ = bg.op("sigmoid", i), bg.op("sigmoid", f), bg.op("sigmoid", o), bg.op("tanh", g_)
        c = bg.op("add", bg.op("mul", g_, i), bg.op("mul", cs[1], f))
        h = bg.op("mul", bg.op("tanh", c), o)
        return [h, c], ([i] if extra_reader else [])

    (h, c), ys = build_scan(g, [h0, c0], [x], [w, bias], body, axis=0)
    g.set_outputs([h, c, *ys])
    return g


@pytest.mark.parametrize("extra_reader", [False, True])
def test_matcher_takes_any_operand_order_and_leaves_shared_intermediates(extra_reader):
    g = _hand_body_graph(extra_reader)
    exe = kiln.compile(g, cache=False)
    (scan,) = [n for n in exe.graph.nodes if n.op.name == "scan"]
    ops = [n.op.name for n in scan.regions[0].nodes]
    assert ("lstm_cell_packed" in ops) == (not extra_reader), ops
    u = 2 * (panel_width() // 4)
    for n in (1, 8):
        xs = [rng.standard_normal((5, n, 3)).astype(np.float32),
              rng.standard_normal((n, u)).astype(np.float32), rng.standard_normal((n, u)).astype(np.float32)]
        for a, e in zip(exe(*xs), interpret(g, *xs)):
            np.testing.assert_allclose(a, e, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("acts", [("tanh", "sigmoid"), ("relu", "sigmoid")])
def test_vector_gates_equal_the_scalar_gates_bit_for_bit(monkeypatch, acts):
    """Activations scalar.py's VECTOR covers run on whole gate vectors; each is the same
    operation per lane as its scalar emitter, so both gate paths give the same bits."""
    from kiln.codegen.llvm import kernels_lstm
    k, u, nr, block = 24, 16, 16, 4
    w = rng.standard_normal((k, 4 * u)).astype(np.float32) * 0.5
    b = rng.standard_normal(4 * u).astype(np.float32)
    g = cell_graph(k, u, nr, block, w, b, *acts)
    vector = kiln.compile(g, cache=False, tiered=False)
    monkeypatch.setattr(kernels_lstm, "VECTOR", {})          # the scalar gates
    scalar = kiln.compile(g, cache=False, tiered=False)
    for n in (1, 2, 7, 13):
        xh = rng.standard_normal((n, k)).astype(np.float32)
        c = rng.standard_normal((n, u)).astype(np.float32)
        for x, y in zip(vector(xh, c), scalar(xh, c)):
            np.testing.assert_array_equal(x, y)
