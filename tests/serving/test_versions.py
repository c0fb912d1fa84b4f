"""Directories of versions (NAME/1/, NAME/2/), the highest served (or all), and the
errors `kiln serve` reports before serving."""
from __future__ import annotations

import socket

import numpy as np
import pytest

import kiln
from kiln.cli import main

from .util import HOST, as_f32, load, request

X = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)


@pytest.fixture(scope="module")
def expected(model_files):
    """{version: kiln.compile's predictions for X}"""
    return {v: kiln.compile(load(f"{model_files}/models/mlp/{v}/model.py:model"))(X) for v in (1, 2)}


def predict(port, path):
    return request(port, "POST", path, {"instances": X.tolist()})


def status_entry(v):
    return {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}


def test_highest_version_is_served(model_files, start_server, expected):
    s = start_server(model_files / "models" / "mlp")
    v2 = expected[2]
    assert not np.array_equal(v2, expected[1])
    for path in ("/v1/models/mlp:predict", "/v1/models/mlp/versions/2:predict"):
        r = predict(s.port, path)
        assert r.status == 200
        np.testing.assert_array_equal(as_f32(r.json["predictions"]), v2)
    r = predict(s.port, "/v1/models/mlp/versions/1:predict")
    assert (r.status, r.error) == (404, "Servable not found for request: Specific(mlp, 1)")
    assert request(s.port, "GET", "/v1/models/mlp").json == {"model_version_status": [status_entry(2)]}
    assert request(s.port, "GET", "/v1/models/mlp/metadata").json["model_spec"]["version"] == "2"


def test_all_versions_and_a_name(model_files, start_server, expected):
    s = start_server(model_files / "models" / "mlp", "--all-versions", "--name", "clf",
                     "--max-batch", "4")
    for v in (1, 2):
        r = predict(s.port, f"/v1/models/clf/versions/{v}:predict")
        assert r.status == 200
        np.testing.assert_array_equal(as_f32(r.json["predictions"]), expected[v])
    r = predict(s.port, "/v1/models/clf:predict")
    np.testing.assert_array_equal(as_f32(r.json["predictions"]), expected[2])
    assert request(s.port, "GET", "/v1/models/clf").json == {
        "model_version_status": [status_entry(2), status_entry(1)]}
    assert request(s.port, "GET", "/v1/models/clf/versions/1").json == {
        "model_version_status": [status_entry(1)]}
    r = predict(s.port, "/v1/models/mlp:predict")
    assert (r.status, r.error) == (404, "Servable not found for request: Latest(mlp)")


def test_startup_errors(model_files, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "noversion" / "1").mkdir(parents=True)
    (tmp_path / "noversion" / "1" / "README").write_text("no model here")
    cases = [
        (["serve", str(tmp_path / "missing")], 2, "no such file or directory"),
        (["serve", str(tmp_path / "empty")], 2, "no version directories in it (expected empty/1/"),
        (["serve", str(tmp_path / "noversion")], 2, "no model file in this version directory"),
        (["serve", f"{model_files}/mlp.py:nope"], 2, "defines no 'nope'"),
        (["serve", f"{model_files}/mlp.py:model", "--name", "a/b"], 2, "must be non-empty, without"),
        (["serve", f"{model_files}/mlp.py:model", "--workers", "0"], 1, "--workers must be >= 1"),
    ]
    for argv, code, message in cases:
        assert main(argv) == code, argv
        assert message in capsys.readouterr().err


def test_port_in_use(model_files, capsys):
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", f"{model_files}/mlp.py:model", "--host", HOST, "--port", str(port)]) == 2
    assert f"cannot listen on {HOST}:{port}" in capsys.readouterr().err
