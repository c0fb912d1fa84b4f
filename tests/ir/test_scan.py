"""The ``scan`` op: type inference, the interpreter against explicit numpy loops, the
text form, the verifier, and a graph size that does not depend on the sequence length."""
import re

import numpy as np
import pytest

from kiln.ir import DType, Graph, OpTypeError, TensorType, VerifyError, interpret, parse, verify
from kiln.ir.ops.control import build_scan

rng = np.random.default_rng(7)


def T(*shape, dtype=DType.f32):
    return TensorType(shape, dtype)


def rnn_graph(steps, axis=1, reverse=False, units=4, features=3):
    """h_t = tanh(x_t @ w + h_{t-1} @ u); returns (final h, stacked h)."""
    g = Graph("rnn")
    shape = ("N", steps, features) if axis == 1 else (steps, "N", features)
    x = g.add_input("x", T(*shape))
    h0 = g.add_input("h0", T("N", units))
    w = g.add_param("w", rng.standard_normal((features, units)).astype(np.float32))
    u = g.add_param("u", (rng.standard_normal((units, units)) * 0.5).astype(np.float32))

    def body(b, cs, xs, ws):
        h = b.op("tanh", b.op("add", b.op("matmul", xs[0], ws[0]), b.op("matmul", cs[0], ws[1])))
        return [h], [h]

    (h,), (ys,) = build_scan(g, [h0], [x], [w, u], body, axis=axis, reverse=reverse)
    g.set_outputs([h, ys])
    return g


def numpy_rnn(x, h, w, u, axis=1, reverse=False):
    xs = np.moveaxis(x, axis, 0).astype(np.float64)
    ys = [None] * len(xs)
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    for t in order:
        h = np.tanh(xs[t] @ w + h @ u)
        ys[t] = h
    stacked = np.stack(ys, axis=axis) if ys else np.zeros(x.shape[:axis] + (0, h.shape[-1]))
    return h, stacked


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("steps", [1, 6])
def test_interpreter_matches_a_numpy_loop(axis, reverse, steps):
    g = rnn_graph(steps, axis, reverse)
    for n in (1, 5):
        x = rng.standard_normal((n, steps, 3) if axis == 1 else (steps, n, 3)).astype(np.float32)
        h0 = rng.standard_normal((n, 4)).astype(np.float32)
        got_h, got_ys = interpret(g, x, h0)
        want_h, want_ys = numpy_rnn(x, h0, g.param_values["w"], g.param_values["u"], axis, reverse)
        np.testing.assert_allclose(got_h, want_h, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_ys, want_ys, rtol=1e-5, atol=1e-5)
        assert got_ys.shape == ((n, steps, 4) if axis == 1 else (steps, n, 4))


def test_reverse_stacks_outputs_where_their_step_is():
    # a running sum: reverse=True accumulates from the end, ys[t] = sum(x[t:])
    g = Graph("cumsum")
    x = g.add_input("x", T("N", 5))
    z = g.add_input("z", T("N"))
    (s,), (ys,) = build_scan(g, [z], [x], [], lambda b, cs, xs, ws: (
        [b.op("add", cs[0], xs[0])], [b.op("add", cs[0], xs[0])]), axis=1, reverse=True)
    g.set_outputs([s, ys])
    xv = rng.standard_normal((2, 5)).astype(np.float32)
    got_s, got_ys = interpret(g, xv, np.zeros(2, np.float32))
    np.testing.assert_allclose(got_ys, np.cumsum(xv[:, ::-1], axis=1)[:, ::-1], rtol=1e-5)
    np.testing.assert_allclose(got_s, xv.sum(axis=1), rtol=1e-5)


def test_several_carries_sequences_and_outputs():
    # carries (a, b), sequences (x, y), invariant k: a' = a + x*k, b' = b * y; outputs a', a'-b'
    g = Graph("multi")
    x = g.add_input("x", T(6, "N", 2))
    y = g.add_input("y", T(6, "N", 2))
    a0 = g.add_input("a0", T("N", 2))
    b0 = g.add_input("b0", T("N", 2))
    k = g.add_param("k", np.array([2.0, -1.0], np.float32))

    def body(bg, cs, xs, ws):
        a = bg.op("add", cs[0], bg.op("mul", xs[0], ws[0]))
        b = bg.op("mul", cs[1], xs[1])
        return [a, b], [a, bg.op("sub", a, b)]

    (a, b), (ya, yd) = build_scan(g, [a0, b0], [x, y], [k], body, axis=0)
    g.set_outputs([a, b, ya, yd])
    xv, yv = rng.standard_normal((2, 6, 3, 2)).astype(np.float32)
    av, bv = rng.standard_normal((2, 3, 2)).astype(np.float32)
    got = interpret(g, xv, yv, av, bv)
    wa, wb, ys_a, ys_d = av.astype(np.float64), bv.astype(np.float64), [], []
    for t in range(6):
        wa, wb = wa + xv[t] * np.array([2.0, -1.0]), wb * yv[t]
        ys_a.append(wa)
        ys_d.append(wa - wb)
    for got_v, want in zip(got, [wa, wb, np.stack(ys_a), np.stack(ys_d)]):
        np.testing.assert_allclose(got_v, want, rtol=1e-5, atol=1e-6)


def test_zero_steps_give_the_initial_carries_and_empty_stacks():
    g = rnn_graph(0)
    h0 = rng.standard_normal((3, 4)).astype(np.float32)
    h, ys = interpret(g, np.zeros((3, 0, 3), np.float32), h0)
    np.testing.assert_array_equal(h, h0)
    assert ys.shape == (3, 0, 4) and ys.dtype == np.float32


def test_symbolic_length():
    g = Graph("sym")
    x = g.add_input("x", T("N", "L", 3))
    h0 = g.add_input("h0", T("N", 3))
    (h,), (ys,) = build_scan(g, [h0], [x], [], lambda b, cs, xs, ws: (
        [b.op("maximum", cs[0], xs[0])], [b.op("neg", cs[0])]), axis=1)
    g.set_outputs([h, ys])
    assert str(ys.type) == "f32[N,L,3]"
    xv = rng.standard_normal((2, 9, 3)).astype(np.float32)
    hv, yv = interpret(g, xv, np.full((2, 3), -np.inf, np.float32))
    np.testing.assert_array_equal(hv, xv.max(axis=1))
    np.testing.assert_array_equal(yv[:, 1:], -np.maximum.accumulate(xv, axis=1)[:, :-1])


def test_text_round_trip():
    g = rnn_graph(7)
    text = str(g)
    assert "scan(%h0, %x, %w, %u) {num_carries=1, num_sequences=1, axis=1, reverse=false} {" in text
    assert "^(%c0: f32[N,4], %x0: f32[N,3], %w0: f32[3,4], %w1: f32[4,4]):" in text
    assert "yield %0.3, %0.3" in text
    g2 = parse(text)
    assert str(g2) == text
    verify(g2)


def test_the_graph_does_not_grow_with_the_sequence_length():
    short, long = rnn_graph(10), rnn_graph(1000)
    def count(g):
        return len(g.nodes) + sum(len(r.nodes) for n in g.nodes for r in n.regions)
    assert count(short) == count(long) == 5
    assert str(short).replace("10,", "1000,") == str(long)


SCAN_TEXT = """graph @s(%x: {x}, %h0: {h0}, %u: f32[3,4]) -> f32[N,4] {{
  %0: f32[N,4] = scan(%h0, %x, %u) {{num_carries=1, num_sequences=1, axis=1, reverse=false}} {{
    ^(%c0: f32[N,4], %x0: f32[N,3], %w0: f32[3,4]):
    %0.0: f32[N,4] = matmul(%x0, %w0)
    %0.1: f32[N,4] = add(%0.0, %c0)
    yield {yields}
  }}
  return %0
}}
"""


def test_the_good_text_parses():
    verify(parse(SCAN_TEXT.format(x="f32[N,5,3]", h0="f32[N,4]", yields="%0.1")))


@pytest.mark.parametrize("x, h0, yields, message", [
    ("f32[N,5,2]", "f32[N,4]", "%0.1",
     "body input 1 is f32[N,3], but a step of sequence 0 along axis 1 is f32[N,2]"),
    ("f32[N,5,3]", "f32[N,1]", "%0.1", "body input 0 is f32[N,4], but carry 0 is f32[N,1]"),
    ("f32[N,5,3]", "f32[N,4]", "%x0",
     "yields f32[N,3] for carry 0, whose initial value is f32[N,4]"),
    ("f32[N,5,3]", "f32[N,4]", "%0.1, %x0", "scan has 2 output(s), 1 written"),
])
def test_parse_reports_body_type_mismatches(x, h0, yields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(SCAN_TEXT.format(x=x, h0=h0, yields=yields))


def _scan_node(g):
    return next(n for n in g.nodes if n.op.name == "scan")


def test_verifier_names_the_node_and_the_mismatch():
    g = rnn_graph(5)
    n = _scan_node(g)
    body = n.regions[0]
    # the body now yields an f32[N,3] for the f32[N,4] carry
    body.outputs[0] = body.inputs[1]
    with pytest.raises(VerifyError, match=r"scan\(%h0, %x, %w, %u\).*yields f32\[N,3\] for "
                                          r"carry 0, whose initial value is f32\[N,4\]"):
        verify(g)


@pytest.mark.parametrize("attrs, message", [
    (dict(num_carries=1, num_sequences=0), "num_sequences >= 1"),
    (dict(num_carries=3, num_sequences=1), "among its 3 operand"),
    (dict(num_carries=1, num_sequences=1, axis=2), "has no axis 2"),
    (dict(num_carries=1, num_sequences=1, axis=-1), "axis must be >= 0"),
])
def test_bad_attributes(attrs, message):
    g = Graph("bad")
    h0 = g.add_input("h0", T("N", 4))
    x = g.add_input("x", T("N", 5))
    u = g.add_input("u", T(4))
    body = Graph("region")
    body.add_input("c0", T("N", 4))
    body.set_outputs(body.inputs)
    with pytest.raises(OpTypeError, match=message):
        g.make_node("scan", [h0, x, u], attrs, (body,))


def test_sequences_must_agree_in_length_and_body_takes_no_params():
    g = Graph("bad")
    x = g.add_input("x", T("N", 5, 2))
    y = g.add_input("y", T("N", 6, 2))
    body = Graph("region")
    a, b = body.add_input("x0", T("N", 2)), body.add_input("x1", T("N", 2))
    body.set_outputs([body.op("add", a, b)])
    with pytest.raises(OpTypeError, match="differ in length along axis 1"):
        g.make_node("scan", [x, y], dict(num_carries=0, num_sequences=2, axis=1), (body,))
    body.add_param("p", np.zeros(2, np.float32))
    with pytest.raises(OpTypeError, match="not params"):
        g.make_node("scan", [x, x], dict(num_carries=0, num_sequences=2, axis=1), (body,))
