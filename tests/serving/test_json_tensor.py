"""The wire format without a server: JSON values -> tensors (types, shapes, the exact
TF Serving errors) and tensors -> JSON (TF Serving's float formatting)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kiln.serving.errors import ServingError, error_body
from kiln.serving.json_tensor import (COLUMNAR, ROW, format_floats, parse_json, predict_response,
                                      request_tensors, tensor_json, to_tensor)

F32, F64, I32, I64, B = (np.dtype(t) for t in ("float32", "float64", "int32", "int64", "bool"))


@pytest.mark.parametrize("value,dtype,expected", [
    ([[1, 2.5], [3, 4]], F32, np.array([[1, 2.5], [3, 4]], np.float32)),
    (7, F32, np.array(7, np.float32)),
    ([], F32, np.zeros((0,), np.float32)),
    ([[], []], F32, np.zeros((2, 0), np.float32)),
    ([16777215, -16777215], F32, np.array([16777215, -16777215], np.float32)),
    ([1e38, float("inf"), float("nan")], F32, np.array([1e38, np.inf, np.nan], np.float32)),
    ([9007199254740991, 0.1], F64, np.array([9007199254740991, 0.1])),
    ([[1], [-2147483648]], I32, np.array([[1], [-2147483648]], np.int32)),
    ([2 ** 62], I64, np.array([2 ** 62], np.int64)),
    ([[True, False]], B, np.array([[True, False]])),
])
def test_values_to_tensors(value, dtype, expected):
    a = to_tensor(value, dtype)
    assert a.dtype == dtype and a.shape == expected.shape
    np.testing.assert_array_equal(a, expected)


@pytest.mark.parametrize("value,dtype,message", [
    ([1, "2"], F32, 'JSON Value: "2" Type: String is not of expected type: float'),
    ([1, False], F64, "JSON Value: false Type: False is not of expected type: double"),
    ([16777216], F32, "Cannot convert JSON value: 16777216 to float without loss of precision."),
    ([-16777216], F32, "Cannot convert JSON value: -16777216 to float without loss of precision."),
    ([2 ** 53], F64, "Cannot convert JSON value: 9007199254740992 to double without loss of precision."),
    ([3.5e38], F32, "Cannot convert JSON value: 3.5e+38 to float without loss of precision."),
    ([1, 2.0], I32, "JSON Value: 2.0 Type: Number is not of expected type: int32"),
    ([2 ** 63], I64, "JSON Value: 9223372036854775808 Type: Number is not of expected type: int64"),
    ([1], B, "JSON Value: 1 Type: Number is not of expected type: bool"),
    ([[1, 2], 3], F32, "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    ([[1, 2], [3]], F32, "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    ([1, [2]], F32, "Encountered list at unexpected level: 1 expected < 1"),
    ([[1, [2]]], F32, "Encountered list at unexpected level: 2 expected < 2"),
    ([0.1, "x"], F32, 'JSON Value: "x" Type: String is not of expected type: float'),
])
def test_value_errors(value, dtype, message):
    with pytest.raises(ServingError) as e:
        to_tensor(value, dtype)
    assert (e.value.code, e.value.message, e.value.http_status) == ("INVALID_ARGUMENT", message, 400)


def test_deep_nesting_is_a_client_error():
    v = 1.0
    for _ in range(100):
        v = [v]
    with pytest.raises(ServingError) as e:
        to_tensor(v, F32)
    assert e.value.message == "JSON Value nests lists 100 deep: a tensor has at most 32 dimensions"


def test_first_error_in_depth_first_order():
    # a bad leaf early is reported before a bad list later (TF walks depth first)
    with pytest.raises(ServingError, match='"a" Type: String'):
        to_tensor([[1, "a"], [1, 2, 3]], F32)


SPECS = [("x", F32)]
MULTI = [("a", F32), ("ids", I32)]


def test_request_formats():
    fmt, t = request_tensors({"instances": [[1, 2], [3, 4]]}, SPECS)
    assert fmt == ROW and t["x"].tolist() == [[1, 2], [3, 4]]
    fmt, t = request_tensors({"instances": [1.5, 2.5]}, SPECS)          # scalar examples
    assert fmt == ROW and t["x"].shape == (2,)
    fmt, t = request_tensors({"inputs": [[1, 2]]}, SPECS)
    assert fmt == COLUMNAR and t["x"].tolist() == [[1, 2]]
    fmt, t = request_tensors({"instances": [{"a": [1.0], "ids": 3}, {"ids": 4, "a": [2.0]}]}, MULTI)
    assert fmt == ROW and t["a"].tolist() == [[1.0], [2.0]] and t["ids"].tolist() == [3, 4]
    assert t["ids"].dtype == np.int32
    # columnar inputs may differ in dimension 0 (the model decides)
    fmt, t = request_tensors({"inputs": {"a": [[1.0]], "ids": [1, 2, 3]}}, MULTI)
    assert t["a"].shape == (1, 1) and t["ids"].shape == (3,)


def test_parse_json_accepts_nan_and_infinity():
    doc = parse_json(b'{"inputs": [NaN, Infinity, -Infinity]}')
    assert np.isnan(doc["inputs"][0]) and doc["inputs"][1:] == [float("inf"), float("-inf")]


def test_parse_error_offsets_are_bytes():
    with pytest.raises(ServingError) as e:
        parse_json('{"é": [1,, 2]}'.encode())
    assert e.value.message == "JSON Parse error: Invalid value. at offset: 10"


@pytest.mark.parametrize("values,expected", [
    ([0.1, 1.0, -2.0, 100.0, 1e-5, 1.5e10, 3.4028235e38], "0.1,1.0,-2.0,100.0,1e-05,1.5e+10,3.40282347e+38"),
    ([0.123456789, 1 / 3], "0.123456791,0.333333343"),
    ([float("nan"), float("inf"), -float("inf")], "NaN,Infinity,-Infinity"),
])
def test_float32_formatting(values, expected):
    assert ",".join(format_floats(np.array(values, np.float32))) == expected


def test_formatted_floats_read_back_exactly():
    x = np.random.default_rng(0).standard_normal(2000).astype(np.float32) * 10.0 ** np.arange(-20, 20, 0.02)
    x = x.astype(np.float32)
    np.testing.assert_array_equal(np.array(json.loads(tensor_json(x)), np.float32), x)
    d = np.random.default_rng(1).standard_normal(500)
    np.testing.assert_array_equal(np.array(json.loads(tensor_json(d))), d)


def test_tensor_json_shapes_and_types():
    assert tensor_json(np.float32(2)) == "2.0"
    assert tensor_json(np.zeros((2, 0), np.float32)) == "[[], []]"
    assert tensor_json(np.array([[1, 2], [3, 4]], np.int64)) == "[[1,2],[3,4]]"
    assert tensor_json(np.array([True, False])) == "[true,false]"
    assert json.loads(tensor_json(np.arange(24, dtype=np.int32).reshape(2, 3, 4))) == \
        np.arange(24).reshape(2, 3, 4).tolist()


def test_predict_response_formats():
    a = np.array([[1, 2], [3, 4]], np.float32)
    b = np.array([True, False])
    assert json.loads(predict_response(ROW, ["y"], [a])) == {"predictions": [[1.0, 2.0], [3.0, 4.0]]}
    assert json.loads(predict_response(COLUMNAR, ["y"], [a])) == {"outputs": [[1.0, 2.0], [3.0, 4.0]]}
    assert json.loads(predict_response(ROW, ["y", "z"], [a, b])) == {
        "predictions": [{"y": [1.0, 2.0], "z": True}, {"y": [3.0, 4.0], "z": False}]}
    assert json.loads(predict_response(COLUMNAR, ["y", "z"], [a, b])) == {
        "outputs": {"y": [[1.0, 2.0], [3.0, 4.0]], "z": [True, False]}}


@pytest.mark.parametrize("outputs,message", [
    ([np.float32(1)], "Tensor name: y has no shape information "),
    ([np.zeros((0, 2), np.float32)], "Tensor name: y has invalid batch size: 0"),
    ([np.zeros((2, 1)), np.zeros((3, 1))], "Tensor name: z has inconsistent batch size: 3 expecting: 2"),
])
def test_row_response_needs_one_batch_dimension(outputs, message):
    with pytest.raises(ServingError, match=None) as e:
        predict_response(ROW, ["y", "z"][:len(outputs)], outputs)
    assert e.value.message == message


def test_error_body_is_valid_json():
    msg = "Missing 'inputs' or 'instances' key \"quoted\"\n\tand é"
    assert json.loads(error_body(msg)) == {"error": msg}
