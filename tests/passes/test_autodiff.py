"""kiln.passes.autodiff.gradients: whole models against finite differences and
closed forms, the API's contract (reuse, unconnected values, seeds, errors), the
decisions at non-differentiable points, and backward graphs that verify, round-trip
through the text form and compile (f32, O3) to what the interpreter computes."""
import numpy as np
import pytest

import kiln
from kiln.ir import DType, Graph, TensorType, parse, verify
from kiln.passes.autodiff import GradientError, gradients

rng = np.random.default_rng(2024)
EPS = 1e-6


def T(*shape, dtype=DType.f64):
    return TensorType(shape, dtype)


def fd(g, feed, v, params=None):
    """Central differences of g's single scalar output in every element of ``v``."""
    params = dict(params or {})
    base = feed[v.name] if v.kind == "input" else params.get(v.name, g.param_values[v.name])

    def run(a):
        xs = [a if u is v else feed[u.name] for u in g.inputs]
        return float(kiln.interpret(g, *xs, params={**params, v.name: a} if v.kind == "param" else params))

    out = np.zeros(base.shape)
    for i in np.ndindex(base.shape):
        d = np.zeros(base.shape)
        d[i] = EPS
        out[i] = (run(base + d) - run(base - d)) / (2 * EPS)
    return out


def mlp(dtype=DType.f64, classes=4):
    """softmax cross-entropy of a 2-layer MLP, written with ops; labels one-hot."""
    g = Graph("mlp")
    npd = dtype.np
    x = g.add_input("x", T("N", 5, dtype=dtype))
    y = g.add_input("y", T("N", classes, dtype=dtype))
    w1 = g.add_param("dense.kernel", (rng.standard_normal((5, 6)) * 0.5).astype(npd))
    b1 = g.add_param("dense.bias", (rng.standard_normal(6) * 0.1).astype(npd))
    w2 = g.add_param("dense_1.kernel", (rng.standard_normal((6, classes)) * 0.5).astype(npd))
    b2 = g.add_param("dense_1.bias", (rng.standard_normal(classes) * 0.1).astype(npd))
    h = g.op("relu", g.op("add", g.op("matmul", x, w1), b1))
    p = g.op("softmax", g.op("add", g.op("matmul", h, w2), b2))
    ce = g.op("neg", g.op("reduce_sum", g.op("mul", y, g.op("log", p)), axes=(1,)))
    loss = g.op("reduce_mean", ce, axes=(0,))
    g.set_outputs([loss])
    feed = {"x": rng.standard_normal((3, 5)).astype(npd),
            "y": np.eye(classes, dtype=npd)[rng.integers(0, classes, 3)]}
    return g, loss, [w1, b1, w2, b2, x], feed


def test_mlp_gradients_match_finite_differences():
    g, loss, wrt, feed = mlp()
    want = [fd(g, feed, v) for v in wrt]
    grads = gradients(g, loss, wrt)
    g.set_outputs([loss, *grads])
    verify(g)
    got = kiln.interpret(g, feed["x"], feed["y"])
    for v, a, b in zip(wrt, got[1:], want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8, err_msg=v.name)


def test_mlp_gradients_against_the_closed_form():
    """dL/dlogits = (softmax - y) / N, back through the layers by hand."""
    g, loss, wrt, feed = mlp()
    grads = gradients(g, loss, wrt)
    g.set_outputs(grads)
    gw1, gb1, gw2, gb2, gx = kiln.interpret(g, feed["x"], feed["y"])
    w1, b1, w2, b2 = (g.param_values[k] for k in ("dense.kernel", "dense.bias", "dense_1.kernel", "dense_1.bias"))
    x, y = feed["x"], feed["y"]
    pre = x @ w1 + b1
    h = np.maximum(pre, 0)
    z = h @ w2 + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - y) / len(x)
    dh = dz @ w2.T * (pre > 0)
    for got, want in [(gw2, h.T @ dz), (gb2, dz.sum(0)), (gw1, x.T @ dh), (gb1, dh.sum(0)), (gx, dh @ w1.T)]:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("passes,opt", [([], 0), ("inference", 3)])
def test_f32_training_graph_compiles_to_the_interpreter(passes, opt):
    """The forward + backward graph in f32 for two batch sizes (one N)."""
    g, loss, wrt, _ = mlp(DType.f32, classes=10)
    g.set_outputs([loss, *gradients(g, loss, wrt)])
    exe = kiln.compile(g, passes=passes, opt_level=opt)
    for n in (1, 7):
        x = rng.standard_normal((n, 5)).astype(np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
        for a, b in zip(exe(x, y), kiln.interpret(g, x, y)):
            assert a.dtype == np.float32 and a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def cnn(dtype=DType.f64):
    g = Graph("cnn")
    npd = dtype.np
    x = g.add_input("x", T("N", 6, 6, 2, dtype=dtype))
    k = g.add_param("conv.kernel", (rng.standard_normal((3, 3, 2, 3)) * 0.4).astype(npd))
    w = g.add_param("dense.kernel", (rng.standard_normal((27, 3)) * 0.3).astype(npd))
    c = g.op("relu", g.op("conv2d", x, k, pads=(1, 1, 1, 1)))
    p = g.op("max_pool2d", c, window=(2, 2), strides=(2, 2))
    a = g.op("avg_pool2d", p, window=(2, 2), strides=(1, 1), pads=(0, 1, 0, 1))
    z = g.op("matmul", g.op("reshape", a, shape=("N", 27)), w)
    loss = g.op("reduce_mean", g.op("square", g.op("tanh", z)), axes=(0, 1))
    g.set_outputs([loss])
    return g, loss, [k, w, x], {"x": rng.standard_normal((2, 6, 6, 2)).astype(npd)}


def test_small_cnn_gradients():
    g, loss, wrt, feed = cnn()
    want = [fd(g, feed, v) for v in wrt]
    g.set_outputs(gradients(g, loss, wrt))
    for v, a, b in zip(wrt, kiln.interpret(g, feed["x"]), want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8, err_msg=v.name)
    g32, loss32, wrt32, _ = cnn(DType.f32)
    g32.set_outputs(gradients(g32, loss32, wrt32))
    x = rng.standard_normal((3, 6, 6, 2)).astype(np.float32)
    for passes, opt in (([], 0), ("inference", 3)):
        got = kiln.compile(g32, passes=passes, opt_level=opt)(x)
        for a, b in zip(got, kiln.interpret(g32, x)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_constants_and_reuse():
    """f = sum(x*x*c) + sum(exp(x)) with x used four times: 2cx + exp(x)."""
    g = Graph("reuse")
    x = g.add_input("x", T("N", 3))
    c = g.constant([1.0, 2.0, -3.0], "f64")
    f = g.op("add", g.op("reduce_sum", g.op("mul", g.op("mul", x, x), c), axes=(0, 1)),
             g.op("reduce_sum", g.op("exp", x), axes=(0, 1)))
    (d,) = gradients(g, f, [x])
    g.set_outputs([d])
    xv = rng.standard_normal((4, 3))
    np.testing.assert_allclose(kiln.interpret(g, xv), 2 * xv * [1.0, 2.0, -3.0] + np.exp(xv), rtol=1e-14)


def test_wrt_an_intermediate_value_and_unconnected_params():
    g = Graph("mid")
    x = g.add_input("x", T("N", 3))
    unused = g.add_param("unused", np.ones(3))
    w = g.add_param("w", rng.standard_normal(3))
    h = g.op("mul", x, w)
    g.op("add", h, unused)                                 # computed, but not part of the loss
    loss = g.op("reduce_sum", g.op("tanh", h), axes=(0, 1))
    dh, du, dw = gradients(g, loss, [h, unused, w])
    assert du is None
    (dz,) = gradients(g, loss, [unused], unconnected="zero")
    assert gradients(g, loss, [g.add_input("other", T(3))]) == [None]
    g.set_outputs([dh, dz, dw])
    xv = rng.standard_normal((2, 3))
    a, z, b = kiln.interpret(g, xv, np.zeros(3))
    th = np.tanh(xv * g.param_values["w"])
    np.testing.assert_allclose(a, 1 - th ** 2, rtol=1e-14)
    np.testing.assert_array_equal(z, np.zeros(3))
    np.testing.assert_allclose(b, ((1 - th ** 2) * xv).sum(0), rtol=1e-13)


def test_a_seed_gives_the_vector_jacobian_product():
    g = Graph("seed")
    x = g.add_input("x", T("N", 3))
    s = g.add_input("s", T("N", 3))
    y = g.op("sigmoid", x)
    (d,) = gradients(g, y, [x], seed=s)
    g.set_outputs([d])
    xv, sv = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    sig = 1 / (1 + np.exp(-xv))
    np.testing.assert_allclose(kiln.interpret(g, xv, sv), sv * sig * (1 - sig), rtol=1e-14)


def test_symbolic_batch_reductions_and_broadcasts():
    """mean over N and a bias broadcast along N: one graph serves every batch size."""
    g = Graph("batch")
    x = g.add_input("x", T("N", 2, 3))
    b = g.add_param("b", rng.standard_normal((1, 3)))
    loss = g.op("reduce_mean", g.op("square", g.op("add", x, b)), axes=(0, 1, 2))
    g.set_outputs(gradients(g, loss, [b, x]))
    for n in (1, 5):
        xv = rng.standard_normal((n, 2, 3))
        db, dx = kiln.interpret(g, xv)
        r = 2 * (xv + g.param_values["b"]) / (n * 6)
        np.testing.assert_allclose(dx, r, rtol=1e-13)
        np.testing.assert_allclose(db, r.sum((0, 1))[None], rtol=1e-13)


def test_backward_graph_text_round_trip_and_verify():
    g, loss, wrt, feed = cnn()
    g.set_outputs([loss, *gradients(g, loss, wrt)])
    verify(g)
    text = str(g)
    assert "conv2d_backprop_kernel(" in text and "max_pool2d_grad(" in text and "avg_pool2d_grad(" in text
    g2 = parse(text)
    verify(g2)
    assert str(g2) == text
    g2.param_values.update(g.param_values)
    for a, b in zip(kiln.interpret(g2, feed["x"]), kiln.interpret(g, feed["x"])):
        np.testing.assert_array_equal(a, b)


# -- decisions at non-differentiable points ------------------------------------------------------
def grad_of(build, xv):
    g = Graph("pt")
    x = g.add_input("x", T(*xv.shape))
    y = build(g, x)
    s = g.op("reduce_sum", y, axes=tuple(range(y.type.rank))) if y.type.rank else y
    g.set_outputs(gradients(g, s, [x]))
    return kiln.interpret(g, xv)


def test_kinks_relu_abs_at_zero_get_zero():
    xv = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(grad_of(lambda g, x: g.op("relu", x), xv), [0, 0, 1])
    np.testing.assert_array_equal(grad_of(lambda g, x: g.op("abs", x), xv), [-1, 0, 1])


def test_ties_split_equally_for_maximum_minimum_and_reductions():
    xv = np.array([[3.0, 1.0, 3.0], [0.0, 2.0, 2.0]])
    np.testing.assert_array_equal(grad_of(lambda g, x: g.op("maximum", x, x), xv), np.ones((2, 3)))
    np.testing.assert_array_equal(grad_of(lambda g, x: g.op("minimum", x, g.constant(2.0, "f64")), xv),
                                  [[0, 1, 0], [1, 0.5, 0.5]])
    np.testing.assert_array_equal(grad_of(lambda g, x: g.op("reduce_max", x, axes=(1,)), xv),
                                  [[0.5, 0, 0.5], [0, 0.5, 0.5]])
    np.testing.assert_array_equal(grad_of(lambda g, x: g.op("reduce_min", x, axes=(0, 1)), xv),
                                  [[0, 0, 0], [1, 0, 0]])


def test_max_pool_gives_ties_to_the_first_maximum_of_each_window():
    xv = np.array([[1.0, 5.0, 5.0], [5.0, 2.0, 0.0]]).reshape(1, 2, 3, 1)
    got = grad_of(lambda g, x: g.op("max_pool2d", x, window=(2, 2), strides=(1, 1)), xv)
    np.testing.assert_array_equal(got.reshape(2, 3), [[0, 2, 0], [0, 0, 0]])


def test_cast_between_floats_and_from_integers():
    g = Graph("cast")
    x = g.add_input("x", T("N", 3))
    i = g.add_input("i", T("N", 3, dtype=DType.i32))
    y = g.op("cast", g.op("mul", g.op("cast", x, dtype="f32"), g.op("cast", i, dtype="f32")), dtype="f64")
    loss = g.op("reduce_sum", y, axes=(0, 1))
    (d,) = gradients(g, loss, [x])
    g.set_outputs([d])
    iv = rng.integers(-3, 3, (2, 3)).astype(np.int32)
    got = kiln.interpret(g, rng.standard_normal((2, 3)), iv)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, iv)
    with pytest.raises(GradientError, match="floating point"):
        gradients(g, loss, [i])


def test_bad_arguments_are_explained():
    g = Graph("bad")
    x = g.add_input("x", T("N", 3))
    y = g.op("exp", x)
    with pytest.raises(GradientError, match="must be a scalar"):
        gradients(g, y, [x])
    with pytest.raises(GradientError, match="must have the loss's type"):
        gradients(g, y, [x], seed=g.constant(1.0, "f64"))
    other = Graph("other")
    z = other.add_input("z", T(3))
    with pytest.raises(GradientError, match="not a value of graph @bad"):
        gradients(g, g.op("reduce_sum", y, axes=(0, 1)), [z])
    am = g.op("argmax", x, axis=1)
    with pytest.raises(GradientError, match="loss .*floating point"):
        gradients(g, g.op("reduce_sum", am, axes=(0,)), [x])
    with pytest.raises(GradientError, match="unconnected"):
        gradients(g, g.op("reduce_sum", y, axes=(0, 1)), [x], unconnected="zeros")
