"""Every CUDA kernel family against the CPU target and the interpreter, under the
simulator, on small shapes; each graph compiled ONCE and run at batch sizes 1 and 3."""
import numpy as np
import pytest

import kiln
from kiln.ir import DType, Graph, TensorType

BATCHES = (1, 3)
rng = np.random.default_rng(7)


def data(shape, dtype="float32", positive=False):
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.random(shape) > 0.5
    if dt.kind == "i":
        return rng.integers(-20, 20, shape).astype(dt)
    x = rng.standard_normal(shape) * 2
    return (np.abs(x) + 0.1 if positive else x).astype(dt)


def graph_of(build, operands, dtype="float32", positive=False):
    """build(g, *values) -> output value(s); operands with 'N' are inputs, others params."""
    g = Graph("t")
    vals = []
    for i, shape in enumerate(operands):
        t = TensorType(shape, DType.from_numpy(np.dtype(dtype)))
        if "N" in shape:
            vals.append(g.add_input(f"x{i}", t))
        else:
            vals.append(g.add_param(f"p{i}", data(shape, dtype, positive)))
    out = build(g, *vals)
    g.set_outputs(list(out) if isinstance(out, (list, tuple)) else [out])
    return g


def check(g, passes=None, dtype="float32", positive=False, rtol=2e-5):
    kw = {} if passes is None else {"passes": passes}
    gpu = kiln.compile(g, target="cuda", **kw)
    cpu = kiln.compile(g, **kw)
    for n in BATCHES:
        xs = [data(v.type.concrete({"N": n}), dtype, positive) for v in g.inputs]
        got, want, ref = gpu(*xs), cpu(*xs), kiln.interpret(g, *xs)
        got, want, ref = ([r] if not isinstance(r, tuple) else list(r) for r in (got, want, ref))
        for a, b, c in zip(got, want, ref):
            assert a.shape == c.shape and a.dtype == c.dtype
            scale = max(1.0, float(np.abs(c).max(initial=0))) if a.dtype.kind == "f" else 0
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)
            np.testing.assert_allclose(a, c, rtol=rtol, atol=rtol * scale)
    return gpu


UNARY = ["neg", "exp", "log", "sqrt", "relu", "sigmoid", "tanh", "abs", "square", "sign",
         "floor", "erf", "expm1", "log1p", "softplus"]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "pow"]


@pytest.mark.parametrize("op", UNARY)
def test_unary_elementwise(cuda, op):
    pos = op in ("log", "sqrt", "log1p")   # the simulator runs Python math: domain errors raise
    check(graph_of(lambda g, x: g.op(op, x), [("N", 5)], positive=pos), passes=[], positive=pos)


@pytest.mark.parametrize("op", BINARY)
def test_binary_broadcast(cuda, op):
    pos = op == "pow"
    check(graph_of(lambda g, x, b: g.op(op, x, b), [("N", 2, 3), (3,)], positive=pos),
          passes=[], positive=pos)


@pytest.mark.parametrize("op", ["greater", "less_equal", "equal", "not_equal"])
def test_comparisons_and_where(cuda, op):
    def build(g, x, y):
        c = g.op(op, x, y)
        return [c, g.op("where", c, x, y), g.op("logical_not", c),
                g.op("logical_and", c, g.op("greater", x, g.constant(np.float32(0))))]
    check(graph_of(build, [("N", 4), ("N", 4)]), passes=[])


@pytest.mark.parametrize("src,dst", [("float32", "i32"), ("float32", "bool"), ("int32", "f32"),
                                     ("float32", "f64")])
def test_cast(cuda, src, dst):
    check(graph_of(lambda g, x: g.op("cast", x, dtype=dst), [("N", 4)], dtype=src),
          passes=[], dtype=src)


def test_int_elementwise(cuda):
    check(graph_of(lambda g, x, b: g.op("relu", g.op("add", x, b)), [("N", 4), (4,)],
                   dtype="int32"), passes=[], dtype="int32")


def test_loop_fusion_group_is_one_kernel(cuda):
    def build(g, x, b):
        return g.op("tanh", g.op("mul", g.op("add", x, b), g.op("sigmoid", x)))
    g = graph_of(build, [("N", 2, 4), (4,)])
    exe = check(g)
    assert [k.shape for k, _ in exe.program.steps] == ["point"]
    assert exe.program.steps[0][1].op.name == "fusion"


@pytest.mark.parametrize("perm", [(0, 2, 1), (2, 0, 1), (1, 0, 2)])
def test_transpose(cuda, perm):
    check(graph_of(lambda g, x: g.op("transpose", x, perm=perm), [("N", 2, 3)]), passes=[])


@pytest.mark.parametrize("op", ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min"])
@pytest.mark.parametrize("axes", [(1,), (0, 2), (-1,)])
def test_reduce(cuda, op, axes):
    check(graph_of(lambda g, x: g.op(op, x, axes=axes, keepdims=False), [("N", 3, 5)]), passes=[])


def test_reduce_int_and_keepdims(cuda):
    check(graph_of(lambda g, x: g.op("reduce_max", x, axes=(1,), keepdims=True),
                   [("N", 37)], dtype="int32"), passes=[], dtype="int32")


def test_reduce_with_fused_prologue(cuda):
    g = graph_of(lambda g, x, b: g.op("reduce_sum", g.op("square", g.op("sub", x, b)), axes=(1,)),
                 [("N", 6), (6,)])
    exe = check(g)
    assert [k.shape for k, _ in exe.program.steps] == ["reduce"]


@pytest.mark.parametrize("shape,axis", [(("N", 5), -1), (("N", 3, 4), 1), (("N", 3, 2), 0)])
def test_softmax(cuda, shape, axis):
    check(graph_of(lambda g, x: g.op("softmax", x, axis=axis), [shape]), passes=[])


@pytest.mark.parametrize("shapes", [[("N", 5), (5, 6)], [("N", 3, 5), (5, 2)],
                                    [("N", 2, 3), ("N", 3, 5)], [(1, 2, 3), ("N", 3, 5)]])
def test_matmul(cuda, shapes):
    check(graph_of(lambda g, a, b: g.op("matmul", a, b), shapes), passes=[])


def test_matmul_with_fused_epilogue(cuda):
    def build(g, x, w, b, r):
        return g.op("relu", g.op("add", g.op("add", g.op("matmul", x, w), b), r))
    g = graph_of(build, [("N", 5), (5, 6), (6,), ("N", 6)])
    exe = check(g)
    assert [k.shape for k, _ in exe.program.steps] == ["matmul"]


def _conv(g, x, w, **kw):
    return g.op("conv2d", x, w, **kw)


@pytest.mark.parametrize("kw", [dict(), dict(strides=(2, 1), pads=(1, 1, 0, 1)),
                                dict(dilations=(1, 2), pads=(1, 1, 2, 2)), dict(groups=2)])
def test_conv2d(cuda, kw):
    wshape = (3, 2, 2 // kw.get("groups", 1), 4)
    check(graph_of(lambda g, x, w: _conv(g, x, w, **kw), [("N", 4, 5, 2), wshape]), passes=[])


def test_conv2d_with_fused_bias_relu(cuda):
    g = graph_of(lambda g, x, w, b: g.op("relu", g.op("add", _conv(g, x, w), b)),
                 [("N", 4, 4, 2), (3, 3, 2, 3), (3,)])
    exe = check(g, passes=["simplify", "fusion", "memory"])
    assert [n.op.name for _, n in exe.program.steps] == ["fusion"]


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("kw", [dict(window=(2, 2), strides=(2, 2)),
                                dict(window=(3, 3), strides=(1, 2), pads=(1, 1, 1, 1))])
def test_pool2d(cuda, op, kw):
    check(graph_of(lambda g, x: g.op(op, x, **kw), [("N", 4, 5, 2)]), passes=[])


def test_constant_reshape_alias_and_repeated_outputs(cuda):
    def build(g, x):
        c = g.constant(np.linspace(-1, 1, 6, dtype=np.float32))
        r = g.op("reshape", x, shape=("N", -1))
        y = g.op("relu", g.op("add", r, c))
        return [y, r, y, x]
    check(graph_of(build, [("N", 2, 3)]), passes=[])


@pytest.mark.parametrize("kw", [dict(), dict(strides=(2, 2), pads=(1, 0, 1, 1), output_padding=(1, 0)),
                                dict(dilations=(2, 1))])
def test_conv2d_transpose(cuda, kw):
    check(graph_of(lambda g, x, w: g.op("conv2d_transpose", x, w, **kw),
                   [("N", 3, 3, 2), (3, 2, 4, 2)]), passes=[])


@pytest.mark.parametrize("kw", [dict(), dict(strides=(2, 1), pads=(1, 1, 0, 1)), dict(groups=2)])
def test_conv2d_backprop_kernel(cuda, kw):
    x_t = TensorType(("N", 4, 4, 2))
    w_t = TensorType((3, 2, 2 // kw.get("groups", 1), 2))
    dy_t = kiln.ir.OPS["conv2d"].infer(x_t, w_t, **{"strides": (1, 1), "dilations": (1, 1),
                                                      "pads": (0, 0, 0, 0), "groups": 1, **kw})
    check(graph_of(lambda g, x, dy: g.op("conv2d_backprop_kernel", x, dy, kernel=(3, 2), **kw),
                   [x_t.shape, dy_t.shape]), passes=[])


@pytest.mark.parametrize("kw", [dict(window=(2, 2), strides=(2, 2)),
                                dict(window=(3, 3), strides=(1, 2), pads=(1, 1, 1, 1))])
def test_pool2d_grads(cuda, kw):
    x_t = TensorType(("N", 4, 5, 2))
    dy_t = kiln.ir.OPS["max_pool2d"].infer(x_t, **{"pads": (0, 0, 0, 0), **kw})

    def build(g, x, dy):
        # ties in every window: the gradient must go to the first maximum only
        xr = g.op("floor", g.op("mul", x, g.constant(np.float32(0.5))))
        return [g.op("max_pool2d_grad", xr, dy, **kw),
                g.op("avg_pool2d_grad", dy, size=(4, 5), **kw)]
    check(graph_of(build, [x_t.shape, dy_t.shape]), passes=["simplify", "memory"])


def test_slice_pad_concat(cuda):
    def build(g, x, y):
        s = g.op("slice", x, axes=(1, 2), begin=(1, 0), end=(3, 5), steps=(1, 2))
        p = g.op("pad", x, pads=(0, 0, 1, 0, 0, 2), value=-1.5)
        return [s, p, g.op("concat", x, y, x, axis=-1)]
    check(graph_of(build, [("N", 3, 4), ("N", 3, 2)]), passes=[])


def test_gather_embedding_lookup_and_argmax(cuda):
    g = Graph("e")
    ids = g.add_input("ids", TensorType(("N", 3), DType.i32))
    x = g.add_input("x", TensorType(("N", 5)))
    table = g.add_param("table", data((6, 4)))
    g.set_outputs([g.op("gather", table, ids, axis=0), g.op("argmax", x, axis=1),
                   g.op("argmax", x, axis=0, keepdims=True)])
    gpu, cpu = kiln.compile(g, target="cuda", passes=[]), kiln.compile(g, passes=[])
    for n in BATCHES:
        i = rng.integers(0, 6, (n, 3)).astype(np.int32)
        i[0, 0] = 9                                 # out of range: zeros (as on the CPU)
        xv = np.round(data((n, 5))).astype(np.float32)   # ties: the first maximum wins
        for a, b in zip(gpu(i, xv), cpu(i, xv)):
            np.testing.assert_array_equal(a, b)
        i[0, 0] = 2                                 # in range: the interpreter agrees too
        for a, b in zip(gpu(i, xv), kiln.interpret(g, i, xv)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("axis", [0, 1])
def test_scatter_add_accumulates_repeated_indices(cuda, axis):
    g = Graph("s")
    shape = (5, 3) if axis == 0 else (2, 5)
    ind = g.add_input("ind", TensorType(("N", 2), DType.i32))
    upd_shape = ("N", 2, 3) if axis == 0 else (2, "N", 2)
    upd = g.add_input("upd", TensorType(upd_shape))
    g.set_outputs([g.op("scatter_add", upd, ind, axis=axis, shape=shape)])
    gpu, cpu = kiln.compile(g, target="cuda", passes=[]), kiln.compile(g, passes=[])
    for n in BATCHES:
        i = rng.integers(0, 5, (n, 2)).astype(np.int32)
        i[0, 1] = i[0, 0]                          # a repeated index
        u = data(tuple(n if d == "N" else d for d in upd_shape))
        got = gpu(i, u)
        np.testing.assert_allclose(got, cpu(i, u), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got, kiln.interpret(g, i, u), rtol=1e-6, atol=1e-6)
