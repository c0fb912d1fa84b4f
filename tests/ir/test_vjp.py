"""Every op's vjp against central finite differences, in float64, through the
interpreter: one small graph per case, loss = sum(op(...) * r) with r a random
input of the output's type, gradients with respect to every floating-point operand
(graph inputs carry the batch dimension N, the others are params). The same
gradient graphs, all in one graph, compiled with no passes and with the default
pipeline, must match the interpreter. A coverage check fails when an op has
neither a case here nor a declaration that it has no gradient."""
import numpy as np
import pytest

import kiln
from kiln.ir import OPS, DType, Graph, TensorType, verify
from kiln.passes.autodiff import NO_VJP, GradientError, gradients

N = 2
EPS = 1e-6
F64, I64, BOOL = "f64", "i64", "bool"


def opnd(shape, kind="n", dtype=F64):
    return (tuple(shape), kind, dtype)


def case(op, operands, **attrs):
    ops = [o if len(o) == 3 and isinstance(o[0], tuple) else opnd(o) for o in operands]
    return pytest.param(op, ops, attrs, id=f"{op}-{'-'.join(str(list(s)) for s, _, _ in ops)}-{attrs}")


def data(rng, shape, kind, dtype):
    if dtype == BOOL:
        return rng.random(shape) > 0.5
    if kind.startswith("idx:"):
        return rng.integers(0, int(kind[4:]), shape).astype(np.int64)
    if kind == "pos":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "away":           # away from the kinks of relu, abs, and from 0 for div
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)
    if kind == "gt-1":
        return rng.uniform(-0.5, 2.0, shape)
    return rng.standard_normal(shape)


UNARY = [("neg", "n"), ("exp", "n"), ("log", "pos"), ("sqrt", "pos"), ("relu", "away"),
         ("sigmoid", "n"), ("tanh", "n"), ("abs", "away"), ("square", "n"), ("erf", "n"),
         ("softplus", "n"), ("expm1", "n"), ("log1p", "gt-1")]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "pow"]
BROADCASTS = [[("N", 3, 4), ("N", 3, 4)], [("N", 1, 4), (3, 1)], [(), ("N", 2)], [("N", 3), (3,)]]
X4 = ("N", 5, 5, 3)

CASES = (
    [case(u, [opnd(("N", 3), k)]) for u, k in UNARY]
    + [case(b, [opnd(sa, "pos" if b == "pow" else "n"),
                opnd(sb, "away" if b == "div" else "n")]) for b in BINARY for sa, sb in BROADCASTS]
    + [case("cast", [("N", 3)], dtype="f64")]
    + [case("matmul", ops) for ops in [[("N", 3, 4), (4, 2)], [("N", 1, 2, 3), (4, 3, 2)],
                                       [(2, 3), ("N", 3, 4)], [("N", 2, 3), ("N", 3, 2)]]]
    + [case(r, [("N", 3, 4)], axes=a, keepdims=k)
       for r in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min")
       for a in [(1,), (0, 2), (0, 1, 2)] for k in (False, True)]
    + [case("reduce_mean", [(3, 4)], axes=(1,))]
    + [case("softmax", [("N", 3, 4)], axis=a) for a in (-1, 1, 0)]
    + [case("reshape", [("N", 3, 4)], shape=("N", 12)), case("reshape", [(2, 6)], shape=(3, 4)),
       case("reshape", [("N", 12)], shape=(3, "N", 4))]
    + [case("transpose", [("N", 3, 4)], perm=(2, 0, 1))]
    + [case("concat", [("N", 2), ("N", 3)], axis=1),
       case("concat", [(2, "N"), (1, "N"), (3, "N")], axis=0)]
    + [case("slice", [("N", 7, 5)], axes=a, begin=b, end=e, steps=s) for a, b, e, s in [
        ((1,), (2,), (5,), ()), ((2,), (-1,), (-6,), (-1,)), ((1, 2), (0, 1), (7, 5), (2, 3)),
        ((1,), (6,), (0,), (-3,)), ((1,), (3,), (3,), ()), ((2,), (1,), (100,), (4,)),
        ((1,), (1,), (7,), (5,))]]
    + [case("pad", [("N", 3, 4)], pads=(0, 0, 1, 2, 0, 1), value=1.5)]
    + [case("broadcast_to", [("N", 1, 3)], shape=("N", 4, 3)),
       case("broadcast_to", [(3,)], shape=(2, "N", 3))]
    + [case("where", [opnd(("N", 3, 4), dtype=BOOL), ("N", 3, 4), (4,)]),
       case("where", [opnd((4,), dtype=BOOL), ("N", 1), ()])]
    + [case("gather", [(6, 3), opnd(("N", 5), "idx:6", I64)]),
       case("gather", [("N", 5), opnd((4,), "idx:5", I64)], axis=1)]
    + [case("conv2d", [xs, ws], strides=s, dilations=d, pads=p, groups=gr)
       for xs, ws, s, d, p, gr in [
        (X4, (3, 3, 3, 2), (1, 1), (1, 1), (0, 0, 0, 0), 1),
        (X4, (3, 2, 3, 2), (2, 2), (1, 1), (1, 1, 0, 1), 1),
        (X4, (2, 2, 3, 2), (1, 2), (2, 1), (2, 1, 1, 0), 1),
        (("N", 4, 4, 4), (3, 3, 2, 4), (1, 1), (1, 1), (1, 1, 1, 1), 2),
        (("N", 4, 5, 3), (3, 3, 1, 6), (2, 1), (1, 1), (0, 1, 1, 1), 3),        # depthwise x2
        # depthwise (groups == channels): its input gradient is a depthwise conv itself
        (("N", 5, 5, 3), (3, 3, 1, 3), (1, 1), (1, 1), (1, 1, 1, 1), 3),
        (("N", 6, 5, 2), (3, 3, 1, 2), (2, 2), (1, 1), (0, 1, 1, 1), 2),        # strided 'same'
        (("N", 7, 6, 2), (3, 2, 1, 2), (3, 2), (1, 1), (0, 0, 1, 0), 2),        # uncovered rows
        (("N", 6, 6, 2), (2, 3, 1, 2), (1, 2), (2, 1), (1, 0, 2, 1), 2),        # dilated
        (("N", 4, 4, 2), (2, 2, 1, 2), (1, 1), (1, 1), (2, 1, 0, 2), 2)]]       # pads past the window
    + [case("conv2d_transpose", [xs, ws], strides=s, dilations=d, pads=p, output_padding=op)
       for xs, ws, s, d, p, op in [
        (("N", 3, 3, 2), (3, 3, 2, 2), (1, 1), (1, 1), (0, 0, 0, 0), (0, 0)),
        (("N", 3, 2, 2), (3, 2, 3, 2), (2, 2), (1, 1), (0, 1, 1, 0), (1, 0)),
        (("N", 2, 2, 1), (2, 2, 2, 1), (3, 2), (1, 2), (0, 0, 0, 0), (2, 1)),   # output_padding past full
        (("N", 3, 2, 2), (2, 2, 2, 2), (2, 1), (2, 1), (1, 1, 0, 1), (0, 0))]]
    + [case(p, [xs], window=w, strides=s, pads=pd) for p in ("max_pool2d", "avg_pool2d")
       for xs, w, s, pd in [(("N", 4, 4, 2), (2, 2), (2, 2), (0, 0, 0, 0)),
                            (("N", 5, 5, 2), (3, 3), (2, 1), (1, 1, 1, 0)),
                            (("N", 5, 4, 1), (2, 3), (1, 1), (1, 0, 0, 2))]]
    # the backward ops' own vjps (second-order gradients)
    + [case("scatter_add", [("N", 5, 3), opnd((5,), "idx:6", I64)], axis=1, shape=("N", 6, 3)),
       case("scatter_add", [(7, 3), opnd((7,), "idx:4", I64)], axis=0, shape=(4, 3))]
    + [case("conv2d_backprop_kernel", [X4, ("N", 3, 5, 2)], kernel=(3, 2), pads=(0, 0, 0, 1)),
       case("conv2d_backprop_kernel", [("N", 4, 4, 4), ("N", 2, 4, 4)], kernel=(2, 3), strides=(2, 1),
            pads=(0, 0, 1, 1), groups=2)]
    + [case("avg_pool2d_grad", [("N", 3, 3, 2)], window=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1),
            size=(5, 5))]
)
CASE_OPS = {p.values[0] for p in CASES}


def build(g, op, operands, attrs, rng, prefix=""):
    """Append the case to ``g``: returns (loss, float operands, feed {value: array})."""
    feed, vals = {}, []
    for i, (shape, kind, dt) in enumerate(operands):
        t = TensorType(shape, DType.parse(dt))
        a = data(rng, t.concrete({"N": N}), kind, dt)
        if "N" in shape:
            v = g.add_input(f"{prefix}x{i}", t)
            feed[v] = a
        else:
            v = g.add_param(f"{prefix}p{i}", a)
        vals.append(v)
    out = g.op(op, *vals, **attrs)
    r = g.add_input(f"{prefix}r", out.type)
    feed[r] = rng.standard_normal(out.type.concrete({"N": N}))
    prod = g.op("mul", out, r)
    loss = g.op("reduce_sum", prod, axes=tuple(range(out.type.rank))) if out.type.rank else prod
    return loss, [v for v in vals if v.type.dtype.is_float], feed


def numeric_grad(g, loss, v, feed):
    """Central differences of ``loss`` in every element of ``v`` (an input or a param)."""
    def run(arr):
        xs = [arr if u is v else feed[u] for u in g.inputs]
        params = {v.name: arr} if v.kind == "param" else None
        return float(kiln.interpret(g, *xs, params=params))

    base = feed[v] if v.kind == "input" else g.param_values[v.name]
    grad = np.zeros(base.shape)
    for idx in np.ndindex(base.shape):
        d = np.zeros(base.shape)
        d[idx] = EPS
        grad[idx] = (run(base + d) - run(base - d)) / (2 * EPS)
    return grad


@pytest.mark.parametrize("op,operands,attrs", CASES)
def test_vjp_matches_finite_differences(op, operands, attrs):
    rng = np.random.default_rng(abs(hash((op, str(operands), str(attrs)))) % 2 ** 32)
    g = Graph("vjp")
    loss, wrt, feed = build(g, op, operands, attrs, rng)
    g.set_outputs([loss])
    want = [numeric_grad(g, loss, v, feed) for v in wrt]
    grads = gradients(g, loss, wrt)
    assert all(d is not None for d in grads), f"{op}: a float operand got no gradient"
    g.set_outputs(grads)
    verify(g)
    got = kiln.interpret(g, *(feed[v] for v in g.inputs))
    got = got if isinstance(got, tuple) else (got,)
    for v, a, b in zip(wrt, got, want):
        assert a.shape == b.shape and a.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(b).max()),
                                   err_msg=f"d loss / d {v.name}")


def _all_cases_graph():
    g = Graph("all")
    feed, outs = {}, []
    for k, p in enumerate(CASES):
        op, operands, attrs = p.values
        loss, wrt, f = build(g, op, operands, attrs, np.random.default_rng(k), prefix=f"c{k}_")
        feed.update(f)
        outs += gradients(g, loss, wrt)
    g.set_outputs(outs)
    return g, [feed[v] for v in g.inputs]


@pytest.mark.parametrize("passes", [[], "inference"])
def test_gradient_graphs_compile_and_match_the_interpreter(passes):
    """opt_level=0 keeps LLVM fast on this large graph (test_autodiff.py compiles
    smaller gradient graphs at O3)."""
    g, xs = _all_cases_graph()
    verify(g)
    want = kiln.interpret(g, *xs)
    got = kiln.compile(g, passes=passes, opt_level=0)(*xs)
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape and a.dtype == b.dtype, k
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(b).max()),
                                   err_msg=f"gradient output {k} ({g.outputs[k].producer.op.name})")


# -- coverage ----------------------------------------------------------------------------------
NONDIFF = {name for name, op in OPS.items() if getattr(op, "differentiable", True) is False}
OWN_TESTS = {"constant": "test_autodiff.py::test_constants_and_reuse",
             "scan": "test_autodiff_scan.py"}


def test_every_op_has_a_gradient_test_or_declares_it_has_none():
    for name in CASE_OPS:
        assert OPS[name].vjp is not None, f"{name} has a case but no vjp"
    missing = set(OPS) - CASE_OPS - NONDIFF - set(NO_VJP) - set(OWN_TESTS)
    assert not missing, f"ops with no vjp test and no 'no gradient' declaration: {sorted(missing)}"
    assert NONDIFF >= {"floor", "sign", "argmax", "greater", "equal", "logical_and", "logical_not"}


def _nondiff_use(g, op, x):
    """op applied to (something computed from) x: f64[N,3]."""
    if op.startswith("logical"):
        b = g.op("greater", x, g.constant(0.0, "f64"))
        return g.op(op, *([b] * (OPS[op].num_inputs or 1)))
    if op == "argmax":
        return g.op(op, x, axis=1)
    if op == "random_uniform":
        return g.op(op, g.constant(3, "i64"), shape=("N", 3), seed=7, dtype="f64")
    if OPS[op].num_inputs in (1, 2) and not OPS[op].attrs:
        return g.op(op, *([x] * OPS[op].num_inputs))
    raise AssertionError(f"tell _nondiff_use how to apply the non-differentiable op {op}")


@pytest.mark.parametrize("op", sorted(NONDIFF))
def test_non_differentiable_ops_pass_no_gradient(op):
    """Through a non-differentiable op alone: None (or zeros); beside another path: only
    that path's gradient."""
    g = Graph("nd")
    x = g.add_input("x", TensorType(("N", 3), DType.f64))
    y = _nondiff_use(g, op, x)
    yf = g.op("cast", y, dtype="f64") if y.type.dtype is not DType.f64 else y
    s = g.op("reduce_sum", yf, axes=tuple(range(yf.type.rank)))
    assert gradients(g, s, [x]) == [None]
    (z,) = gradients(g, s, [x], unconnected="zero")
    both = g.op("add", s, g.op("reduce_sum", x, axes=(0, 1)))
    (d,) = gradients(g, both, [x])
    g.set_outputs([z, d])
    xv = np.random.default_rng(0).standard_normal((4, 3))
    zv, dv = kiln.interpret(g, xv)
    np.testing.assert_array_equal(zv, np.zeros((4, 3)))
    np.testing.assert_array_equal(dv, np.ones((4, 3)))


def _no_vjp_use(g, op, x):
    """(value to differentiate with respect to, op applied to it); x: f32[N,4,4,2]."""
    if op == "fusion":
        body = Graph("region")
        body.set_outputs([body.op("relu", body.op("neg", body.add_input("p0", x.type)))])
        n = g.make_node("fusion", [x], {}, (body,))
        g.nodes.append(n)
        return x, n.outputs[0]
    if op == "max_pool2d_grad":
        dy = g.add_input("dy", TensorType(("N", 2, 2, 2), DType.f32))
        return x, g.op(op, x, dy, window=(2, 2), strides=(2, 2))
    w = g.add_param("w", np.ones((2, 3), np.float32))
    if op == "pack_panels":
        return w, g.op(op, w, nr=4)
    if op == "matmul_packed":
        return x, g.op(op, g.op("reshape", x, shape=("N", 16, 2)), g.op("pack_panels", w, nr=4), n=3)
    if op == "conv2d_packed":
        return x, g.op(op, x, g.op("pack_panels", w, nr=4), kernel=(1, 1), n=3)
    if op == "conv2d_winograd":
        u = g.constant(np.ones((16, 2, 3), np.float32))
        return x, g.op(op, x, g.op("pack_panels", u, nr=4), n=3, pads=(1, 1, 1, 1))
    if op == "attention":
        q = g.op("reshape", x, shape=("N", 4, 4, 2))
        return x, g.op(op, q, q, q, scale=0.5)
    if op == "attention_packed":
        q = g.op("reshape", x, shape=("N", 4, 4, 2))
        kp = g.op("pack_panels", q, nr=4, perm=(0, 1, 3, 2))
        return x, g.op(op, q, kp, g.op("pack_panels", q, nr=4), n_s=4, n=2)
    if op == "lstm_cell_packed":
        xh = g.op("reshape", x, shape=("N", 32))
        c = g.op("reshape", g.op("slice", x, axes=(1,), begin=(0,), end=(1,)), shape=("N", 8))
        wp = g.op("pack_panels", g.constant(np.ones((32, 32), np.float32)), nr=32)
        return x, g.op(op, xh, wp, g.constant(np.zeros(32, np.float32)), c, n=32, block=8)[0]
    if op == "lstm_project":
        seq = g.op("reshape", x, shape=(4, "N", 8))
        wp = g.op("pack_panels", g.constant(np.ones((10, 32), np.float32)), nr=32)
        return x, g.op(op, seq, wp, n=32, x_width=8, max_rows=4)[0]
    raise AssertionError(f"tell _no_vjp_use how to apply {op}")


@pytest.mark.parametrize("op", sorted(NO_VJP))
def test_ops_without_a_rule_raise_naming_the_op(op):
    if op not in OPS:
        pytest.skip(f"{op} is not registered")
    g = Graph("nv")
    x, y = _no_vjp_use(g, op, g.add_input("x", TensorType(("N", 4, 4, 2), DType.f32)))
    s = g.op("reduce_sum", y, axes=tuple(range(y.type.rank)))
    with pytest.raises(GradientError, match=rf"op {op} .*{NO_VJP[op].split(':')[0]}"):
        gradients(g, s, [x])
