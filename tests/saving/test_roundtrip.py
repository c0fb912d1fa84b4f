"""kiln -> file -> kiln round trips, and the structure of the files kiln writes
(compared with the layout Keras wrote for the same architecture)."""
import io
import json
import zipfile

import h5py
import numpy as np
import pytest
from conftest import assert_close, fixture, inputs

import kiln
from kiln.saving import SavingError

L = kiln.layers


@pytest.fixture(autouse=True)
def _fresh():
    kiln.utils.clear_session()
    yield


def _x(model, n=3, seed=0):
    rng = np.random.default_rng(seed)
    specs = model._input_specs()
    xs = [rng.standard_normal((n,) + tuple(s[1:])).astype(np.float32) for _, s, _ in specs]
    return xs if len(xs) > 1 else xs[0]


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_kiln_models_round_trip_exactly(kiln_models, tmp_path, ext):
    for name, model in kiln_models.items():
        x = _x(model)
        y = model.predict(x)
        path = tmp_path / (name + ext)
        model.save(path)
        back = kiln.models.load_model(path)
        assert type(back) is type(model)
        assert [l.name for l in back.layers] == [l.name for l in model.layers]
        for a, b in zip(model.weights, back.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(back.predict(x), y)
        assert back.to_json() == model.to_json()


def test_keras_file_round_trips_through_kiln(tmp_path):
    ref = np.load(fixture("transformer.npz"))
    model = kiln.models.load_model(fixture("transformer.keras"))
    model.save(tmp_path / "t.keras")
    model.save(tmp_path / "t.h5")
    for p in ("t.keras", "t.h5"):
        assert_close(kiln.models.load_model(tmp_path / p).predict(inputs(ref)), ref["y"])


def _tree(h5):
    out = {}

    def visit(name, obj):
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in obj.attrs.items()
                 if k == "name"}
        auto = "/_" in name      # Keras' internal sublayers have session-counted names
        out[name] = (getattr(obj, "shape", None), None if auto else attrs.get("name"))
    h5.visititems(visit)
    return out


@pytest.mark.parametrize("name", ["mlp", "rnn", "transformer", "bn", "two_input", "misc"])
def test_keras_archive_layout_matches_keras(tmp_path, name):
    model = kiln.models.load_model(fixture(name + ".keras"))
    model.save(tmp_path / "m.keras")
    z_kiln = zipfile.ZipFile(tmp_path / "m.keras")
    z_keras = zipfile.ZipFile(fixture(name + ".keras"))
    assert [i.filename for i in z_kiln.infolist()] == [i.filename for i in z_keras.infolist()]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in z_kiln.infolist())
    meta = json.loads(z_kiln.read("metadata.json"))
    assert set(meta) >= {"keras_version", "date_saved"}
    with h5py.File(io.BytesIO(z_kiln.read("model.weights.h5"))) as a, \
            h5py.File(io.BytesIO(z_keras.read("model.weights.h5"))) as b:
        assert _tree(a) == _tree(b)


@pytest.mark.parametrize("name", ["mlp", "two_input", "rnn"])
def test_legacy_h5_layout_matches_keras(tmp_path, name):
    model = kiln.models.load_model(fixture(name + ".h5"))
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5") as a, h5py.File(fixture(name + ".h5")) as b:
        assert set(a.attrs) == set(b.attrs)
        ga, gb = a["model_weights"], b["model_weights"]
        assert list(ga.attrs["layer_names"]) == [n.encode() if isinstance(n, str) else n
                                                 for n in gb.attrs["layer_names"]]
        assert sorted(ga) == sorted(gb)
        for layer in gb:
            wa = [n.decode() for n in ga[layer].attrs["weight_names"]]
            wb = [n.decode() if isinstance(n, bytes) else n
                  for n in gb[layer].attrs["weight_names"]]
            assert len(wa) == len(wb)
            if name != "mlp":    # Keras 3.15 prefixes a Sequential's paths with its name
                assert wa == wb
            for na, nb in zip(wa, wb):
                assert ga[layer][na].shape == gb[layer][nb].shape


def test_weights_file_layout_matches_keras(tmp_path):
    model = kiln.models.load_model(fixture("rnn.keras"))
    model.save_weights(tmp_path / "w.weights.h5")
    with h5py.File(tmp_path / "w.weights.h5") as a, h5py.File(fixture("rnn.weights.h5")) as b:
        assert _tree(a) == _tree(b)


def test_optimizer_state_round_trips(tmp_path):
    model = kiln.Sequential([kiln.Input((4,)), L.Dense(3, activation="relu"), L.Dense(1)])
    model.compile(optimizer=kiln.optimizers.Adam(0.01), loss="mse")
    x = np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32)
    model.fit(x, x.sum(1, keepdims=True), batch_size=8, epochs=2, verbose=0)
    for ext in (".keras", ".h5"):
        model.save(tmp_path / ("m" + ext))
        back = kiln.models.load_model(tmp_path / ("m" + ext))
        assert back.optimizer.iterations == model.optimizer.iterations == 4
        for va, vb in zip(model.trainable_weights, back.trainable_weights):
            for slot in ("momentum", "velocity"):
                np.testing.assert_array_equal(model.optimizer._slot_store[(id(va), slot)][1],
                                              back.optimizer._slot_store[(id(vb), slot)][1])
    with h5py.File(tmp_path / "m.h5") as f:
        assert json.loads(f.attrs["training_config"])["optimizer_config"]["class_name"] == "Adam"
        assert len(f["optimizer_weights"].attrs["weight_names"]) == 2 + 4 * 2


@pytest.mark.parametrize("fname", ["w.weights.h5", "w.h5"])
def test_save_and_load_weights(kiln_models, tmp_path, fname):
    model = kiln_models["two_input"]
    x = _x(model)
    y = model.predict(x)
    model.save_weights(tmp_path / fname)
    kiln.utils.clear_session()
    fresh = kiln.models.model_from_json(model.to_json())
    assert not np.allclose(fresh.predict(x), y)
    fresh.load_weights(tmp_path / fname)
    np.testing.assert_array_equal(fresh.predict(x), y)


def test_load_weights_by_name_and_skip_mismatch(tmp_path):
    a = kiln.Sequential([kiln.Input((4,)), L.Dense(3, name="d1"), L.Dense(2, name="d2")])
    a.save_weights(tmp_path / "a.h5")
    # by_name: layers matched by name, in any order, missing ones left alone
    b = kiln.Sequential([kiln.Input((4,)), L.Dense(3, name="d1"), L.Dense(5, name="other"),
                         L.Dense(2, name="x")])
    before = b.get_layer("other").get_weights()
    b.load_weights(tmp_path / "a.h5", by_name=True)
    np.testing.assert_array_equal(b.get_layer("d1").get_weights()[0],
                                  a.get_layer("d1").get_weights()[0])
    np.testing.assert_array_equal(b.get_layer("other").get_weights()[0], before[0])
    # a shape mismatch by name is an error naming layer, weight and shapes...
    c = kiln.Sequential([kiln.Input((4,)), L.Dense(3, name="d1"), L.Dense(7, name="d2")])
    with pytest.raises(SavingError, match=r"'d2'.*kernel.*\(3, 7\).*\(3, 2\)"):
        c.load_weights(tmp_path / "a.h5", by_name=True)
    # ... unless skip_mismatch, which skips that layer with a warning
    with pytest.warns(UserWarning, match="d2"):
        c.load_weights(tmp_path / "a.h5", by_name=True, skip_mismatch=True)
    np.testing.assert_array_equal(c.get_layer("d1").get_weights()[0],
                                  a.get_layer("d1").get_weights()[0])
    a.save_weights(tmp_path / "a.weights.h5")
    c.load_weights(tmp_path / "a.weights.h5", skip_mismatch=True)
    with pytest.raises(SavingError, match=r"'d2'.*\(3, 7\).*\(3, 2\)"):
        c.load_weights(tmp_path / "a.weights.h5")


def test_json_and_yaml_round_trip(kiln_models):
    for model in kiln_models.values():
        s = model.to_json()
        assert kiln.models.model_from_json(s).to_json() == s
        y = model.to_yaml()
        back = kiln.models.model_from_yaml(y)
        assert back.to_json() == s
        assert "!!python" not in y


def test_get_config_from_config_per_layer():
    layers = [L.Dense(3, activation="relu", use_bias=False),
              L.Conv2D(4, 3, strides=2, padding="same"),
              L.BatchNormalization(axis=-1, momentum=0.9), L.LayerNormalization(epsilon=1e-5),
              L.Dropout(0.3, seed=1), L.Flatten(), L.Reshape((2, 3)), L.Embedding(10, 4),
              L.LSTM(3, return_sequences=True), L.GRU(2, reset_after=False), L.SimpleRNN(2),
              L.Bidirectional(L.GRU(2)), L.MultiHeadAttention(2, 3, value_dim=5),
              L.Concatenate(axis=1), L.Add(), L.MaxPooling2D(3), L.GlobalAveragePooling1D(),
              L.LeakyReLU(0.2), L.ZeroPadding2D(2), L.Cropping1D((1, 2)), L.UpSampling2D(),
              L.Permute((2, 1)), L.RepeatVector(3), L.Rescaling(0.5, 1.0), L.Softmax(),
              L.DepthwiseConv2D(3, depth_multiplier=2), L.SeparableConv1D(3, 2),
              L.Conv2DTranspose(2, 3), L.Dot(axes=1), L.PReLU(), L.ELU(0.5), L.ReLU(6.0)]
    for layer in layers:
        cfg = layer.get_config()
        json.dumps(cfg)
        back = type(layer).from_config(cfg)
        assert back.get_config() == cfg, type(layer).__name__


def test_model_get_config_from_config(kiln_models):
    for model in kiln_models.values():
        cfg = model.get_config()
        back = type(model).from_config(cfg)
        assert back.get_config() == cfg


def test_custom_layer_with_registration(tmp_path):
    @kiln.saving.register_keras_serializable(package="test")
    class Scale(L.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return kiln.ops.multiply(x, self.factor)

    model = kiln.Sequential([kiln.Input((3,)), Scale(3.0), L.Dense(2)])
    x = np.ones((2, 3), np.float32)
    model.save(tmp_path / "c.keras")
    cfg = json.loads(zipfile.ZipFile(tmp_path / "c.keras").read("config.json"))
    entry = cfg["config"]["layers"][1]
    assert entry["registered_name"] == "test>Scale" and entry["module"] is None
    assert entry["config"]["factor"] == 3.0
    np.testing.assert_allclose(kiln.models.load_model(tmp_path / "c.keras").predict(x),
                               model.predict(x))


def test_keras2_legacy_config_spellings():
    """tf.keras 2: batch_input_shape, plain dtype strings, nested-list inbound_nodes,
    one-element input/output lists, no module / registered_name, Keras 2 extras."""
    cfg = {"class_name": "Functional", "config": {"name": "model", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4],
                                                "dtype": "float32", "sparse": False,
                                                "ragged": False, "name": "input_1"},
         "name": "input_1", "inbound_nodes": []},
        {"class_name": "Dense", "config": {"name": "dense", "trainable": True, "dtype": "float32",
                                           "units": 2, "activation": "relu", "use_bias": True,
                                           "kernel_initializer": {"class_name": "GlorotUniform",
                                                                  "config": {"seed": None}},
                                           "bias_initializer": {"class_name": "Zeros",
                                                                "config": {}},
                                           "kernel_regularizer": None},
         "name": "dense", "inbound_nodes": [[["input_1", 0, 0, {}]]]},
        {"class_name": "LeakyReLU", "config": {"name": "lr", "alpha": 0.1, "dtype": "float32"},
         "name": "lr", "inbound_nodes": [[["dense", 0, 0, {}]]]}],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["lr", 0, 0]]},
        "keras_version": "2.15.0", "backend": "tensorflow"}
    model = kiln.models.model_from_json(json.dumps(cfg))
    assert model.input_shape == (None, 4)
    assert model.get_layer("lr").negative_slope == pytest.approx(0.1)
    seq = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Dense", "config": {"name": "d", "units": 3, "batch_input_shape": [None, 5],
                                           "dtype": "float32"}},
        {"class_name": "Dense", "config": {"name": "e", "units": 1, "unknown_default": None}}]}}
    s = kiln.models.model_from_json(json.dumps(seq))
    assert s.input_shape == (None, 5) and s.output_shape == (None, 1)


def test_unknown_benign_kwargs_warn():
    cfg = L.Dense(2).get_config()
    cfg["kernel_regularizer"] = {"class_name": "L2", "config": {"l2": 0.01}}
    with pytest.warns(UserWarning, match="kernel_regularizer"):
        L.Dense.from_config(cfg)


class _Net(kiln.Model):
    def __init__(self, width=4, **kw):
        super().__init__(**kw)
        self.enc = L.Dense(width, activation="relu")
        self.blocks = [L.Dense(width), L.Dense(width)]
        self.head = L.Dense(2)

    def call(self, x, training=False):
        x = self.enc(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_subclassed_model_weights_follow_keras_attribute_walk(tmp_path):
    m = _Net(name="net")
    x = np.ones((2, 3), np.float32)
    y = m.predict(x)
    m.save_weights(tmp_path / "w.weights.h5")
    with h5py.File(tmp_path / "w.weights.h5") as f:
        groups = sorted(k for k in _tree(f) if k.endswith("/vars") or k == "vars")
    assert groups == ["blocks/dense/vars", "blocks/dense_1/vars", "enc/vars", "head/vars", "vars"]
    m2 = _Net()
    m2.build((None, 3))
    m2.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(m2.predict(x), y)
    m.save(tmp_path / "m.keras")
    with pytest.raises(SavingError, match=r"'net' \(_Net\)"):
        kiln.models.load_model(tmp_path / "m.keras")
    back = kiln.models.load_model(tmp_path / "m.keras", custom_objects={"_Net": _Net})
    np.testing.assert_array_equal(back.predict(x), y)


def test_keras2_style_h5_file(tmp_path):
    """A tf.keras 2 layout, written by hand: bytes attributes, weight names with ':0',
    batch_input_shape, nested-list inbound nodes, Keras 2 optimizer names (not restored)."""
    rng = np.random.default_rng(0)
    k, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    cfg = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "dtype": "float32",
                                                "sparse": False, "ragged": False,
                                                "name": "dense_input"}},
        {"class_name": "Dense", "config": {"name": "dense", "trainable": True,
                                           "dtype": "float32", "units": 3,
                                           "activation": "sigmoid", "use_bias": True,
                                           "kernel_initializer": {"class_name": "GlorotUniform",
                                                                  "config": {"seed": None}},
                                           "bias_initializer": {"class_name": "Zeros",
                                                                "config": {}},
                                           "kernel_regularizer": None, "bias_regularizer": None,
                                           "activity_regularizer": None,
                                           "kernel_constraint": None, "bias_constraint": None}}]},
           "keras_version": "2.15.0", "backend": "tensorflow"}
    p = tmp_path / "k2.h5"
    with h5py.File(p, "w") as f:
        f.attrs["keras_version"] = b"2.15.0"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(cfg).encode()
        opt = {"class_name": "Adam", "config": {"name": "Adam", "learning_rate": 0.001}}
        f.attrs["training_config"] = json.dumps({"loss": "mse", "metrics": None,
                                                 "optimizer_config": opt}).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"dense"]
        d = g.create_group("dense")
        d.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        d.create_dataset("dense/kernel:0", data=k)
        d.create_dataset("dense/bias:0", data=b)
        o = f.create_group("optimizer_weights")
        o.attrs["weight_names"] = [b"Adam/iter:0"]
        o.create_dataset("Adam/iter:0", data=np.int64(3))
    with pytest.warns(UserWarning, match="Keras 2 optimizer state"):
        m = kiln.models.load_model(p)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x), 1 / (1 + np.exp(-(x @ k + b))), rtol=1e-5)
    assert m.compiled and type(m.optimizer).__name__ == "Adam"
