"""Files written by real Keras 3.15.1 (tests/fixtures/keras, see make_fixtures.py):
kiln loads them to Keras' predictions, and re-serializes them to Keras' configs."""
import json
import zipfile

import h5py
import numpy as np
import pytest
from conftest import MODELS, assert_close, fixture, inputs

import kiln
from kiln.saving import serialize
from kiln.saving.keras_v3 import model_json_config
from kiln.saving.legacy_h5 import legacy_model_config


@pytest.fixture(autouse=True)
def _fresh():
    kiln.utils.clear_session()
    yield


def _strip(o, drop=("shared_object_id",)):
    if isinstance(o, dict):
        return {k: _strip(v, drop) for k, v in o.items() if k not in drop}
    if isinstance(o, list):
        return [_strip(v, drop) for v in o]
    return o


def _no_mask(o):
    """Keras records ``mask=None`` in some nodes' kwargs (kiln has no masks)."""
    if isinstance(o, dict):
        return {k: _no_mask(v) for k, v in o.items()
                if not (k == "mask" and v is None)}
    if isinstance(o, list):
        return [_no_mask(v) for v in o]
    return o


@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("name", MODELS)
def test_predictions_match_keras(name, ext):
    ref = np.load(fixture(name + ".npz"))
    model = kiln.models.load_model(fixture(name + ext))
    assert_close(model.predict(inputs(ref)), ref["y"])


@pytest.mark.parametrize("name", MODELS)
def test_config_json_is_what_keras_wrote(name):
    keras_cfg = json.loads(zipfile.ZipFile(fixture(name + ".keras")).read("config.json"))
    model = kiln.models.load_model(fixture(name + ".keras"))
    assert _no_mask(_strip(model_json_config(model))) == _no_mask(_strip(keras_cfg))


@pytest.mark.parametrize("name", ["mlp", "two_input", "rnn", "transformer", "nested", "trained"])
def test_legacy_model_config_is_what_keras_wrote(name):
    with h5py.File(fixture(name + ".h5")) as f:
        keras_cfg = json.loads(f.attrs["model_config"])
    model = kiln.models.load_model(fixture(name + ".keras"))
    assert _no_mask(legacy_model_config(model)) == _no_mask(keras_cfg)


@pytest.mark.parametrize("name", ["mlp", "two_input", "rnn", "transformer", "bn", "nested"])
def test_to_json_is_what_keras_wrote(name):
    with open(fixture(name + ".json")) as f:
        keras_json = json.load(f)
    model = kiln.models.load_model(fixture(name + ".keras"))
    assert _no_mask(json.loads(model.to_json())) == _no_mask(keras_json)


@pytest.mark.parametrize("name", ["mlp", "two_input", "rnn"])
def test_weights_h5_from_keras(name):
    ref = np.load(fixture(name + ".npz"))
    with open(fixture(name + ".json")) as f:
        model = kiln.models.model_from_json(f.read())
    model.load_weights(fixture(name + ".weights.h5"))
    assert_close(model.predict(inputs(ref)), ref["y"])


@pytest.mark.parametrize("name", ["mlp", "two_input"])
def test_legacy_h5_weights_into_a_fresh_model(name):
    ref = np.load(fixture(name + ".npz"))
    with open(fixture(name + ".json")) as f:
        model = kiln.models.model_from_json(f.read())
    model.load_weights(fixture(name + ".h5"))          # model_weights group, by position
    assert_close(model.predict(inputs(ref)), ref["y"])


def test_optimizer_state_from_keras():
    opt_ref = np.load(fixture("trained_optimizer.npz"))
    ref = [opt_ref[f"v{i}"] for i in range(len(opt_ref.files))]
    for ext in (".keras", ".h5"):
        model = kiln.models.load_model(fixture("trained" + ext))
        opt = model.optimizer
        assert type(opt).__name__ == "Adam"
        assert model.loss == "mse"
        np.testing.assert_allclose(float(opt.learning_rate), 0.01, rtol=1e-6)
        assert opt.iterations == int(ref[0]) == 4
        i = 2
        for var in model.trainable_weights:
            for slot in ("momentum", "velocity"):
                got = opt._slot_store[(id(var), slot)][1]
                np.testing.assert_array_equal(got, ref[i])
                i += 1


def test_training_continues_after_loading():
    model = kiln.models.load_model(fixture("trained.keras"))
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    h = model.fit(x, x.sum(1, keepdims=True), epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(h.history["loss"][0])
    assert model.optimizer.iterations == 5


def test_compile_false_leaves_model_uncompiled():
    model = kiln.models.load_model(fixture("trained.keras"), compile=False)
    assert not model.compiled


def test_layer_configs_match_keras_defaults():
    with open(fixture("layer_configs.json")) as f:
        keras_cfgs = json.load(f)
    L = kiln.layers
    args = {"Dense": (3,), "Conv2D": (2, 3), "LSTM": (3,), "GRU": (3,), "SimpleRNN": (3,),
            "Embedding": (10, 3), "Dropout": (0.5,), "MultiHeadAttention": (2, 4)}
    for cls, expected in keras_cfgs.items():
        if cls == "Bidirectional":
            layer = L.Bidirectional(L.LSTM(3, name="lstm"), name="bidirectional")
            got = serialize(layer)
            exp = _strip(expected)
            for sub in ("layer", "backward_layer"):   # Keras' names forward_lstm / ...
                got["config"][sub]["config"]["name"] = exp["config"][sub]["config"]["name"]
        else:
            layer = getattr(L, cls)(*args.get(cls, ()))
            got, exp = serialize(layer), _strip(expected)
            got["config"]["name"] = exp["config"]["name"]
        assert got == exp, cls


def test_keras_reads_kiln_files_to_kiln_predictions(kiln_models):
    """make_fixtures.py --kiln saved these kiln models with kiln, loaded the files in
    Keras and stored Keras' predictions (y_keras: .keras, y_h5: .h5)."""
    for name, model in kiln_models.items():
        ref = np.load(fixture(f"kiln_{name}.npz"))
        y = model.predict(inputs(ref))
        assert_close(y, ref["y_kiln"])
        assert_close(ref["y_keras"], y)
        assert_close(ref["y_h5"], y)
