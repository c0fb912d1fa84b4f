"""A model with several named inputs (f32 and i32) and several named outputs (f32 and
bool): TF Serving's named row format, named columnar format and their errors."""
from __future__ import annotations

import numpy as np
import pytest

import kiln

from .util import ServerProcess, as_f32, load, request

PREDICT = "/v1/models/multi_io:predict"


@pytest.fixture(scope="module")
def server(model_files, tmp_path_factory):
    s = ServerProcess(f"{model_files}/multi_io.py:build", "--max-batch", "8", "--workers", "2",
                      log_dir=str(tmp_path_factory.mktemp("log")))
    yield s
    s.close()


@pytest.fixture(scope="module")
def exe(model_files):
    return kiln.compile(load(f"{model_files}/multi_io.py:build"))


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 3)).astype(np.float32),
            rng.standard_normal((n, 2)).astype(np.float32),
            rng.integers(-5, 5, (n, 1)).astype(np.int32))


def test_row_format_named_inputs_and_outputs(server, exe):
    a, b, ids = data(3)
    instances = [{"a": a[i].tolist(), "b": b[i].tolist(), "ids": ids[i].tolist()} for i in range(3)]
    r = request(server.port, "POST", PREDICT, {"instances": instances})
    assert r.status == 200
    scores, hidden, active = exe(a, b, ids)
    preds = r.json["predictions"]
    assert len(preds) == 3 and all(set(p) == {"scores", "hidden", "active"} for p in preds)
    np.testing.assert_array_equal(as_f32([p["scores"] for p in preds]), scores)
    np.testing.assert_array_equal(as_f32([p["hidden"] for p in preds]), hidden)
    assert [p["active"] for p in preds] == active.tolist()          # JSON true/false


def test_columnar_format_named_inputs_and_outputs(server, exe):
    a, b, ids = data(4, seed=1)
    r = request(server.port, "POST", PREDICT,
                {"inputs": {"a": a.tolist(), "b": b.tolist(), "ids": ids.tolist(), "extra": 1}})
    assert r.status == 200
    out = r.json["outputs"]
    assert set(out) == {"scores", "hidden", "active"}
    scores, hidden, active = exe(a, b, ids)
    np.testing.assert_array_equal(as_f32(out["scores"]), scores)
    np.testing.assert_array_equal(as_f32(out["hidden"]), hidden)
    assert out["active"] == active.tolist()


def test_metadata_names_dtypes_shapes(server):
    sig = request(server.port, "GET", "/v1/models/multi_io/metadata").json[
        "metadata"]["signature_def"]["signature_def"]["serving_default"]

    def summary(infos):
        return {k: (v["dtype"], [d["size"] for d in v["tensor_shape"]["dim"]]) for k, v in infos.items()}
    assert summary(sig["inputs"]) == {"a": ("DT_FLOAT", ["-1", "3"]), "b": ("DT_FLOAT", ["-1", "2"]),
                                      "ids": ("DT_INT32", ["-1", "1"])}
    assert summary(sig["outputs"]) == {"scores": ("DT_FLOAT", ["-1", "4"]),
                                       "hidden": ("DT_FLOAT", ["-1", "4"]),
                                       "active": ("DT_BOOL", ["-1", "4"])}


ROW = {"a": [1, 2, 3], "b": [1, 2], "ids": [1]}
ERRORS = [
    ({"instances": [[1, 2, 3]]}, "instances is a plain list, but expecting list of objects as "
                                 "multiple input tensors required as per tensorinfo_map"),
    ({"inputs": [[1, 2, 3]]}, "inputs is a plain value/list, but expecting an object as multiple "
                              "input tensors required as per tensorinfo_map"),
    ({"instances": [{"a": [1, 2, 3]}]},
     "Failed to process element: 0 of 'instances' list. JSON object: "
     '{\n    "a": [\n        1,\n        2,\n        3\n    ]\n} must only have keys: a,b,ids'),
    ({"instances": [ROW, {**ROW, "ids": [1.5]}]},
     "Failed to process element: 1 key: ids of 'instances' list. Error: INVALID_ARGUMENT: "
     "JSON Value: 1.5 Type: Number is not of expected type: int32"),
    ({"instances": [{**ROW, "ids": [2147483648]}]},
     "Failed to process element: 0 key: ids of 'instances' list. Error: INVALID_ARGUMENT: "
     "JSON Value: 2147483648 Type: Number is not of expected type: int32"),
    ({"instances": [{**ROW, "ids": [True]}]},
     "Failed to process element: 0 key: ids of 'instances' list. Error: INVALID_ARGUMENT: "
     "JSON Value: true Type: True is not of expected type: int32"),
    ({"instances": [ROW, {**ROW, "b": [1, 2, 3]}]},
     "Failed to process element: 1 key: b of 'instances' list. Error: INVALID_ARGUMENT: "
     "Expecting tensor size: 2 but got: 3"),
    ({"inputs": {"a": [[1, 2, 3]], "b": [[1, 2]]}}, "Missing named input: ids in 'inputs' object."),
    ({"inputs": {"a": [[1, 2, 3], [4, 5, 6]], "b": [[1, 2]], "ids": [[1], [2]]}},
     "Input 'b' has 1 in dimension 0, but input 'a' has 2 in dimension 0; both are the model's "
     "dimension N"),
]


@pytest.mark.parametrize("body,message", ERRORS)
def test_errors(server, body, message):
    r = request(server.port, "POST", PREDICT, body)
    assert (r.status, r.error) == (400, message)
