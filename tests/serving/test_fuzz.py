"""No client mistake is a 500: random request documents and byte-level corruptions of
valid ones, through ModelServer.handle (in process, no sockets used), for a single-input
and a multi-input/multi-output model. Bounded: a fixed number of cases per seed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kiln.serving import ModelServer, load_models

KEYS = ["instances", "inputs", "signature_name", "input_layer", "a", "b", "ids", "b64", "x"]


@pytest.fixture(scope="module")
def server(model_files):
    models = {**load_models(f"{model_files}/mlp.py:model", max_batch=4, batch_timeout_ms=0),
              **load_models(f"{model_files}/multi_io.py:build")}
    s = ModelServer(models, host="127.0.0.1", port=0)
    yield s
    s.stop(5)


def random_value(rng, depth=0):
    r = rng.random()
    if depth > 3 or r < 0.35:
        return [lambda: float(rng.standard_normal()), lambda: int(rng.integers(-3, 2 ** 33)),
                lambda: "s", lambda: True, lambda: None, lambda: float("nan"), lambda: 1e39,
                lambda: {"b64": "AAAA"}][rng.integers(8)]()
    if r < 0.75:
        return [random_value(rng, depth + 1) for _ in range(rng.integers(0, 7))]
    return {KEYS[rng.integers(len(KEYS))]: random_value(rng, depth + 1) for _ in range(rng.integers(0, 4))}


def valid_bodies(rng):
    x = rng.standard_normal((2, 6)).round(3).tolist()
    a, b = rng.standard_normal((2, 3)).tolist(), rng.standard_normal((2, 2)).tolist()
    return [("mlp", {"instances": x}), ("mlp", {"inputs": {"input_layer": x}}),
            ("multi_io", {"instances": [{"a": a[i], "b": b[i], "ids": [i]} for i in range(2)]}),
            ("multi_io", {"inputs": {"a": a, "b": b, "ids": [[1], [2]]}})]


def corrupt(rng, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.integers(1, 4)):
        i = int(rng.integers(len(data) + 1))
        op = rng.integers(3)
        if op == 0 and data:
            del data[min(i, len(data) - 1)]
        elif op == 1:
            data[i:i] = bytes([rng.choice(list(b'[]{}",:0123456789.-eEtruefalsn \\\xff'))])
        elif data:
            data[min(i, len(data) - 1)] = int(rng.integers(256))
    return bytes(data)


def check(server, name, body: bytes):
    status, out = server.handle("POST", f"/v1/models/{name}:predict", body)
    assert status in (200, 400), (status, out[:300], body[:300])
    doc = json.loads(out)
    assert ("error" in doc) == (status != 200)


@pytest.mark.parametrize("seed", range(4))
def test_random_documents(server, seed):
    rng = np.random.default_rng(seed)
    for _ in range(300):
        doc = random_value(rng)
        if rng.random() < 0.7:
            doc = {KEYS[rng.integers(3)]: doc}
        check(server, ["mlp", "multi_io"][rng.integers(2)], json.dumps(doc).encode())


@pytest.mark.parametrize("seed", range(4))
def test_corrupted_valid_bodies(server, seed):
    rng = np.random.default_rng(100 + seed)
    bodies = valid_bodies(rng)
    for name, doc in bodies:
        status, _ = server.handle("POST", f"/v1/models/{name}:predict", json.dumps(doc).encode())
        assert status == 200
    for _ in range(300):
        name, doc = bodies[rng.integers(len(bodies))]
        check(server, name, corrupt(rng, json.dumps(doc).encode()))
