"""SimpleRNN, LSTM, GRU and Bidirectional against numpy implementations of Keras'
equations (written here, in float64), through the interpreter and compiled code."""
import numpy as np
import pytest

import kiln
from kiln.ir import DType, Graph, TensorType, interpret
from kiln.layers import GRU, LSTM, Bidirectional, SimpleRNN

from .helpers import sigmoid

rng = np.random.default_rng(5)


# -- numpy references: outputs in processing order, and the final states -------------------------
def np_loop(x, states, step, go_backwards):
    xs = x.astype(np.float64)
    order = range(xs.shape[1] - 1, -1, -1) if go_backwards else range(xs.shape[1])
    outs = []
    for t in order:
        states = step(xs[:, t], states)
        outs.append(states[0])
    return np.stack(outs, axis=1), states


def np_simple_rnn(x, w, go_backwards=False, act=np.tanh, states=None):
    k, u, b = w
    states = states or [np.zeros((x.shape[0], u.shape[0]))]
    return np_loop(x, states, lambda xt, s: [act(xt @ k + s[0] @ u + b)], go_backwards)


def np_lstm(x, w, go_backwards=False, states=None):
    k, u, b = w
    n = u.shape[0]
    states = states or [np.zeros((x.shape[0], n))] * 2

    def step(xt, s):
        h, c = s
        z = xt @ k + h @ u + b
        i, f, g, o = (z[:, j * n:(j + 1) * n] for j in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return [sigmoid(o) * np.tanh(c), c]
    return np_loop(x, states, step, go_backwards)


def np_gru(x, w, go_backwards=False, reset_after=True):
    k, u, b = w
    n = u.shape[0]

    def step(xt, s):
        (h,) = s
        if reset_after:
            mx, mh = xt @ k + b[0], h @ u + b[1]
            z = sigmoid(mx[:, :n] + mh[:, :n])
            r = sigmoid(mx[:, n:2 * n] + mh[:, n:2 * n])
            hh = np.tanh(mx[:, 2 * n:] + r * mh[:, 2 * n:])
        else:
            mx = xt @ k + b
            z = sigmoid(mx[:, :n] + h @ u[:, :n])
            r = sigmoid(mx[:, n:2 * n] + h @ u[:, n:2 * n])
            hh = np.tanh(mx[:, 2 * n:] + (r * h) @ u[:, 2 * n:])
        return [z * h + (1 - z) * hh]
    return np_loop(x, [np.zeros((x.shape[0], n))], step, go_backwards)


# -- running layers: the interpreter and compiled code on one graph -------------------------
def run(layers, xs, compiled=True, **kwargs):
    """Per batch of ``xs`` (a list of input tuples), the (interpreted, compiled) outputs of
    every layer called on the inputs (ONE graph, compiled once; with ``compiled=False``
    the interpreter's twice); outputs flattened."""
    x0 = xs[0]
    g = Graph("t")
    vals = [g.add_input(f"x{i}", TensorType(("N",) + x.shape[1:], DType.from_numpy(x.dtype)))
            for i, x in enumerate(x0)]
    outs = []
    with g.building():
        for layer in layers:
            out = layer(*vals, **kwargs)
            outs += list(out) if isinstance(out, (list, tuple)) else [out]
    g.set_outputs(outs)
    exe = kiln.compile(g) if compiled else (lambda *a: interpret(g, *a))
    as_list = (lambda r: list(r) if len(outs) > 1 else [r])  # noqa: E731
    return [(as_list(interpret(g, *x)), as_list(exe(*x))) for x in xs]


def check(cases, x_for, batches=(1, 5), tol=2e-5, compiled=True):
    """``cases``: (layer, want(x) -> list of arrays); every layer runs in one graph."""
    xs = [x_for(n) for n in batches]
    results = run([layer for layer, _ in cases], [(x,) for x in xs], compiled)
    for x, (got_i, got_c) in zip(xs, results):
        want = [w for _, fn in cases for w in fn(x)]
        assert len(got_i) == len(want)
        for a, b, w in zip(got_i, got_c, want):
            assert a.shape == w.shape and b.shape == w.shape
            np.testing.assert_allclose(a, w, rtol=tol, atol=tol)
            np.testing.assert_allclose(b, w, rtol=tol, atol=tol)


def randomize(layer, shape):
    layer.build(shape)
    layer.set_weights([rng.uniform(-0.5, 0.5, v.shape).astype(np.float32) for v in layer.weights])
    return [w.astype(np.float64) for w in layer.get_weights()]


def data(n, t=6, f=3):
    return rng.standard_normal((n, t, f)).astype(np.float32)


def expected(y_seq, states, layer):
    out = y_seq if layer.return_sequences else states[0]
    return [out, *states] if layer.return_state else [out]


MODES = [dict(), dict(return_sequences=True), dict(return_state=True),
         dict(go_backwards=True, return_sequences=True, return_state=True), dict(go_backwards=True)]


def _cases(make, reference):
    cases = []
    for mode in MODES:
        layer = make(**mode)
        w = randomize(layer, (None, 6, 3))
        cases.append((layer, lambda x, layer=layer, w=w: expected(
            *reference(x, w, layer.go_backwards), layer)))
    return cases


def check_modes(cases, batches):
    """Every mode through the interpreter; compiled, the modes that between them take
    every path (stacked outputs, states, reverse with and without sequences)."""
    check(cases, data, batches, compiled=False)
    check([cases[2], cases[3], cases[4]], data, batches)


def test_simple_rnn():
    check_modes(_cases(lambda **m: SimpleRNN(4, **m), np_simple_rnn), (1, 5))


def test_lstm():
    check_modes(_cases(lambda **m: LSTM(5, **m), np_lstm), (1, 3))


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru(reset_after):
    check_modes(_cases(lambda **m: GRU(4, reset_after=reset_after, **m),
                       lambda x, w, back: np_gru(x, w, back, reset_after)), (1, 3))


def test_options_activation_and_no_bias():
    layer = SimpleRNN(3, activation="relu", use_bias=False, return_sequences=True)
    layer.build((None, 4, 2))
    k, u = (rng.uniform(-0.5, 0.5, v.shape).astype(np.float32) for v in layer.weights)
    layer.set_weights([k, u])
    relu = lambda v: np.maximum(v, 0)   # noqa: E731
    check([(layer, lambda x: [np_simple_rnn(x, [k, u, 0.0], act=relu)[0]])],
          lambda n: data(n, 4, 2), batches=(3,))
    gru = GRU(3, use_bias=False)
    gru.build((None, 4, 2))
    assert [v.name for v in gru.weights] == ["kernel", "recurrent_kernel"]


def test_initial_state():
    layer = LSTM(4, return_state=True)
    w = randomize(layer, (None, 6, 3))
    x, h0, c0 = data(3), *rng.standard_normal((2, 3, 4)).astype(np.float32)
    ys, states = np_lstm(x, w, states=[h0.astype(np.float64), c0.astype(np.float64)])
    g = Graph("t")
    xv = g.add_input("x", TensorType(("N", 6, 3)))
    hv, cv = g.add_input("h0", TensorType(("N", 4))), g.add_input("c0", TensorType(("N", 4)))
    with g.building():
        g.set_outputs(layer(xv, initial_state=[hv, cv]))
    for got in (interpret(g, x, h0, c0), kiln.compile(g)(x, h0, c0)):
        for a, b in zip(got, [states[0], *states]):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_bidirectional():
    cases = []
    for return_sequences in (True, False):
        for merge_mode in ("concat", "sum", "ave", "mul", None):
            layer = Bidirectional(LSTM(4, return_sequences=return_sequences),
                                  merge_mode=merge_mode)
            w = randomize(layer, (None, 6, 3))

            def want(x, w=w, seq=return_sequences, mode=merge_mode):
                fy, fs = np_lstm(x, w[:3])
                by, bs = np_lstm(x, w[3:], go_backwards=True)
                y, y_rev = (fy, by[:, ::-1]) if seq else (fs[0], bs[0])
                return {"concat": lambda: [np.concatenate([y, y_rev], -1)],
                        "sum": lambda: [y + y_rev], "ave": lambda: [(y + y_rev) / 2],
                        "mul": lambda: [y * y_rev], None: lambda: [y, y_rev]}[mode]()
            cases.append((layer, want))
    check(cases, data, batches=(3,), compiled=False)
    check([cases[0], cases[3], cases[9]], data, batches=(1, 3))   # compiled: a few of them


def test_bidirectional_return_state_and_weights():
    layer = Bidirectional(GRU(4, return_state=True), merge_mode="sum")
    w = randomize(layer, (None, 6, 3))

    def want(x):
        (_, (fh,)), (_, (bh,)) = np_gru(x, w[:3]), np_gru(x, w[3:], go_backwards=True)
        return [fh + bh, fh, bh]
    check([(layer, want)], data, batches=(1, 2))
    assert [v.path for v in layer.weights] == [
        f"bidirectional/{d}_gru/gru_cell/{n}" for d in ("forward", "backward")
        for n in ("kernel", "recurrent_kernel", "bias")]
    assert layer.forward_layer.go_backwards is False and layer.backward_layer.go_backwards


# -- weights, defaults, parameter counts (Keras') ------------------------------------------
@pytest.mark.parametrize("layer, features, count", [
    (SimpleRNN(8), 5, 5 * 8 + 8 * 8 + 8),
    (LSTM(8), 5, 4 * (5 * 8 + 8 * 8 + 8)),
    (GRU(8), 5, 3 * (5 * 8 + 8 * 8 + 2 * 8)),
    (GRU(8, reset_after=False), 5, 3 * (5 * 8 + 8 * 8 + 8)),
    (Bidirectional(LSTM(8)), 5, 2 * 4 * (5 * 8 + 8 * 8 + 8)),
    (LSTM(128), 64, 98816),               # Keras' summary of LSTM(128) on 64 features
])
def test_param_counts(layer, features, count):
    layer.build((None, 10, features))
    assert layer.count_params() == count


def test_weight_layout_and_defaults():
    lstm = LSTM(3)
    lstm.build((None, 7, 2))
    k, u, b = lstm.get_weights()
    assert (k.shape, u.shape, b.shape) == ((2, 12), (3, 12), (12,))
    np.testing.assert_array_equal(b, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])   # unit_forget_bias
    np.testing.assert_allclose(u @ u.T, np.eye(3), atol=1e-5)                  # orthogonal
    assert [v.path for v in lstm.weights] == ["lstm/lstm_cell/kernel",
                                              "lstm/lstm_cell/recurrent_kernel",
                                              "lstm/lstm_cell/bias"]
    gru = GRU(3)
    gru.build((None, 7, 2))
    assert [w.shape for w in gru.get_weights()] == [(2, 9), (3, 9), (2, 9)]
    plain = LSTM(3, unit_forget_bias=False)
    plain.build((None, 7, 2))
    assert not plain.get_weights()[2].any()


def test_sequential_predict_and_graph_size():
    def model(t):
        return kiln.Sequential([kiln.Input(shape=(t, 3)), GRU(4, return_sequences=True), LSTM(5)])
    short, long = model(10), model(400)
    for m in (short, long):
        ws = m.get_weights()
        m.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in ws])
    assert len(kiln.lower(short).nodes) == len(kiln.lower(long).nodes)
    x = data(3, 400)
    w = [v.astype(np.float64) for v in long.get_weights()]
    want = np_lstm(np_gru(x, w[:3])[0], w[3:])[1][0]
    np.testing.assert_allclose(long.predict(x, batch_size=2), want, rtol=1e-4, atol=1e-4)


# -- errors ------------------------------------------------------------------------------------
def test_unsupported_arguments_are_clear():
    with pytest.raises(NotImplementedError, match="kernel_regularizer"):
        LSTM(3, kernel_regularizer="l2")
    with pytest.raises(NotImplementedError, match="stateful"):
        GRU(3, stateful=True)
    layer = LSTM(3, dropout=0.5, recurrent_dropout=0.2)     # the identity at inference
    assert layer(data(2)).shape == (2, 3)
    g = Graph("t")
    x = g.add_input("x", TensorType(("N", 6, 3)))
    with g.building(), pytest.raises(NotImplementedError, match="dropout in training"):
        layer(x, training=True)


def test_wrong_input_rank_names_the_layer():
    with pytest.raises(ValueError, match='LSTM layer "lstm".*timesteps'):
        LSTM(3)(np.zeros((2, 3), np.float32))


def test_bidirectional_checks():
    with pytest.raises(ValueError, match="Invalid merge mode"):
        Bidirectional(LSTM(3), merge_mode="max")
    with pytest.raises(ValueError, match="recurrent layer"):
        Bidirectional(kiln.layers.Dense(3))
    with pytest.raises(ValueError, match="go_backwards"):
        Bidirectional(LSTM(3), backward_layer=LSTM(3))


def test_unknown_number_of_time_steps():
    layer = Bidirectional(GRU(4, return_sequences=True), merge_mode="sum")
    model = kiln.Sequential([kiln.Input(shape=(None, 3)), layer])
    w = [v.astype(np.float64) for v in model.get_weights()]
    for t in (1, 7):
        x = data(3, t)
        want = np_gru(x, w[:3])[0] + np_gru(x, w[3:], go_backwards=True)[0][:, ::-1]
        np.testing.assert_allclose(model.predict(x), want, rtol=2e-5, atol=2e-5)
    with pytest.raises(NotImplementedError, match="known number of time steps"):
        kiln.Sequential([kiln.Input(shape=(None, 3)),
                         LSTM(2, go_backwards=True, return_sequences=True)])
