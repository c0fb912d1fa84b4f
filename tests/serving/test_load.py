"""Load and shutdown: concurrent clients with malformed requests among valid ones,
and SIGTERM while requests are in flight. Every loop is bounded in count and time."""
from __future__ import annotations

import http.client
import json
import signal
import threading
import time

import numpy as np
import pytest

from .util import HOST, as_f32, request

MALFORMED = [
    (b'{"instances": [[1, 2, 3', "JSON Parse error: "),
    ({"instances": [[1, 2, 3]]}, "Input 'input_layer' has shape [1,3]"),
    ({"instances": [[1, 2, 3, 4, 5, "x"]]}, "is not of expected type: float"),
    ({"inputs": {"nope": [[1, 2, 3, 4, 5, 6]]}}, "Missing named input: input_layer"),
    ({"instances": [[1, 2, 3, 4, 5, 6], [1]]}, "Expecting tensor size: 6 but got: 1"),
]


def plan(total, seed):
    """Request i: malformed when i % 20 == 13 (5%), else 1-4 rows, row or columnar."""
    out = []
    for i in range(total):
        if i % 20 == 13:
            out.append(("bad",) + MALFORMED[(i // 20) % len(MALFORMED)])
        else:
            x = np.random.default_rng(seed * 100003 + i).standard_normal((1 + i % 4, 6)).astype(np.float32)
            out.append(("row" if i % 2 else "columnar", x))
    return out


def run_load(port, requests, clients=20, deadline_s=240.0):
    results = [None] * len(requests)
    stop_at = time.monotonic() + deadline_s

    def client(k):
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        for i in range(k, len(requests), clients):
            if time.monotonic() > stop_at:
                break
            kind, a, _msg = requests[i] if requests[i][0] == "bad" else (*requests[i], None)
            if kind == "bad":
                body = a if isinstance(a, bytes) else json.dumps(a).encode()
            else:
                key = "instances" if kind == "row" else "inputs"
                body = json.dumps({key: a.tolist()}).encode()
            try:
                conn.request("POST", "/v1/models/mlp:predict", body=body)
                r = conn.getresponse()
                results[i] = (r.status, r.read())
            except (OSError, http.client.HTTPException) as e:
                results[i] = ("exception", repr(e))
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, stop_at - time.monotonic()) + 5)
    assert not any(t.is_alive() for t in threads), "client threads did not finish in time"
    return results


def same(got, want, exact: bool) -> bool:
    """Exactly kiln.compile's answer without batching. With batching, a request's rows
    run inside a larger call, and kiln's kernels may round a row differently by its
    position in the batch (softmax does, by a float32 ulp), so: within 4 ulp."""
    if exact or got.shape != want.shape:
        return np.array_equal(got, want)
    try:
        np.testing.assert_array_max_ulp(got, want, maxulp=4)
        return True
    except AssertionError:
        return False


def check(requests, results, exe, exact: bool):
    failures = []
    for i, (req, res) in enumerate(zip(requests, results)):
        status, body = res if res is not None else ("missing", b"")
        if req[0] == "bad":
            if status != 400 or req[2] not in json.loads(body)["error"]:
                failures.append((i, "malformed", status, body[:200]))
            continue
        kind, x = req
        if status != 200:
            failures.append((i, kind, status, body[:200]))
            continue
        got = json.loads(body)["predictions" if kind == "row" else "outputs"]
        if not same(as_f32(got), exe(x), exact):
            failures.append((i, kind, "wrong prediction"))
    assert failures == [], failures[:10]


@pytest.fixture(scope="module")
def exe(mlp_exe):
    return mlp_exe


@pytest.mark.parametrize("batching", [["--max-batch", "32", "--batch-timeout-ms", "2"], []],
                         ids=["batching", "no-batching"])
def test_load_500_requests_20_clients(model_files, start_server, exe, batching):
    s = start_server(f"{model_files}/mlp.py:model", "--workers", "2", *batching)
    requests = plan(500, seed=1)
    check(requests, run_load(s.port, requests), exe, exact=not batching)
    assert s.alive()
    assert request(s.port, "GET", "/v1/models/mlp").status == 200


@pytest.mark.slow
def test_load_5000_requests_20_clients(model_files, start_server, exe):
    s = start_server(f"{model_files}/mlp.py:model", "--workers", "2", "--max-batch", "32",
                     "--batch-timeout-ms", "2")
    requests = plan(5000, seed=2)
    check(requests, run_load(s.port, requests), exe, exact=False)
    assert s.alive()
    assert request(s.port, "GET", "/v1/models/mlp").status == 200


def test_sigterm_finishes_requests_in_flight(model_files, start_server, exe):
    # a batch that waits up to 5 s to fill keeps the requests in flight when SIGTERM comes
    s = start_server(f"{model_files}/mlp.py:model", "--max-batch", "64", "--batch-timeout-ms", "5000")
    idle = http.client.HTTPConnection(HOST, s.port, timeout=15)       # a kept-alive, idle client
    assert request(s.port, "GET", "/v1/models/mlp", conn=idle).status == 200
    xs = [np.random.default_rng(50 + i).standard_normal((1 + i % 2, 6)).astype(np.float32)
          for i in range(6)]
    results = [None] * len(xs)

    def post(i):
        try:
            r = request(s.port, "POST", "/v1/models/mlp:predict", {"instances": xs[i].tolist()},
                        timeout=30)
            results[i] = (r.status, r.json)
        except Exception as e:                       # noqa: BLE001 - reported below
            results[i] = ("exception", repr(e))

    threads = [threading.Thread(target=post, args=(i,), daemon=True) for i in range(len(xs))]
    for t in threads:
        t.start()
    time.sleep(1.0)                                  # all six read and waiting in the batcher
    assert all(r is None for r in results)
    s.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert s.proc.wait(30) == 0
    for x, res in zip(xs, results):
        assert res is not None and res[0] == 200, res
        assert same(as_f32(res[1]["predictions"]), exe(x), exact=False)
    idle.close()
    log = s.log()
    assert "stopping (finishing requests in flight)" in log and "stopped" in log
    with pytest.raises(ConnectionRefusedError):
        request(s.port, "GET", "/v1/models/mlp", timeout=5)
