"""JSON <-> tensors, as TensorFlow Serving's REST API reads and writes them.

This follows ``tensorflow_serving/util/json_tensor.cc`` rule for rule, including the
order of the checks and the wording of every error, so that clients written against
TF Serving see the same answers:

- ``parse_json``: the body must be a JSON object (NaN/Infinity tokens accepted).
- ``signature_name``: the optional ``"signature_name"`` must be a string.
- ``request_tensors``: the row format (``"instances"``: one element per example; a list
  of objects when there are several named inputs) or the columnar format
  (``"inputs"``: one value, or an object of named values). Every value must be a dense
  (rectangular) nested list whose leaves have the input's type: numbers for floats
  (lossless as float32 for DT_FLOAT), integers in range for ints, ``true``/``false``
  for bools.
- ``predict_response``: ``{"predictions": ...}`` (row) or ``{"outputs": ...}``
  (columnar); several outputs become objects keyed by output name. Floats are written
  the way TF Serving writes them (six significant digits when that reads back to the
  same float, else all the digits needed), so a client parsing the response gets back
  the exact float32 values.

Converting a value goes through a fast path (a level-by-level walk, one numpy
conversion) and, only when that finds something wrong, through an exact depth-first
walk that reports the first error exactly as TF Serving does.

Known differences from TF Serving: parse-error offsets are computed from Python's
JSON parser (the messages are rapidjson's); numbers beyond float64 range parse as
infinity instead of failing; a JSON document quoted inside an error message is cut
after ``MAX_QUOTED_CHARS`` characters.
"""
from __future__ import annotations

import json
import math

import numpy as np

from .errors import ServingError, invalid

ROW = "row"
COLUMNAR = "columnar"
MAX_QUOTED_CHARS = 4096
MAX_RANK = 32

# numpy dtype -> (DataType enum name, DataTypeString)
TF_DTYPES = {
    np.dtype(np.float32): ("DT_FLOAT", "float"),
    np.dtype(np.float64): ("DT_DOUBLE", "double"),
    np.dtype(np.int32): ("DT_INT32", "int32"),
    np.dtype(np.int64): ("DT_INT64", "int64"),
    np.dtype(np.bool_): ("DT_BOOL", "bool"),
}
_F32_MAX = float(np.finfo(np.float32).max)
_RAPIDJSON_FLOAT_MAX = 3.4028234e38          # rapidjson's Value::IsFloat() range
_LOSSLESS_INT = {np.dtype(np.float32): (1 << 24) - 1, np.dtype(np.float64): (1 << 53) - 1}
_INT_RANGE = {np.dtype(np.int32): (-(1 << 31), (1 << 31) - 1),
              np.dtype(np.int64): (-(1 << 63), (1 << 63) - 1)}


# -- parsing the body -------------------------------------------------------------------
_RAPIDJSON_MESSAGES = [
    ("Expecting property name enclosed in double quotes", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Extra data", "The document root must not be followed by other values."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Invalid \\uXXXX escape", "Incorrect hex digit after \\u escape in string."),
    ("Invalid control character", "Invalid encoding in string."),
]


def _innermost_container(text: str, pos: int) -> str:
    """'{' or '[': the container open at ``pos`` (strings skipped)."""
    stack, i, in_str = [], 0, False
    while i < pos:
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "{[":
            stack.append(c)
        elif c in "}]" and stack:
            stack.pop()
        i += 1
    return stack[-1] if stack else "["


def _parse_error_message(e: json.JSONDecodeError) -> str:
    if e.msg == "Expecting value" and not e.doc.strip():
        return "The document is empty."
    if e.msg == "Expecting ',' delimiter":
        if _innermost_container(e.doc, e.pos) == "{":
            return "Missing a comma or '}' after an object member."
        return "Missing a comma or ']' after an array element."
    for prefix, message in _RAPIDJSON_MESSAGES:
        if e.msg.startswith(prefix):
            return message
    return "Invalid value."


def parse_json(body: bytes) -> dict:
    """The request body as a JSON object, or INVALID_ARGUMENT as TF Serving words it."""
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid(f"JSON Parse error: Invalid encoding in string. at offset: {e.start}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        offset = len(text[:e.pos].encode("utf-8"))
        raise invalid(f"JSON Parse error: {_parse_error_message(e)} at offset: {offset}") from None
    except RecursionError:
        raise invalid("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {value_str(doc)} Is not object")
    return doc


# -- quoting JSON values in messages (rapidjson's PrettyWriter) -------------------------
def doc_str(value) -> str:
    """A JSON value as TF Serving quotes it in messages (4-space pretty print)."""
    try:
        s = json.dumps(value, indent=4, ensure_ascii=False)
    except (ValueError, RecursionError):
        s = repr(value)
    return s if len(s) <= MAX_QUOTED_CHARS else s[:MAX_QUOTED_CHARS] + "..."


def value_str(v) -> str:
    """``JsonValueToString``: a double in float range is written as a float."""
    if isinstance(v, float):
        if -_RAPIDJSON_FLOAT_MAX <= v <= _RAPIDJSON_FLOAT_MAX:
            return format_floats(np.array([v], np.float32))[0]
        return format_floats(np.array([v], np.float64))[0]
    return doc_str(v)


def json_type(v) -> str:
    if v is None:
        return "Null"
    if v is True:
        return "True"
    if v is False:
        return "False"
    if isinstance(v, dict):
        return "Object"
    if isinstance(v, list):
        return "Array"
    if isinstance(v, str):
        return "String"
    return "Number"


def tf_type_name(dtype) -> str:
    return TF_DTYPES[np.dtype(dtype)][1]


# -- the request ------------------------------------------------------------------------
def signature_name(doc: dict) -> str:
    """The request's signature name ('' when absent)."""
    if "signature_name" not in doc:
        return ""
    s = doc["signature_name"]
    if not isinstance(s, str):
        raise invalid(f"JSON Value: {doc_str(doc)} not formatted correctly. "
                      f"'signature_name' key must be a string value.")
    return s


def request_tensors(doc: dict, specs) -> tuple:
    """``(format, {input name: ndarray})`` from a predict request; ``specs`` lists
    ``(name, numpy dtype)`` per input, in signature order."""
    if "instances" in doc:
        if "inputs" in doc:
            raise invalid(f"JSON Value: {doc_str(doc)} Not formatted correctly expecting only "
                          f"one of 'inputs' or 'instances' keys to exist ")
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid(f"JSON Value: {doc_str(doc)} Excepting 'instances' to be an list/array")
        if not instances:
            raise invalid(f"JSON Value: {doc_str(doc)} No values in 'instances' array")
        return ROW, _from_instances(instances, specs)
    if "inputs" in doc:
        return COLUMNAR, _from_inputs(doc["inputs"], specs)
    raise invalid("Missing 'inputs' or 'instances' key")


def _is_b64(v) -> bool:
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get("b64"), str)


def _is_named(v) -> bool:
    return isinstance(v, dict) and not _is_b64(v)


def _shape_str(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _same_as_first(first: dict, name: str, a: np.ndarray):
    """AddInstanceItem: every element of an input has the first one's size and shape."""
    if name not in first:
        first[name] = a.shape
        return
    shape = first[name]
    size = int(np.prod(shape, dtype=np.int64))
    if a.size != size:
        raise invalid(f"Expecting tensor size: {size} but got: {a.size}")
    if a.shape != shape:
        raise invalid(f"Expecting shape {_shape_str(shape)} but got: {_shape_str(a.shape)}")


def _from_instances(instances: list, specs) -> dict:
    if not isinstance(instances[0], dict) and len(specs) > 1:
        raise invalid("instances is a plain list, but expecting list of objects as multiple "
                      "input tensors required as per tensorinfo_map")
    first: dict = {}
    if not _is_named(instances[0]):
        name, dtype = specs[0]
        whole = _fast_tensor(instances, dtype)       # every element the same shape: done
        if whole is not None:
            return {name: whole}
        rows = []
        for i, elem in enumerate(instances):
            if _is_named(elem):
                raise invalid(f"Expecting value/list but got object at item {i} of input list")
            try:
                a = to_tensor(elem, dtype)
                _same_as_first(first, name, a)
            except ServingError as e:
                raise invalid(f"Failed to process element: {i} of 'instances' list. "
                              f"Error: {e.status_string()}") from None
            rows.append(a)
        return {name: np.stack(rows)}

    dtypes = dict(specs)
    expected = set(dtypes)
    rows = {name: [] for name in dtypes}
    for i, elem in enumerate(instances):
        if not _is_named(elem):
            raise invalid(f"Expecting object but got list at item {i} of input list")
        for key, value in elem.items():
            try:
                if key not in dtypes:
                    raise invalid(f"JSON object: does not have named input: {key}")
                a = to_tensor(value, dtypes[key])
                _same_as_first(first, key, a)
            except ServingError as e:
                raise invalid(f"Failed to process element: {i} key: {key} of 'instances' list. "
                              f"Error: {e.status_string()}") from None
            rows[key].append(a)
        if set(elem) != expected:
            raise invalid(f"Failed to process element: {i} of 'instances' list. JSON object: "
                          f"{value_str(elem)} must only have keys: {','.join(sorted(expected))}")
    return {name: np.stack(rows[name]) for name, _ in specs}


def _from_inputs(value, specs) -> dict:
    if not _is_named(value):
        if len(specs) > 1:
            raise invalid("inputs is a plain value/list, but expecting an object as multiple "
                          "input tensors required as per tensorinfo_map")
        name, dtype = specs[0]
        return {name: to_tensor(value, dtype)}
    out = {}
    for name, dtype in specs:
        if name not in value:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        out[name] = to_tensor(value[name], dtype)
    return out


# -- one JSON value -> one tensor -------------------------------------------------------
def dense_shape(value) -> list:
    """``GetDenseTensorShape``: the shape read along the first elements."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def to_tensor(value, dtype) -> np.ndarray:
    """A JSON value (a scalar or a dense nested list) as an ndarray of ``dtype``."""
    dtype = np.dtype(dtype)
    a = _fast_tensor(value, dtype)
    if a is None:
        a = _exact_tensor(value, dtype)
    return a


def _fast_tensor(value, dtype):
    """The tensor, or None when anything is unusual (the exact walk then decides)."""
    dtype = np.dtype(dtype)
    shape = dense_shape(value)
    if len(shape) > MAX_RANK:
        return None
    items = [value]
    for n in shape:
        nxt = []
        extend = nxt.extend
        for item in items:
            if type(item) is not list or len(item) != n:
                return None
            extend(item)
        items = nxt
    types = set(map(type, items))
    try:
        if dtype.kind == "f":
            if not types <= {int, float}:
                return None
            a = np.array(items, np.float64)
            if int in types and (np.abs(a) > _LOSSLESS_INT[dtype]).any():
                return None        # maybe a lossy integer: the exact walk tells
            if dtype == np.float32 and (np.abs(a[np.isfinite(a)]) > _F32_MAX).any():
                return None
        elif dtype.kind == "i":
            if not types <= {int}:
                return None
            a = np.array(items, np.int64)
            lo, hi = _INT_RANGE[dtype]
            if a.size and (a.min() < lo or a.max() > hi):
                return None
        elif dtype.kind == "b":
            if not types <= {bool}:
                return None
            a = np.array(items, np.bool_)
        else:
            return None
    except (OverflowError, ValueError, TypeError):
        return None
    return a.astype(dtype, copy=False).reshape(shape)


def _type_error(v, dtype) -> ServingError:
    return invalid(f"JSON Value: {value_str(v)} Type: {json_type(v)} is not of expected type: "
                   f"{tf_type_name(dtype)}")


def _leaf(v, dtype):
    """``AddValueToTensor``: one leaf, checked against ``dtype``."""
    if dtype.kind == "f":
        if type(v) not in (int, float):
            raise _type_error(v, dtype)
        if type(v) is int and abs(v) < (1 << 64):
            lossless = abs(v) <= _LOSSLESS_INT[dtype]
        else:
            try:
                d = float(v)
            except OverflowError:
                d = math.inf
            lossless = not math.isfinite(d) or dtype == np.float64 or abs(d) <= _F32_MAX
        if not lossless:
            raise invalid(f"Cannot convert JSON value: {value_str(v)} to {tf_type_name(dtype)} "
                          f"without loss of precision.")
        return float(v)
    if dtype.kind == "i":
        lo, hi = _INT_RANGE[dtype]
        if type(v) is not int or not lo <= v <= hi:
            raise _type_error(v, dtype)
        return v
    if dtype.kind == "b":
        if type(v) is not bool:
            raise _type_error(v, dtype)
        return v
    raise ServingError("UNIMPLEMENTED", f"Conversion of JSON Value: {value_str(v)} to type: "
                                        f"{dtype}")


def _exact_tensor(value, dtype) -> np.ndarray:
    """``FillTensorProto``: depth first, the first error reported as TF Serving does."""
    shape = dense_shape(value)
    rank = len(shape)
    leaves = []
    stack = [(value, 0)]
    while stack:
        v, level = stack.pop()
        if not isinstance(v, list):
            if level != rank:
                raise invalid(f"JSON Value: {value_str(v)} found at incorrect level: {level + 1} "
                              f"in the JSON DOM. Expected at level: {rank}")
            leaves.append(_leaf(v, dtype))
            continue
        if level >= rank:
            raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(v) != shape[level]:
            raise invalid(f"Encountered list at unexpected size: {len(v)} at level: {level} "
                          f"expected size: {shape[level]}")
        stack.extend((x, level + 1) for x in reversed(v))
    if rank > MAX_RANK:
        raise invalid(f"JSON Value nests lists {rank} deep: a tensor has at most {MAX_RANK} "
                      f"dimensions")
    return np.array(leaves, dtype).reshape(shape)


# -- the response -----------------------------------------------------------------------
_SPECIAL = {"nan": "NaN", "-nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def format_floats(flat: np.ndarray) -> list:
    """``WriteDecimal``: '%g' when it reads back to the same value, else max_digits10
    digits; '.0' added to whole numbers; NaN, Infinity, -Infinity."""
    values = flat.tolist()
    out = [f"{v:g}" for v in values]
    back = np.array(out, np.float64).astype(flat.dtype)
    with np.errstate(invalid="ignore"):
        redo = np.flatnonzero((back != flat) & np.isfinite(flat))
    digits = 9 if flat.dtype == np.float32 else 17
    for i in redo.tolist():
        out[i] = f"{values[i]:.{digits}g}"
    return [s if ("." in s or "e" in s) else _SPECIAL.get(s) or s + ".0" for s in out]


def _leaf_strings(a: np.ndarray) -> list:
    flat = a.ravel()
    if flat.dtype.kind == "f":
        return format_floats(flat)
    if flat.dtype.kind == "b":
        return ["true" if v else "false" for v in flat.tolist()]
    return [str(v) for v in flat.tolist()]


def _nest(strings: list, shape: tuple) -> list:
    """Group leaf strings into JSON arrays, innermost dimension first; returns one
    string per element of the outermost remaining dimension."""
    items = strings
    for d in reversed(shape):
        items = ["[" + ",".join(items[i:i + d]) + "]" for i in range(0, len(items), d)]
    return items


def tensor_json(a: np.ndarray) -> str:
    """The JSON text of a tensor: nested lists (a bare value for a scalar)."""
    a = np.asarray(a)
    if a.size == 0:
        return json.dumps(a.tolist())
    strings = _leaf_strings(a)
    return strings[0] if a.ndim == 0 else _nest(strings, a.shape)[0]


def tensor_rows_json(a: np.ndarray) -> list:
    """The JSON text of each row (dimension 0) of a tensor."""
    if a.size == 0:
        return [json.dumps(row.tolist()) for row in a]
    return _nest(_leaf_strings(a), a.shape[1:])


def predict_response(fmt: str, names: list, outputs: list) -> bytes:
    """``MakeJsonFromTensors``: the response body for the request's format."""
    if fmt == ROW:
        batch = 0
        for name, a in zip(names, outputs):
            if a.ndim == 0:
                raise invalid(f"Tensor name: {name} has no shape information ")
            n = a.shape[0]
            if n < 1:
                raise invalid(f"Tensor name: {name} has invalid batch size: {n}")
            if batch and n != batch:
                raise invalid(f"Tensor name: {name} has inconsistent batch size: {n} "
                              f"expecting: {batch}")
            batch = n
        if len(outputs) == 1:
            return ('{"predictions": ' + tensor_json(outputs[0]) + "}").encode()
        keys = [json.dumps(n, ensure_ascii=False) + ": " for n in names]
        rows = [tensor_rows_json(a) for a in outputs]
        items = ["{" + ", ".join(k + r[i] for k, r in zip(keys, rows)) + "}" for i in range(batch)]
        return ('{"predictions": [' + ", ".join(items) + "]}").encode()
    if len(outputs) == 1:
        return ('{"outputs": ' + tensor_json(outputs[0]) + "}").encode()
    parts = [json.dumps(n, ensure_ascii=False) + ": " + tensor_json(a) for n, a in zip(names, outputs)]
    return ('{"outputs": {' + ", ".join(parts) + "}}").encode()
