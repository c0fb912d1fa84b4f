"""kiln serve over HTTP: TF Serving's routes, both request formats, status, metadata,
and every error with its exact status and message (shared/REFERENCE.md section 4 and
TF Serving's json_tensor.cc / http_rest_api_handler.cc)."""
from __future__ import annotations

import http.client
import json
import socket

import numpy as np
import pytest

from .util import HOST, ServerProcess, as_f32, request

PREDICT = "/v1/models/mlp:predict"


@pytest.fixture(scope="module")
def server(model_files, tmp_path_factory):
    # path/to/file.py alone serves its `model` (a function here: it is called)
    s = ServerProcess(f"{model_files}/mlp.py", "--max-batch", "16", "--batch-timeout-ms", "1",
                      "--max-request-bytes", "100000", log_dir=str(tmp_path_factory.mktemp("log")))
    yield s
    s.close()


@pytest.fixture(scope="module")
def exe(mlp_exe):
    return mlp_exe


def rows(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 6)).astype(np.float32)


# -- predict ----------------------------------------------------------------------------
def test_row_format(server, exe):
    x = rows(3)
    r = request(server.port, "POST", PREDICT, {"instances": x.tolist()})
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    assert list(r.json) == ["predictions"]
    np.testing.assert_array_equal(as_f32(r.json["predictions"]), exe(x))


def test_columnar_format_and_signature_name(server, exe):
    x = rows(2, seed=1)
    r = request(server.port, "POST", PREDICT, {"signature_name": "serving_default", "inputs": x.tolist()})
    assert r.status == 200 and list(r.json) == ["outputs"]
    np.testing.assert_array_equal(as_f32(r.json["outputs"]), exe(x))
    # named columnar input, an explicit version, an empty signature name
    r = request(server.port, "POST", "/v1/models/mlp/versions/1:predict",
                {"signature_name": "", "inputs": {"input_layer": x.tolist()}})
    assert r.status == 200
    np.testing.assert_array_equal(as_f32(r.json["outputs"]), exe(x))


def test_named_instances_and_case_insensitive_route(server, exe):
    x = rows(2, seed=2)
    r = request(server.port, "POST", "/V1/MODELS/mlp:predict",
                {"instances": [{"input_layer": row} for row in x.tolist()]})
    assert r.status == 200
    np.testing.assert_array_equal(as_f32(r.json["predictions"]), exe(x))


def test_floats_are_written_as_tf_serving_writes_them(server, exe):
    """Six significant digits when they read back to the same float32, else nine;
    NaN in, NaN out (NaN and Infinity tokens are accepted)."""
    x = rows(1, seed=3)
    r = request(server.port, "POST", PREDICT, {"instances": x.tolist()})
    text = r.raw.decode()
    for v in exe(x).ravel():
        s = f"{float(v):g}"
        if np.float32(s) != v:
            s = f"{float(v):.9g}"
        assert s in text
    r = request(server.port, "POST", PREDICT, '{"instances": [[NaN, Infinity, -Infinity, 0, 1, 2]]}')
    assert r.status == 200 and "NaN" in r.raw.decode()


def test_integer_and_exact_float_inputs(server, exe):
    # integers up to 2**24 - 1 are exact in float32
    x = [[1, 2, -3, 16777215, 0, 5]]
    r = request(server.port, "POST", PREDICT, {"instances": x})
    assert r.status == 200
    np.testing.assert_array_equal(as_f32(r.json["predictions"]), exe(as_f32(x)))


def test_keep_alive_connection_serves_many_requests(server, exe):
    c = http.client.HTTPConnection(HOST, server.port, timeout=15)
    try:
        for i in range(20):
            x = rows(1 + i % 3, seed=10 + i)
            r = request(server.port, "POST", PREDICT, {"instances": x.tolist()}, conn=c)
            assert r.status == 200 and "Connection" not in r.headers
            np.testing.assert_array_equal(as_f32(r.json["predictions"]), exe(x))
        r = request(server.port, "POST", PREDICT, "{", conn=c)     # an error keeps it open too
        assert r.status == 400
        assert request(server.port, "GET", "/v1/models/mlp", conn=c).status == 200
    finally:
        c.close()


def test_chunked_request_body(server, exe):
    x = rows(2, seed=4)
    body = json.dumps({"instances": x.tolist()}).encode()
    with socket.create_connection((HOST, server.port), timeout=15) as s:
        s.sendall(b"POST /v1/models/mlp:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Connection: close\r\n\r\n")
        for i in range(0, len(body), 50):
            part = body[i:i + 50]
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        s.sendall(b"0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    np.testing.assert_array_equal(as_f32(json.loads(payload)["predictions"]), exe(x))


# -- status and metadata ----------------------------------------------------------------
STATUS = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                    "status": {"error_code": "OK", "error_message": ""}}]}


def test_status(server):
    for path in ("/v1/models/mlp", "/v1/models/mlp/versions/1"):
        r = request(server.port, "GET", path)
        assert r.status == 200 and r.headers["Content-Type"] == "application/json"
        assert r.json == STATUS


def dims(*sizes):
    return {"dim": [{"size": str(s), "name": ""} for s in sizes], "unknown_rank": False}


def test_metadata(server):
    r = request(server.port, "GET", "/v1/models/mlp/metadata")
    assert r.status == 200
    assert r.json == {
        "model_spec": {"name": "mlp", "signature_name": "", "version": "1"},
        "metadata": {"signature_def": {"signature_def": {"serving_default": {
            "inputs": {"input_layer": {"dtype": "DT_FLOAT", "tensor_shape": dims(-1, 6),
                                       "name": "serving_default_input_layer:0"}},
            "outputs": {"output_0": {"dtype": "DT_FLOAT", "tensor_shape": dims(-1, 4),
                                     "name": "StatefulPartitionedCall:0"}},
            "method_name": "tensorflow/serving/predict",
            "defaults": {}}}}}}
    assert request(server.port, "GET", "/v1/models/mlp/versions/1/metadata").json == r.json


# -- errors -----------------------------------------------------------------------------
OK_ROW = [[0, 1, 2, 3, 4, 5]]
FAILED0 = "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "

PREDICT_ERRORS = [
    # the body
    ("", 400, "JSON Parse error: The document is empty"),
    ("   ", 400, "JSON Parse error: The document is empty. at offset: 3"),
    ("instances = [1, 2]", 400, "JSON Parse error: Invalid value. at offset: 0"),
    ('{"instances": [[1,2]', 400, "JSON Parse error: Missing a comma or ']' after an array element. "
                                  "at offset: 20"),
    ('{"instances": [[1]], }', 400, "JSON Parse error: Missing a name for object member. at offset: 21"),
    ('{"instances" [[1]]}', 400, "JSON Parse error: Missing a colon after a name of object member. "
                                 "at offset: 13"),
    ('{"instances": [[1]]} x', 400, "JSON Parse error: The document root must not be followed by "
                                    "other values. at offset: 21"),
    (b'{"instances": "\xff"}', 400, "JSON Parse error: Invalid encoding in string. at offset: 15"),
    ("[" * 100000, 400, "JSON Parse error: the document is nested too deeply"),
    ("[1, 2]", 400, "JSON Value: [\n    1,\n    2\n] Is not object"),
    # the request object
    ('{"signature_name": 100}', 400, 'JSON Value: {\n    "signature_name": 100\n} not formatted '
                                    "correctly. 'signature_name' key must be a string value."),
    ({"signature_name": "other", "instances": OK_ROW}, 400,
     'Serving signature name: "other" not found in signature def'),
    ({"foo": 1}, 400, "Missing 'inputs' or 'instances' key"),
    ({"instances": [], "inputs": 1}, 400, 'JSON Value: {\n    "instances": [],\n    "inputs": 1\n} '
     "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "),
    ({"instances": 5}, 400, 'JSON Value: {\n    "instances": 5\n} Excepting \'instances\' to be an '
                            "list/array"),
    ({"instances": []}, 400, 'JSON Value: {\n    "instances": []\n} No values in \'instances\' array'),
    # row format: values
    ({"instances": [[1, 2, 3, 4, 5, "a"]]}, 400,
     FAILED0 + 'JSON Value: "a" Type: String is not of expected type: float'),
    ({"instances": [[1, 2, 3, 4, 5, True]]}, 400,
     FAILED0 + "JSON Value: true Type: True is not of expected type: float"),
    ({"instances": [[1, 2, 3, 4, 5, None]]}, 400,
     FAILED0 + "JSON Value: null Type: Null is not of expected type: float"),
    ({"instances": [[1, 2, 3, 4, 5, {"b64": "AAAA"}]]}, 400,
     FAILED0 + 'JSON Value: {\n    "b64": "AAAA"\n} Type: Object is not of expected type: float'),
    ({"instances": [[1, 2, 3, 4, 5, 16777217]]}, 400,
     FAILED0 + "Cannot convert JSON value: 16777217 to float without loss of precision."),
    ({"instances": [[1, 2, 3, 4, 5, 1e39]]}, 400,
     FAILED0 + "Cannot convert JSON value: 1e+39 to float without loss of precision."),
    ({"instances": [[1, 2, [3], 4, 5, 6]]}, 400,
     FAILED0 + "Encountered list at unexpected level: 1 expected < 1"),
    ({"instances": [[[1, 2, 3], [4, 5]]]}, 400,
     FAILED0 + "Encountered list at unexpected size: 2 at level: 1 expected size: 3"),
    ({"instances": [[1, 2, 3, 4, 5, 6], [1, 2]]}, 400,
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
     "Expecting tensor size: 6 but got: 2"),
    ({"instances": [[1, 2, 3, 4, 5, 6], [[1, 2, 3], [4, 5, 6]]]}, 400,
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
     "Expecting shape [6] but got: [2,3]"),
    ({"instances": [[1, 2, 3, 4, 5, 6], {"input_layer": [1, 2, 3, 4, 5, 6]}]}, 400,
     "Expecting value/list but got object at item 1 of input list"),
    ({"instances": [{"input_layer": [1, 2, 3, 4, 5, 6]}, [1, 2, 3, 4, 5, 6]]}, 400,
     "Expecting object but got list at item 1 of input list"),
    ({"instances": [{"x": [1, 2, 3, 4, 5, 6]}]}, 400,
     "Failed to process element: 0 key: x of 'instances' list. Error: INVALID_ARGUMENT: "
     "JSON object: does not have named input: x"),
    # shapes against the model's signature
    ({"instances": [[1, 2, 3]]}, 400, "Input 'input_layer' has shape [1,3], but the model expects "
                                      "shape [-1,6]"),
    ({"instances": [[[1, 2, 3, 4, 5, 6]]]}, 400, "Input 'input_layer' has shape [1,1,6], but the model "
                                                 "expects shape [-1,6]"),
    ({"inputs": 3.5}, 400, "Input 'input_layer' has shape [], but the model expects shape [-1,6]"),
    # columnar format
    ({"inputs": [[1, 2, 3, 4, 5, 6], [1]]}, 400,
     "Encountered list at unexpected size: 1 at level: 1 expected size: 6"),
    ({"inputs": [[1, 2, 3, 4, 5, "x"]]}, 400,
     'JSON Value: "x" Type: String is not of expected type: float'),
    ({"inputs": {"x": OK_ROW}}, 400, "Missing named input: input_layer in 'inputs' object."),
]


@pytest.mark.parametrize("body,status,message", PREDICT_ERRORS)
def test_predict_errors(server, body, status, message):
    r = request(server.port, "POST", PREDICT, body)
    assert (r.status, r.error) == (status, message)
    assert r.headers["Content-Type"] == "application/json"


ROUTE_ERRORS = [
    ("POST", "/v1/models/nope:predict", {"instances": OK_ROW}, 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/mlp/versions/7:predict", {"instances": OK_ROW}, 404,
     "Servable not found for request: Specific(mlp, 7)"),
    ("POST", "/v1/models/nope:predict", "{", 400,          # the body is read before the model
     "JSON Parse error: Missing a name for object member. at offset: 1"),
    ("POST", "/v1/models/mlp/labels/stable:predict", {"instances": OK_ROW}, 400,
     "Unrecognized servable version label: stable"),
    ("POST", "/v1/models/mlp/versions/99999999999999999999:predict", {"instances": OK_ROW}, 400,
     "Failed to convert version: 99999999999999999999 to numeric."),
    ("POST", "/v1/models/mlp:classify", {"examples": [{"x": 1}]}, 400,
     "Expected classification signature method_name to be tensorflow/serving/classify. "
     "Was: tensorflow/serving/predict"),
    ("POST", "/v1/models/mlp:regress", {"examples": [{"x": 1}]}, 400,
     "Expected regression signature method_name to be tensorflow/serving/regress. "
     "Was: tensorflow/serving/predict"),
    ("GET", "/v1/models/mlp:predict", None, 400, "Malformed request: GET /v1/models/mlp:predict"),
    ("POST", "/v1/models/mlp", {}, 400, "Malformed request: POST /v1/models/mlp"),
    ("POST", "/v1/models/mlp/metadata", {}, 400, "Malformed request: POST /v1/models/mlp/metadata"),
    ("PUT", "/v1/models/mlp:predict", {}, 400, "Malformed request: PUT /v1/models/mlp:predict"),
    ("DELETE", "/v1/models/mlp", None, 400, "Malformed request: DELETE /v1/models/mlp"),
    ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
    ("GET", "/v1/models/mlp/versions/x", None, 400, "Malformed request: GET /v1/models/mlp/versions/x"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/mlp/versions/3", None, 404, "Could not find version 3 of model mlp"),
    ("GET", "/v1/models/mlp/labels/stable", None, 400, "Unrecognized servable version label: stable"),
    ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found for request: Latest(nope)"),
    ("GET", "/v1/models/mlp/versions/2/metadata", None, 404,
     "Servable not found for request: Specific(mlp, 2)"),
    ("GET", "/", None, 404, "Not found: GET / (the API is under /v1/)"),
    ("POST", "/predict", {"instances": OK_ROW}, 404, "Not found: POST /predict (the API is under /v1/)"),
]


@pytest.mark.parametrize("method,path,body,status,message", ROUTE_ERRORS)
def test_route_errors(server, method, path, body, status, message):
    r = request(server.port, method, path, body)
    assert (r.status, r.error) == (status, message)


def test_model_name_is_url_decoded(server):
    r = request(server.port, "GET", "/v1/models/ml%70")
    assert r.status == 200 and r.json == STATUS
    r = request(server.port, "GET", "/v1/models/no%20pe")
    assert (r.status, r.error) == (404, "Could not find any versions of model no pe")


def test_request_size_limit(server, exe):
    x = rows(1)
    big = json.dumps({"instances": x.tolist(), "pad": "x" * 120000})
    r = request(server.port, "POST", PREDICT, big)
    assert r.status == 413 and r.headers.get("Connection") == "close"
    assert r.error == (f"Request body of {len(big)} bytes exceeds the limit of 100000 bytes "
                       f"(kiln serve --max-request-bytes)")
    # just under the limit is served
    ok = json.dumps({"instances": x.tolist(), "pad": "x" * 90000})
    r = request(server.port, "POST", PREDICT, ok)
    assert r.status == 200
    np.testing.assert_array_equal(as_f32(r.json["predictions"]), exe(x))


def raw_exchange(port, data: bytes, then: bytes = b"") -> tuple:
    """Send ``data``; read the first answer's head; send ``then``; read to the end."""
    with socket.create_connection((HOST, port), timeout=15) as s:
        s.sendall(data)
        first = s.recv(65536)
        if then:
            s.sendall(then)
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
    return first, rest


def test_expect_100_continue(server, exe):
    x = rows(1, seed=5)
    body = json.dumps({"instances": x.tolist()}).encode()
    head = (b"POST /v1/models/mlp:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n")
    first, rest = raw_exchange(server.port, head % len(body), body)
    assert first.startswith(b"HTTP/1.1 100 Continue")
    answer = (first + rest).split(b"\r\n\r\n", 1)[1]
    assert answer.startswith(b"HTTP/1.1 200")
    np.testing.assert_array_equal(as_f32(json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"]),
                                  exe(x))
    # too large: refused before the body is sent
    first, rest = raw_exchange(server.port, head % 200000)
    h, _, payload = (first + rest).partition(b"\r\n\r\n")
    assert h.startswith(b"HTTP/1.1 413") and b"Connection: close" in h
    assert json.loads(payload)["error"].startswith("Request body of 200000 bytes exceeds the limit")


def test_protocol_errors_are_json(server):
    with socket.create_connection((HOST, server.port), timeout=15) as s:
        s.sendall(b"POST /v1/models/mlp:predict HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        data = s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
    assert json.loads(body) == {"error": "Invalid Content-Length: 'nope'"}
    with socket.create_connection((HOST, server.port), timeout=15) as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        data = s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and "error" in json.loads(body)


def test_server_still_alive(server):
    assert server.alive()
    assert request(server.port, "GET", "/v1/models/mlp").status == 200
