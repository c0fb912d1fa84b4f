"""Each optimizer's update vs a float64 numpy transcription of Keras 3's equations;
clipping, weight decay, schedules, names; the compiled update vs the interpreter."""
import math

import numpy as np
import pytest

import kiln
from kiln import optimizers as O
from kiln.frontend.variables import Variable
from kiln.ir import Graph, TensorType

rng = np.random.default_rng(2)
W0 = rng.normal(size=(3, 4))
GRADS = [rng.normal(size=(3, 4)) * s for s in (1.0, 0.1, 3.0, 0.01, 1.0)]


def ref_sgd(w, gs, lr=0.01, momentum=0.0, nesterov=False):
    m = np.zeros_like(w)
    for g in gs:
        if momentum == 0:
            w = w - lr * g
        else:
            m = momentum * m - lr * g
            w = w + (momentum * m - lr * g if nesterov else m)
    return w


def ref_adam(w, gs, lr=0.001, b1=0.9, b2=0.999, eps=1e-7, amsgrad=False, wd=None):
    m, v, vh = (np.zeros_like(w) for _ in range(3))
    for t, g in enumerate(gs, start=1):
        if wd:
            w = w - w * wd * lr
        alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        vv = v
        if amsgrad:
            vh = np.maximum(vh, v)
            vv = vh
        w = w - m * alpha / (np.sqrt(vv) + eps)
    return w


def ref_rmsprop(w, gs, lr=0.001, rho=0.9, momentum=0.0, eps=1e-7, centered=False):
    v, a, mom = (np.zeros_like(w) for _ in range(3))
    for g in gs:
        v = rho * v + (1 - rho) * g * g
        if centered:
            a = rho * a + (1 - rho) * g
            den = v - a * a + eps
        else:
            den = v + eps
        inc = lr * g / np.sqrt(den)
        if momentum > 0:
            mom = momentum * mom + inc
            w = w - mom
        else:
            w = w - inc
    return w


def ref_adagrad(w, gs, lr=0.001, init=0.1, eps=1e-7):
    acc = np.full_like(w, init)
    for g in gs:
        acc = acc + g * g
        w = w - lr * g / np.sqrt(acc + eps)
    return w


def ref_adadelta(w, gs, lr=0.001, rho=0.95, eps=1e-7):
    ag, ad = np.zeros_like(w), np.zeros_like(w)
    for g in gs:
        ag = rho * ag + (1 - rho) * g * g
        d = -np.sqrt(ad + eps) * g / np.sqrt(ag + eps)
        ad = rho * ad + (1 - rho) * d * d
        w = w + lr * d
    return w


def ref_adamax(w, gs, lr=0.001, b1=0.9, b2=0.999, eps=1e-7):
    m, u = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(gs, start=1):
        m = m + (g - m) * (1 - b1)
        u = np.maximum(b2 * u, np.abs(g))
        w = w - lr * m / ((1 - b1 ** t) * (u + eps))
    return w


def ref_nadam(w, gs, lr=0.001, b1=0.9, b2=0.999, eps=1e-7):
    m, v, up = np.zeros_like(w), np.zeros_like(w), 1.0
    for t, g in enumerate(gs, start=1):
        u_t = b1 * (1 - 0.5 * 0.96 ** t)
        u_t1 = b1 * (1 - 0.5 * 0.96 ** (t + 1))
        up = up * u_t
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        m_hat = u_t1 * m / (1 - up * u_t1) + (1 - u_t) * g / (1 - up)
        v_hat = v / (1 - b2 ** t)
        w = w - m_hat * lr / (np.sqrt(v_hat) + eps)
    return w


CASES = [
    ("sgd", lambda: O.SGD(learning_rate=0.1), lambda w, gs: ref_sgd(w, gs, 0.1)),
    ("sgd_momentum", lambda: O.SGD(0.1, momentum=0.9), lambda w, gs: ref_sgd(w, gs, 0.1, 0.9)),
    ("sgd_nesterov", lambda: O.SGD(0.1, momentum=0.9, nesterov=True),
     lambda w, gs: ref_sgd(w, gs, 0.1, 0.9, True)),
    ("adam", lambda: O.Adam(0.01), lambda w, gs: ref_adam(w, gs, 0.01)),
    ("adam_amsgrad", lambda: O.Adam(0.01, amsgrad=True), lambda w, gs: ref_adam(w, gs, 0.01, amsgrad=True)),
    ("adamw", lambda: O.AdamW(0.01), lambda w, gs: ref_adam(w, gs, 0.01, wd=0.004)),
    ("rmsprop", lambda: O.RMSprop(0.01), lambda w, gs: ref_rmsprop(w, gs, 0.01)),
    ("rmsprop_centered_momentum", lambda: O.RMSprop(0.01, momentum=0.5, centered=True),
     lambda w, gs: ref_rmsprop(w, gs, 0.01, momentum=0.5, centered=True)),
    ("adagrad", lambda: O.Adagrad(0.1), lambda w, gs: ref_adagrad(w, gs, 0.1)),
    ("adadelta", lambda: O.Adadelta(1.0), lambda w, gs: ref_adadelta(w, gs, 1.0)),
    ("adamax", lambda: O.Adamax(0.01), lambda w, gs: ref_adamax(w, gs, 0.01)),
    ("nadam", lambda: O.Nadam(0.01), lambda w, gs: ref_nadam(w, gs, 0.01)),
]


@pytest.mark.parametrize("name,make,ref", CASES, ids=[c[0] for c in CASES])
def test_update_matches_keras_equations(name, make, ref):
    opt = make()
    v = Variable(W0.astype(np.float32), name="w")
    for g in GRADS:
        opt.apply_gradients([(g, v)])
    assert opt.iterations == len(GRADS)
    want = ref(W0.astype(np.float32).astype(np.float64),
               [g.astype(np.float32).astype(np.float64) for g in GRADS])
    np.testing.assert_allclose(v.numpy(), want, rtol=2e-5, atol=1e-6)


def test_compiled_updates_match_the_interpreter():
    """All optimizers in ONE compiled graph (one param each), 3 steps, vs the interpreter."""
    g = Graph("opts")
    opts = [make() for _, make, _ in CASES]
    params, grads_in = [], []
    for i, _ in enumerate(opts):
        params.append(g.add_param(f"w{i}", W0.astype(np.float32)))
        grads_in.append(g.add_input(f"g{i}", TensorType((3, 4))))
    lr = g.add_input("lr", TensorType(()))
    with g.building():
        for opt, p, gi in zip(opts, params, grads_in):
            opt.build_step(g, [p], [gi], [Variable(W0.astype(np.float32), name=p.name)], lr)
    g.set_outputs([])
    exe = kiln.compile(g, passes="training")
    state = {k: np.array(v) for k, v in g.param_values.items()}
    for step in range(3):
        feeds = [GRADS[step].astype(np.float32) for _ in opts] + [np.float32(0.05)]
        exe(*feeds)
        _, upd = kiln.interpret(g, *feeds, params=state, return_updates=True)
        state.update(upd)
        for k in exe.params:
            np.testing.assert_allclose(exe.params[k], state[k], rtol=1e-5, atol=1e-7, err_msg=k)


def global_norm(gs):
    return math.sqrt(sum(float((g * g).sum()) for g in gs))


def test_gradient_clipping():
    g1 = np.full((2,), 3.0, np.float32)       # norm 4.24
    g2 = np.array([0.1, -0.2], np.float32)
    for kw, expect in (
            (dict(clipnorm=1.0), [g1 / np.linalg.norm(g1), g2]),
            (dict(clipvalue=0.15), [np.clip(g1, -0.15, 0.15), np.clip(g2, -0.15, 0.15)]),
            (dict(global_clipnorm=1.0), [g1 / global_norm([g1, g2]), g2 / global_norm([g1, g2])])):
        opt = O.SGD(learning_rate=1.0, **kw)
        a, b = Variable(np.zeros(2, np.float32), name="a"), Variable(np.zeros(2, np.float32), name="b")
        opt.apply_gradients([(g1, a), (g2, b)])
        np.testing.assert_allclose(-a.numpy(), expect[0], rtol=1e-6, err_msg=str(kw))
        np.testing.assert_allclose(-b.numpy(), expect[1], rtol=1e-6, err_msg=str(kw))
    with pytest.raises(ValueError, match="Only one of"):
        O.SGD(clipnorm=1.0, clipvalue=1.0)


def test_weight_decay_and_exclusion():
    opt = O.SGD(learning_rate=0.5, weight_decay=0.1)
    a, b = Variable(np.ones(2, np.float32), name="kernel"), Variable(np.ones(2, np.float32), name="bias")
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.apply_gradients([(np.zeros(2), a), (np.zeros(2), b)])
    np.testing.assert_allclose(a.numpy(), 1 - 1 * 0.1 * 0.5)
    np.testing.assert_allclose(b.numpy(), 1.0)


def test_lr_alias_names_and_settable_learning_rate():
    opt = O.Adam(lr=0.001)          # the program keras.optimizers.Adam(lr=0.001) must work
    assert opt.learning_rate == np.float32(0.001)
    opt.learning_rate = 0.5
    assert opt.learning_rate == np.float32(0.5)
    assert isinstance(O.get("adam"), O.Adam) and O.get("adam").learning_rate == np.float32(0.001)
    assert O.get("SGD").learning_rate == np.float32(0.01)
    assert isinstance(O.get("rmsprop"), O.RMSprop) and isinstance(O.get("nadam"), O.Nadam)
    assert O.AdamW().weight_decay == 0.004
    with pytest.raises(ValueError, match="Could not interpret optimizer"):
        O.get("adamz")
    with pytest.raises(ValueError, match="not recognized"):
        O.SGD(foo=1)


def test_schedules_follow_keras_formulas():
    S = O.schedules
    e = S.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert e(5) == pytest.approx(0.1 * 0.5 ** 0.5, rel=1e-6)
    assert S.ExponentialDecay(0.1, 10, 0.5, staircase=True)(15) == pytest.approx(0.05, rel=1e-6)
    p = S.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert [p(s) for s in (0, 10, 11, 20, 21)] == [1.0, 1.0, 0.5, 0.5, pytest.approx(0.1)]
    c = S.CosineDecay(0.1, decay_steps=100, alpha=0.1)
    assert c(50) == pytest.approx(0.1 * (0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)) + 0.1), rel=1e-6)
    assert c(500) == pytest.approx(0.01, rel=1e-5)
    w = S.CosineDecay(0.0, 100, warmup_target=0.1, warmup_steps=10)
    assert w(5) == pytest.approx(0.05, rel=1e-6) and w(10) == pytest.approx(0.1, rel=1e-6)
    i = S.InverseTimeDecay(0.1, decay_steps=1.0, decay_rate=0.5)
    assert i(4) == pytest.approx(0.1 / 3, rel=1e-6)
    opt = O.SGD(learning_rate=S.ExponentialDecay(1.0, 1, 0.5))
    v = Variable(np.zeros(1, np.float32), name="v")
    for _ in range(3):
        opt.apply_gradients([(np.ones(1), v)])
    np.testing.assert_allclose(v.numpy(), [-(1 + 0.5 + 0.25)], rtol=1e-6)
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.1
