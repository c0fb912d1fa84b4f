"""Bad files and unsafe configs give clear errors (naming file / layer / weight), never a
crash; saving is atomic."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import h5py
import pytest
from conftest import fixture

import kiln
from kiln.saving import SavingError

L = kiln.layers


@pytest.fixture(autouse=True)
def _fresh():
    kiln.utils.clear_session()
    yield


@pytest.mark.parametrize("name", ["mlp.keras", "mlp.h5", "mlp.weights.h5"])
@pytest.mark.parametrize("keep", [0, 7, 100, 0.5])
def test_truncated_files(tmp_path, name, keep):
    data = open(fixture(name), "rb").read()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    p = tmp_path / name
    p.write_bytes(data[:n])
    with pytest.raises(SavingError, match=str(p)):
        if name.endswith(".weights.h5"):
            kiln.Sequential([kiln.Input((8,)), L.Dense(16), L.Dense(4)]).load_weights(p)
        else:
            kiln.models.load_model(p)


def test_corrupt_bytes_inside_keras_archive(tmp_path):
    data = bytearray(open(fixture("mlp.keras"), "rb").read())
    data[len(data) // 2: len(data) // 2 + 200] = b"\xff" * 200   # the zip CRC catches it
    p = tmp_path / "c.keras"
    p.write_bytes(bytes(data))
    with pytest.raises(SavingError, match="c.keras"):
        kiln.models.load_model(p)


def test_wrong_extension(tmp_path):
    shutil.copy(fixture("mlp.h5"), tmp_path / "m.keras")
    with pytest.raises(SavingError, match=r"m.keras.*extension says a zip archive.*HDF5"):
        kiln.models.load_model(tmp_path / "m.keras")
    shutil.copy(fixture("mlp.keras"), tmp_path / "m.h5")
    with pytest.raises(SavingError, match=r"m.h5.*HDF5.*zip"):
        kiln.models.load_model(tmp_path / "m.h5")
    (tmp_path / "m.txt").write_text("hello")
    with pytest.raises(SavingError, match="unknown model file format"):
        kiln.models.load_model(tmp_path / "m.txt")
    with pytest.raises(ValueError, match="extension"):
        kiln.Sequential([kiln.Input((2,)), L.Dense(1)]).save(tmp_path / "m.pb")
    with pytest.raises(FileNotFoundError):
        kiln.models.load_model(tmp_path / "nope.keras")


def test_keras_archive_missing_member(tmp_path):
    p = tmp_path / "m.keras"
    with zipfile.ZipFile(fixture("mlp.keras")) as src, zipfile.ZipFile(p, "w") as dst:
        dst.writestr("metadata.json", src.read("metadata.json"))
        dst.writestr("config.json", src.read("config.json"))
    with pytest.raises(SavingError, match="model.weights.h5.*missing"):
        kiln.models.load_model(p)


def test_zip_bomb_guard(tmp_path, monkeypatch):
    from kiln.saving import keras_v3
    monkeypatch.setattr(keras_v3, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(SavingError, match="zip bomb"):
        kiln.models.load_model(fixture("mlp.keras"))


def _edit_keras(src, dst, config=None, weights=None):
    with zipfile.ZipFile(src) as zs, zipfile.ZipFile(dst, "w") as zd:
        for m in zs.namelist():
            data = zs.read(m)
            if m == "config.json" and config is not None:
                data = json.dumps(config(json.loads(data)))
            if m == "model.weights.h5" and weights is not None:
                data = weights(data)
            zd.writestr(m, data)


def _h5_edit(fn):
    def edit(data):
        import io
        buf = io.BytesIO(data)
        with h5py.File(buf, "a") as f:
            fn(f)
        return buf.getvalue()
    return edit


def test_missing_weight_names_the_layer(tmp_path):
    p = tmp_path / "m.keras"
    _edit_keras(fixture("mlp.keras"), p, weights=_h5_edit(lambda f: f.__delitem__(
        "layers/dense_1/vars/1")))
    with pytest.raises(SavingError, match=r"m.keras.*'dense_1' expects 2 weights.*has 1"):
        kiln.models.load_model(p)
    _edit_keras(fixture("mlp.keras"), p, weights=_h5_edit(lambda f: f.__delitem__(
        "layers/dense")))
    with pytest.raises(SavingError, match=r"no weights for layer 'dense'.*layers/dense/vars"):
        kiln.models.load_model(p)


def test_shape_mismatch_names_layer_weight_and_shapes(tmp_path):
    p = tmp_path / "m.keras"

    def widen(cfg):
        cfg["config"]["layers"][1]["config"]["units"] = 17
        cfg["config"]["layers"][3]["build_config"]["input_shape"] = [None, 17]
        return cfg
    _edit_keras(fixture("mlp.keras"), p, config=widen)
    with pytest.raises(SavingError, match=r"'dense': weight 'kernel' has shape \(8, 17\) in the "
                                          r"model but \(8, 16\) in the file"):
        kiln.models.load_model(p)


def test_legacy_h5_missing_dataset_and_layer_count(tmp_path):
    p = tmp_path / "m.h5"
    shutil.copy(fixture("mlp.h5"), p)
    with h5py.File(p, "a") as f:
        del f["model_weights/dense/mlp/dense/bias"]
    with pytest.raises(SavingError, match=r"layer 'dense': weight 'mlp/dense/bias' .*missing"):
        kiln.models.load_model(p)
    m = kiln.Sequential([kiln.Input((8,)), L.Dense(16), L.Dense(4), L.Dense(2)])
    with pytest.raises(SavingError, match=r"weights for 2 layers.*3 layers with weights"):
        m.load_weights(fixture("mlp.h5"))


def _with_layer(cfg, entry):
    cfg["config"]["layers"].append(entry)
    return cfg


def test_lambda_is_refused(tmp_path):
    p = tmp_path / "m.keras"
    lam = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
           "config": {"name": "evil", "function": {"class_name": "__lambda__",
                                                   "config": {"code": "AAAA"}}}}
    _edit_keras(fixture("mlp.keras"), p, config=lambda c: _with_layer(c, lam))
    for safe in (True, False):
        with pytest.raises(SavingError, match=r"'evil' \(Lambda\).*Python code"):
            kiln.models.load_model(p, safe_mode=safe)


def test_all_unknown_classes_listed_at_once(tmp_path):
    p = tmp_path / "m.keras"

    def add(cfg):
        for name, cls in (("aa", "Foo"), ("bb", "TimeDistributed")):
            cfg["config"]["layers"].append({"module": "keras.layers", "class_name": cls,
                                            "registered_name": None, "config": {"name": name}})
        return cfg
    _edit_keras(fixture("mlp.keras"), p, config=add)
    with pytest.raises(SavingError, match=r"2 layer\(s\): 'aa' \(Foo\), 'bb' \(TimeDistributed\)"):
        kiln.models.load_model(p)


def test_yaml_safe_loading_only():
    evil = "!!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(SavingError, match="safe"):
        kiln.models.model_from_yaml(evil)
    with pytest.raises(SavingError, match="not a Keras model config"):
        kiln.models.model_from_yaml("[1, 2]")
    with pytest.raises(SavingError, match="not valid JSON"):
        kiln.models.model_from_json("{nope")


def test_chunked_attributes_are_read_and_written(tmp_path):
    from kiln.saving.legacy_h5 import read_attr_list, write_attr_list
    names = [f"layer_with_a_rather_long_name_{i:05d}" for i in range(3000)]
    with h5py.File(tmp_path / "a.h5", "w") as f:
        write_attr_list(f, "layer_names", names)
        assert "layer_names" not in f.attrs and "layer_names0" in f.attrs
        assert read_attr_list(f, "layer_names") == names


def test_failed_save_leaves_previous_file(tmp_path, monkeypatch):
    model = kiln.Sequential([kiln.Input((3,)), L.Dense(2)])
    p = tmp_path / "m.keras"
    model.save(p)
    before = p.read_bytes()
    from kiln.saving import keras_v3

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(keras_v3.json, "dumps", boom)
    with pytest.raises(RuntimeError):
        model.save(p)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.keras"]       # no temporary left behind


_SAVER = """
import sys, numpy as np, kiln
m = kiln.Sequential([kiln.Input((1500,)), kiln.layers.Dense(1500), kiln.layers.Dense(1500)])
print("ready", flush=True)
while True:
    m.save(sys.argv[1])
"""


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_killed_save_leaves_previous_file_intact(tmp_path, ext):
    p = tmp_path / ("m" + ext)
    small = kiln.Sequential([kiln.Input((3,)), L.Dense(2, name="small")])
    small.save(p)
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(p)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.time() + 60
        while time.time() < deadline:      # kill it while a temporary is being written
            if any(n.endswith(".tmp") for n in os.listdir(tmp_path)):
                break
            time.sleep(0.001)
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    m = kiln.models.load_model(p)            # the old file or a complete new one
    assert [l.name for l in m.layers] in (["small"], ["dense", "dense_1"])


def test_unsupported_layer_argument_names_the_layer(tmp_path):
    p = tmp_path / "m.keras"

    def mask_zero(cfg):
        cfg["config"]["layers"][1]["config"]["mask_zero"] = True
        return cfg
    _edit_keras(fixture("embed_conv1d.keras"), p, config=mask_zero)
    with pytest.raises(SavingError, match=r"layer 'embedding' \(Embedding\).*mask_zero"):
        kiln.models.load_model(p)


def test_weights_only_file_given_to_load_model():
    with pytest.raises(SavingError, match="weights-only"):
        kiln.models.load_model(fixture("mlp.weights.h5"))
