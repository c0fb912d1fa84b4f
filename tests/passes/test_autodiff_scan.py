"""Backprop through time: gradients through ``scan`` against central finite
differences (float64, interpreter), for both directions and scan axes, several
carries (one an integer counter), sequences and invariants, losses on the final
carry, on the stacked outputs or both; the backward graph verifies, round-trips
through the text form and compiles (no passes and the default pipeline)."""
import numpy as np
import pytest

import kiln
from kiln.ir import DType, Graph, TensorType, parse, verify
from kiln.ir.ops.control import build_scan
from kiln.passes.autodiff import gradients

EPS = 1e-6
F = lambda *s: TensorType(s, DType.f64)  # noqa: E731


def rnn(steps=4, axis=1, reverse=False, loss_on=("h", "ys"), counter=False):
    """h_t = tanh(x_t @ w + h @ u + b) (times (k+1) when counting steps k); loss =
    sum(h * r1) + sum(ys * r2) over the parts chosen by ``loss_on``."""
    rng = np.random.default_rng(5)
    g = Graph("rnn")
    x = g.add_input("x", F("N", steps, 3) if axis == 1 else F(steps, "N", 3))
    h0 = g.add_input("h0", F("N", 4))
    w = g.add_param("w", rng.standard_normal((3, 4)))
    u = g.add_param("u", rng.standard_normal((4, 4)) * 0.5)
    b = g.add_param("b", rng.standard_normal(4))
    carries = [h0] + ([g.constant(0, "i64")] if counter else [])

    def body(bg, cs, xs, ws):
        pre = bg.op("add", bg.op("add", bg.op("matmul", xs[0], ws[0]), bg.op("matmul", cs[0], ws[1])), ws[2])
        h = bg.op("tanh", pre)
        if counter:
            k = bg.op("add", cs[1], bg.constant(1, "i64"))
            h = bg.op("mul", h, bg.op("cast", k, dtype="f64"))
            return [h, k], [h, bg.op("square", xs[0])]
        return [h], [h, bg.op("square", xs[0])]

    finals, (ys, sq) = build_scan(g, carries, [x], [w, u, b], body, axis=axis, reverse=reverse)
    terms = []
    if "h" in loss_on:
        r1 = g.add_input("r1", finals[0].type)
        terms.append(g.op("reduce_sum", g.op("mul", finals[0], r1), axes=(0, 1)))
    if "ys" in loss_on:
        r2 = g.add_input("r2", ys.type)
        terms.append(g.op("reduce_sum", g.op("mul", ys, r2), axes=(0, 1, 2)))
    if "sq" in loss_on:
        terms.append(g.op("reduce_sum", sq, axes=(0, 1, 2)))
    loss = terms[0] if len(terms) == 1 else g.op("add", *terms[:2])
    for t in terms[2:]:
        loss = g.op("add", loss, t)
    g.set_outputs([loss])
    feed = {v.name: rng.standard_normal(v.type.concrete({"N": 2})) for v in g.inputs}
    return g, loss, [x, h0, w, u, b], feed


def numeric(g, feed, v):
    base = feed[v.name] if v.kind == "input" else g.param_values[v.name]

    def run(a):
        xs = [a if u is v else feed[u.name] for u in g.inputs]
        return float(kiln.interpret(g, *xs, params={v.name: a} if v.kind == "param" else None))

    out = np.zeros(base.shape)
    for i in np.ndindex(base.shape):
        d = np.zeros(base.shape)
        d[i] = EPS
        out[i] = (run(base + d) - run(base - d)) / (2 * EPS)
    return out


def check(g, loss, wrt, feed):
    want = [numeric(g, feed, v) for v in wrt]
    grads = gradients(g, loss, wrt)
    g.set_outputs(grads)
    verify(g)
    got = kiln.interpret(g, *(feed[v.name] for v in g.inputs))
    for v, a, b in zip(wrt, got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=f"d loss / d {v.name}")
    return g


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("reverse", [False, True])
def test_rnn_gradients_match_finite_differences(axis, reverse):
    check(*rnn(axis=axis, reverse=reverse))


@pytest.mark.parametrize("loss_on", [("h",), ("ys",), ("sq",), ("h", "sq")])
def test_losses_on_some_results_only(loss_on):
    check(*rnn(loss_on=loss_on, counter=True))


def test_integer_carry_and_one_step():
    check(*rnn(steps=1, counter=True, reverse=True))


def test_backward_graph_prints_parses_and_compiles():
    g, loss, wrt, feed = rnn(counter=True)
    g = check(g, loss, wrt, feed)
    text = str(g)
    assert text.count("scan(") == 2 and "reverse=true" in text
    g2 = parse(text)
    for k, v in g.param_values.items():
        g2.param_values[k] = v
    assert str(g2) == text
    xs = [feed[v.name] for v in g.inputs]
    want = kiln.interpret(g, *xs)
    for passes, opt in (([], 0), ("inference", 3)):     # O3 on scan bodies takes seconds
        got = kiln.compile(g2, passes=passes, opt_level=opt)(*xs)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_differentiating_twice_reuses_the_widened_scan():
    g, loss, wrt, feed = rnn()
    first = gradients(g, loss, wrt)
    scans = [n for n in g.nodes if n.op.name == "scan"]
    second = gradients(g, loss, wrt[:1])
    assert len(scans[0].outputs) == len([n for n in g.nodes if n.op.name == "scan"][0].outputs)
    g.set_outputs([first[0], second[0]])
    a, b = kiln.interpret(g, *(feed[v.name] for v in g.inputs))
    np.testing.assert_allclose(a, b, rtol=1e-12)
