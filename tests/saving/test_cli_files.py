"""Model files wherever the CLI and the server take a model."""
import shutil

import numpy as np
from conftest import fixture, inputs

from kiln.cli import main
from kiln.serving.loader import find_versions


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_dump_keras_and_h5_files(capsys):
    for ext in (".keras", ".h5"):
        code, out, _ = run(capsys, "dump", fixture("two_input" + ext), "--after", "lower")
        assert code == 0
        assert out.startswith("graph @two_input(%a: f32[N,6], %b: f32[N,6]) -> f32[N,3]")


def test_dump_json_architecture(capsys):
    code, out, _ = run(capsys, "dump", fixture("mlp.json"), "--after", "lower")
    assert code == 0 and out.startswith("graph @mlp(%x: f32[N,8]) -> f32[N,4]")


def test_dump_bad_model_file(tmp_path, capsys):
    p = tmp_path / "broken.keras"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = run(capsys, "dump", str(p))
    assert code == 2 and "broken.keras" in err and "not a valid .keras file" in err


def test_export_h5_file(tmp_path, capsys):
    code, out, _ = run(capsys, "export", fixture("mlp.h5"), "-o", str(tmp_path / "out"))
    assert code == 0 and "exported mlp" in out
    assert (tmp_path / "out" / "libmlp.so").exists()


def test_serving_loader_takes_model_files(tmp_path):
    ref = np.load(fixture("bn.npz"))
    name, versions = find_versions(fixture("bn.keras"))
    assert name == "bn"
    load, src = versions[1]
    np.testing.assert_allclose(load().predict(inputs(ref)), ref["y"], rtol=1e-5, atol=1e-6)
    (tmp_path / "served" / "3").mkdir(parents=True)
    shutil.copy(fixture("bn.h5"), tmp_path / "served" / "3" / "model.h5")
    name, versions = find_versions(str(tmp_path / "served"))
    assert name == "served" and list(versions) == [3]
    np.testing.assert_allclose(versions[3][0]().predict(inputs(ref)), ref["y"], rtol=1e-5,
                               atol=1e-6)
