"""The training graph cut at the gradients, in one process (no MPI needed): a
``DataParallel`` over a world of one trains bit for bit as the uncut step."""
import sys

import numpy as np
import pytest

import kiln
from kiln import layers
from kiln.distributed import DataParallel, LocalComm, split_at_gradients
from kiln.ir import parse


@pytest.fixture(autouse=True)
def _fresh():
    kiln.utils.clear_session()
    yield
    kiln.utils.clear_session()


def _model(distribute, optimizer, bn=True, dropout=False, metrics=("accuracy",)):
    kiln.utils.set_random_seed(7)
    body = [layers.Dense(8, activation="relu")]
    body += [layers.Dropout(0.3)] if dropout else []
    body += [layers.BatchNormalization()] if bn else []
    m = kiln.Sequential([kiln.Input(shape=(5,)), *body, layers.Dense(3, activation="softmax")])
    m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=list(metrics),
              distribute=distribute)
    return m


def _data(n=50):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(n, 5)).astype("float32"), rng.integers(0, 3, n),
            rng.uniform(0.5, 2, n).astype("float32"))


@pytest.mark.parametrize("opt", [
    lambda: kiln.optimizers.Adam(0.01, global_clipnorm=1.0),
    lambda: kiln.optimizers.SGD(0.1, momentum=0.9, nesterov=True, clipvalue=0.5),
    lambda: kiln.optimizers.AdamW(0.01, loss_scale_factor=4.0),
])
def test_one_rank_trains_bit_for_bit_as_the_uncut_step(opt):
    x, y, sw = _data()
    a = _model(None, opt(), dropout=True)
    ha = a.fit(x, y, sample_weight=sw, batch_size=12, epochs=2, verbose=0,
               validation_data=(x[:10], y[:10]))
    s = DataParallel(LocalComm())
    b = _model(s, opt(), dropout=True)
    hb = b.fit(x, y, sample_weight=sw, batch_size=12, epochs=2, verbose=0,
               validation_data=(x[:10], y[:10]))
    assert ha.history == hb.history
    for u, v in zip(a.get_weights(), b.get_weights()):
        assert np.array_equal(u, v)
    for u, v in zip(a.optimizer.variables, b.optimizer.variables, strict=True):
        assert np.array_equal(u, v)
    assert s.allreduces == 2 * 5 == b.optimizer.iterations
    assert a.evaluate(x, y, verbose=0) == b.evaluate(x, y, verbose=0)


def test_the_cut_packs_gradients_then_averages_then_sums():
    x, y, _ = _data(12)
    m = _model(DataParallel(LocalComm()), "adam")
    m.train_on_batch(x, y)
    step = m._train_step
    sp = step.split
    kinds = [s[0] for s in sp.sections]
    assert kinds == sorted(kinds, key=["grad", "average", "sum"].index)
    assert {s[1] for s in sp.sections if s[0] == "average"} == {
        "batch_normalization.moving_mean", "batch_normalization.moving_variance"}
    assert {s[1] for s in sp.sections if s[0] == "sum"} == set(step.train_state)
    assert sp.scaled == sum(s[3] for s in sp.sections if s[0] != "sum")
    assert sp.size == sum(s[3] for s in sp.sections) == sp.apply_graph.inputs[0].type.shape[0]
    # the grads graph reads the weights as inputs (never folded) and keeps the RNG counter
    g1, g2 = sp.grads_graph, sp.apply_graph
    assert [v.name for v in g1.inputs][:3] == ["input_layer", "y_true", "sample_weight"]
    assert set(sp.fed) == {v.name for v in g1.inputs[3:]}
    assert "dense.kernel" in sp.fed and g1.updated_params <= {"rng.counter"}
    assert [str(v.type) for v in g1.outputs] == [f"f32[{sp.size}]"]
    # the apply graph: the reduced buffer and the learning rate in; every update there
    assert [v.name for v in g2.inputs] == ["reduced", "learning_rate"]
    assert "adam.iterations" in g2.updated_params and "dense.kernel" in g2.updated_params
    assert set(step.train_state) <= g2.updated_params
    for g in (g1, g2):
        assert str(parse(str(g))) == str(g)


def test_split_of_a_hand_built_graph():
    from kiln.ir import Graph, TensorType
    from kiln.ir.types import DType
    from kiln.passes.autodiff import gradients
    g = Graph("t_train")
    x = g.add_input("x", TensorType(("N", 3), DType.f32))
    lr = g.add_input("learning_rate", TensorType((), DType.f32))
    w = g.add_param("w", np.ones((3,), np.float32))
    tot = g.add_param("metrics.loss.total", np.zeros((), np.float32))
    with g.building():
        loss = g.op("reduce_sum", g.op("mul", x, w), axes=(0, 1))
        (dw,) = gradients(g, loss, [w])
        g.add_update(w, g.op("sub", w, g.op("mul", dw, lr)))
        new_tot = g.op("add", tot, loss)
        g.add_update(tot, new_tot)
    g.set_outputs([new_tot])
    sp = split_at_gradients(g, {"w": dw}, set(), {"metrics.loss.total"}, {"w"})
    assert [s[:2] for s in sp.sections] == [("grad", "w"), ("sum", "metrics.loss.total")]
    from kiln.ir import interpret
    xs = np.arange(6, dtype=np.float32).reshape(2, 3)
    (packed,) = [interpret(sp.grads_graph, xs, np.ones(3, np.float32))]
    assert np.allclose(packed, [3, 5, 7, 15])           # dw = column sums; loss from zero
    out, upd = interpret(sp.apply_graph, packed, np.float32(0.5), return_updates=True)
    assert np.allclose(upd["w"], 1 - 0.5 * np.array([3, 5, 7]))
    assert float(out) == float(upd["metrics.loss.total"]) == 15.0


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("batch", [1, 2, 10, 12, 13])
def test_shards_cover_the_global_batch_evenly(size, batch):
    class Comm(LocalComm):
        def __init__(self, r):
            self.r = r

        def Get_rank(self):
            return self.r

        def Get_size(self):
            return size
    parts = [DataParallel(Comm(r), abort_on_error=False).shard(batch) for r in range(size)]
    assert parts[0][0] == 0 and parts[-1][1] == batch
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sizes = [e - b for b, e in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_other_ranks_drop_the_progress_bar_and_file_writers():
    class Rank1(LocalComm):
        def Get_rank(self):
            return 1

        def Get_size(self):
            return 2
    s = DataParallel(Rank1(), abort_on_error=False)
    ck = kiln.callbacks.ModelCheckpoint("x.npz")
    es = kiln.callbacks.EarlyStopping(monitor="loss")
    verbose, cbs = s.fit_setup(1, [ck, es, kiln.callbacks.CSVLogger("log.csv")])
    assert verbose == 0 and cbs[0] is es and len(cbs) == 2       # + the epoch-end barrier
    verbose, cbs = DataParallel(LocalComm()).fit_setup(1, [ck])
    assert verbose == 1 and cbs == [ck]


def test_without_mpi4py_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"kiln\[distributed\]"):
        DataParallel()


def _functional(distribute, freeze):
    kiln.utils.set_random_seed(1)
    inp = kiln.Input(shape=(5,))
    h = layers.Dense(8, activation="relu", name="h")(inp)
    m = kiln.Model(inp, [layers.Dense(3, activation="softmax", name="a")(h),
                         layers.Dense(1, name="b")(h)])
    if freeze:
        m.get_layer("h").trainable = False
    m.compile(optimizer="rmsprop", loss=["sparse_categorical_crossentropy", "mse"],
              loss_weights=[1.0, 0.5], metrics=[["accuracy"], ["mae"]], distribute=distribute)
    return m


def _conv(distribute):
    kiln.utils.set_random_seed(1)
    m = kiln.Sequential([kiln.Input(shape=(6, 6, 2)), layers.Conv2D(3, 3, activation="relu"),
                         layers.BatchNormalization(), layers.MaxPooling2D(), layers.Flatten(),
                         layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", distribute=distribute)
    return m


def _lstm(distribute):
    kiln.utils.set_random_seed(1)
    m = kiln.Sequential([kiln.Input(shape=(4, 3)), layers.LSTM(5),
                         layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", distribute=distribute)
    return m


@pytest.mark.parametrize("kind", ["multi-output", "frozen-layer", "conv-bn", "lstm"])
def test_one_rank_bit_for_bit_other_models(kind):
    rng = np.random.default_rng(0)
    y, z = rng.integers(0, 3, 20), rng.normal(size=(20, 1)).astype("float32")
    make, x, t = {
        "multi-output": (lambda d: _functional(d, False), rng.normal(size=(20, 5)), [y, z]),
        "frozen-layer": (lambda d: _functional(d, True), rng.normal(size=(20, 5)), [y, z]),
        "conv-bn": (_conv, rng.normal(size=(20, 6, 6, 2)), y),
        "lstm": (_lstm, rng.normal(size=(20, 4, 3)), y)}[kind]
    x = x.astype("float32")
    runs = []
    for d in (None, DataParallel(LocalComm())):
        kiln.utils.clear_session()
        m = make(d)
        h = m.fit(x, t, batch_size=8, epochs=2, verbose=0)
        m.set_weights(m.get_weights())                     # pushed back into the buffers
        m.train_on_batch(x[:8], [a[:8] for a in t] if isinstance(t, list) else t[:8])
        runs.append((h.history, m.get_weights()))
    (ha, wa), (hb, wb) = runs
    assert ha == hb
    assert all(np.array_equal(u, v) for u, v in zip(wa, wb, strict=True))
