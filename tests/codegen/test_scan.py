"""The ``scan`` kernel against the interpreter: batch sizes 1 and 5, time axis 0 and 1
(contiguous steps and staged ones), reverse, several carries / sequences / outputs,
zero steps, a symbolic length, nested scans, with and without the inference passes."""
import numpy as np
import pytest

import kiln
from kiln.ir import Graph, TensorType, interpret, parse, verify
from kiln.ir.ops.control import build_scan
from kiln.passes import PassManager
from kiln.passes.memory import (arena_size, check_plan, report, scratch_offsets,
                                scratch_size)

rng = np.random.default_rng(11)


def T(*shape):
    return TensorType(shape)


def rnn_graph(steps, axis=1, reverse=False):
    """h_t = tanh(x_t @ w + h_{t-1} @ u); returns (final h, stacked h)."""
    g = Graph("rnn")
    x = g.add_input("x", T("N", steps, 3) if axis == 1 else T(steps, "N", 3))
    h0 = g.add_input("h0", T("N", 4))
    w = g.add_param("w", rng.standard_normal((3, 4)).astype(np.float32))
    u = g.add_param("u", (rng.standard_normal((4, 4)) * 0.5).astype(np.float32))

    def body(b, cs, xs, ws):
        h = b.op("tanh", b.op("add", b.op("matmul", xs[0], ws[0]), b.op("matmul", cs[0], ws[1])))
        return [h], [h]

    (h,), (ys,) = build_scan(g, [h0], [x], [w, u], body, axis=axis, reverse=reverse)
    g.set_outputs([h, ys])
    return g


def check(g, inputs_for, batches=(1, 5), passes="inference", tol=1e-5):
    exe = kiln.compile(g, passes=passes)
    for n in batches:
        xs = inputs_for(n)
        want = interpret(g, *xs)
        got = exe(*xs)
        want = want if isinstance(want, tuple) else (want,)
        got = got if isinstance(got, tuple) else (got,)
        for a, b in zip(got, want):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    return exe


@pytest.mark.parametrize("passes", ["inference", []])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("reverse", [False, True])
def test_rnn(axis, reverse, passes):
    g = rnn_graph(6, axis, reverse)
    shape = (lambda n: (n, 6, 3)) if axis == 1 else (lambda n: (6, n, 3))
    check(g, lambda n: [rng.standard_normal(shape(n)).astype(np.float32),
                        rng.standard_normal((n, 4)).astype(np.float32)], passes=passes)


def test_body_is_fused_and_planned_by_the_pipeline():
    exe = check(rnn_graph(6), lambda n: [rng.standard_normal((n, 6, 3)).astype(np.float32),
                                         np.zeros((n, 4), np.float32)])
    g = exe.graph
    (scan,) = [n for n in g.nodes if n.op.name == "scan"]
    body = scan.regions[0]
    # the input projection's weight is an operand: the layout pass packed it outside
    # the loop, so the body multiplies by panels
    assert [n.op.name for n in body.nodes] == ["matmul_packed", "fusion"]
    assert any(n.op.name == "pack_panels" for n in g.nodes) or "fold" in " ".join(g.params)
    assert body.arena is not None
    text = str(g)
    assert "@arena[" in text.split("scan(")[1]       # the body's plan prints
    assert str(parse(text)) == text
    check_plan(g)
    check_plan(body)
    # the scratch (body arena + the second carry buffer) sits past the live slots
    (off,) = scratch_offsets(g).values()
    assert arena_size(g) == off + scratch_size(scan)
    r = report(g, {"N": 4})
    assert r["lower_bound_bytes"] <= r["arena_bytes"] <= r["naive_bytes"]


def test_llvm_ir_does_not_grow_with_the_sequence_length():
    lines = [len(kiln.compile(rnn_graph(t)).llvm_ir.splitlines()) for t in (10, 1000)]
    assert lines[0] == lines[1]


def test_long_sequence():
    g = rnn_graph(1000)
    check(g, lambda n: [rng.standard_normal((n, 1000, 3)).astype(np.float32),
                        np.zeros((n, 4), np.float32)], batches=(2,), tol=1e-4)


def test_several_carries_sequences_and_outputs():
    g = Graph("multi")
    x = g.add_input("x", T("N", 6, 2))
    y = g.add_input("y", T("N", 6, 2))
    a0 = g.add_input("a0", T("N", 2))
    b0 = g.add_input("b0", T("N", 2))
    k = g.add_param("k", np.array([0.5, -1.0], np.float32))

    def body(bg, cs, xs, ws):
        a = bg.op("add", cs[0], bg.op("mul", xs[0], ws[0]))
        b = bg.op("tanh", bg.op("mul", cs[1], xs[1]))
        return [a, b], [bg.op("sub", a, b), b, cs[0]]   # a carry's old value as an output too

    (a, b), ys = build_scan(g, [a0, b0], [x, y], [k], body, axis=1)
    g.set_outputs([a, b, *ys])
    check(g, lambda n: list(rng.standard_normal((4, n, 6, 2)).astype(np.float32)[:2])
          + list(rng.standard_normal((2, n, 2)).astype(np.float32)))


def test_carry_passed_through_and_constants_in_the_body():
    g = Graph("pass")
    x = g.add_input("x", T(5, "N", 3))
    c0 = g.add_input("c0", T("N", 3))
    d0 = g.add_input("d0", T("N", 3))

    def body(bg, cs, xs, ws):
        two = bg.constant(np.array([2.0, 3.0, 4.0], np.float32))
        return [cs[0], bg.op("add", bg.op("mul", cs[1], two), xs[0])], []

    (c, d), _ = build_scan(g, [c0, d0], [x], [], body, axis=0)
    g.set_outputs([c, d])
    check(g, lambda n: [rng.standard_normal((5, n, 3)).astype(np.float32),
                        *rng.standard_normal((2, n, 3)).astype(np.float32)])


def test_outputs_only_no_carries():
    g = Graph("map")
    x = g.add_input("x", T("N", 4, 3))
    w = g.add_param("w", rng.standard_normal((3, 2)).astype(np.float32))
    _, (ys,) = build_scan(g, [], [x], [w], lambda bg, cs, xs, ws: (
        [], [bg.op("relu", bg.op("matmul", xs[0], ws[0]))]), axis=1, reverse=True)
    g.set_outputs([ys])
    check(g, lambda n: [rng.standard_normal((n, 4, 3)).astype(np.float32)])


def test_zero_steps():
    g = rnn_graph(0)
    check(g, lambda n: [np.zeros((n, 0, 3), np.float32),
                        rng.standard_normal((n, 4)).astype(np.float32)])


def test_symbolic_length():
    g = Graph("sym")
    x = g.add_input("x", T("N", "L", 3))
    h0 = g.add_input("h0", T("N", 3))
    (h,), (ys,) = build_scan(g, [h0], [x], [], lambda b, cs, xs, ws: (
        [b.op("maximum", cs[0], xs[0])], [b.op("neg", cs[0])]), axis=1)
    g.set_outputs([h, ys])
    exe = kiln.compile(g)
    for n, length in ((1, 1), (5, 9), (2, 0)):
        xv = rng.standard_normal((n, length, 3)).astype(np.float32)
        hv = rng.standard_normal((n, 3)).astype(np.float32)
        for a, b in zip(exe(xv, hv), interpret(g, xv, hv)):
            np.testing.assert_array_equal(a, b)


def test_nested_scan():
    """An outer scan over axis 1 whose body runs an inner scan over the features."""
    g = Graph("nested")
    x = g.add_input("x", T("N", 4, 3))
    s0 = g.add_input("s0", T("N",))

    def inner(bg, cs, xs, ws):
        s = bg.op("add", bg.op("mul", cs[0], bg.constant(0.5)), xs[0])
        return [s], [s]

    def outer(bg, cs, xs, ws):
        (s,), (ys,) = build_scan(bg, [cs[0]], [xs[0]], [], inner, axis=1)
        return [s], [ys]

    (s,), (ys,) = build_scan(g, [s0], [x], [], outer, axis=1)
    g.set_outputs([s, ys])
    verify(parse(str(g)))
    check(g, lambda n: [rng.standard_normal((n, 4, 3)).astype(np.float32),
                        rng.standard_normal((n,)).astype(np.float32)])


def test_scan_graph_goes_through_every_pass():
    g = rnn_graph(4)
    out = PassManager("inference").run(g)
    x = rng.standard_normal((3, 4, 3)).astype(np.float32)
    h0 = rng.standard_normal((3, 4)).astype(np.float32)
    for a, b in zip(interpret(out, x, h0), interpret(g, x, h0)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda L: L.LSTM(5),
    lambda L: L.GRU(6, return_sequences=True),
    lambda L: L.LSTM(4, go_backwards=True, return_sequences=True),
])
def test_row_independent_recurrences_split_rows_across_threads(make):
    """A forward RNN's scan runs as units of SPLIT_ROWS rows on the thread pool, each
    its own recurrence: the same values as the interpreter at every batch size (a
    partial last unit, one unit, many) and thread count."""
    from kiln.passes.scan_rows import SPLIT_ROWS, split_rows
    kiln.utils.set_random_seed(1)
    model = kiln.Sequential([kiln.Input((9, 3)), make(kiln.layers)])
    for threads in (1, 2):
        exe = kiln.compile(model, threads=threads, cache=False)
        (scan,) = [n for n in exe.graph.nodes if n.op.name == "scan"]
        assert split_rows(scan) == "N"
        for n in (1, SPLIT_ROWS - 1, SPLIT_ROWS, SPLIT_ROWS + 1, 37, 200):
            x = np.random.default_rng(n).random((n, 9, 3), dtype=np.float32)
            np.testing.assert_allclose(exe(x), kiln.interpret(exe.graph, x), rtol=1e-5, atol=1e-6)


def test_backprop_through_time_is_not_split():
    """The backward scan sums weight gradients over the batch: no row split."""
    from kiln.passes.scan_rows import split_rows
    kiln.utils.set_random_seed(2)
    model = kiln.Sequential([kiln.Input((4, 3)), kiln.layers.LSTM(3), kiln.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).random((6, 4, 3), dtype=np.float32)
    model.fit(x, np.zeros((6, 1), np.float32), batch_size=3, epochs=1, verbose=0)
    g = model._train_step.train_exe.graph
    splits = [split_rows(n) for n in g.nodes if n.op.name == "scan"]
    assert len(splits) == 2 and None in splits
