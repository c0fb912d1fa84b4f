"""Dynamic batching in process: concurrent requests share one native call, results are
split back, one request's failure fails no other, and closing flushes the queue."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from kiln.serving import Batcher, Servable
from kiln.serving.errors import ServingError, invalid

from .util import load


@pytest.fixture(scope="module")
def servable(model_files):
    return Servable("mlp", 1, load(f"{model_files}/mlp.py:model"), workers=2)


def prepared(servable, x):
    return servable.prepare({servable.input_names[0]: x})


def submit_all(batcher, preps):
    results = [None] * len(preps)

    def one(i):
        try:
            results[i] = batcher.submit(preps[i])
        except ServingError as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(preps))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    return results


def xs(n, rows, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((rows, 6)).astype(np.float32) for _ in range(n)]


def test_concurrent_requests_share_one_call(servable):
    b = Batcher(servable, max_batch=16, timeout_s=10.0)     # closes when 16 rows are queued
    try:
        inputs = xs(8, 2)
        results = submit_all(b, [prepared(servable, x) for x in inputs])
        assert (b.batches, b.requests) == (1, 8)
        for x, out in zip(inputs, results):
            assert out[0].shape == (2, 4)
            np.testing.assert_array_max_ulp(out[0], servable.run([x])[0], maxulp=4)
    finally:
        b.close()
        b.join(10)


def test_large_request_runs_alone_and_timeout_closes_a_batch(servable):
    b = Batcher(servable, max_batch=4, timeout_s=0.0)
    try:
        x = xs(1, 10)[0]
        out = b.submit(prepared(servable, x))
        np.testing.assert_array_equal(out[0], servable.run([x])[0])
        assert (b.batches, b.requests) == (1, 1)
    finally:
        b.close()
        b.join(10)


def test_one_failing_request_fails_no_other(servable, monkeypatch):
    run = servable.run

    def poisoned(arrays):
        if np.isnan(arrays[0]).any():
            raise invalid("poisoned")
        return run(arrays)

    monkeypatch.setattr(servable, "run", poisoned)
    b = Batcher(servable, max_batch=8, timeout_s=10.0)
    try:
        inputs = xs(4, 2, seed=1)
        inputs[2][1, 3] = np.nan
        results = submit_all(b, [prepared(servable, x) for x in inputs])
        assert b.batches == 1
        assert isinstance(results[2], ServingError) and results[2].message == "poisoned"
        for i in (0, 1, 3):
            np.testing.assert_array_equal(results[i][0], run([inputs[i]])[0])
    finally:
        b.close()
        b.join(10)


def test_close_runs_queued_requests_at_once(servable):
    b = Batcher(servable, max_batch=100, timeout_s=60.0)     # would wait a minute to fill
    x = xs(1, 3, seed=2)[0]
    results = []
    t = threading.Thread(target=lambda: results.append(b.submit(prepared(servable, x))), daemon=True)
    t.start()
    t.join(0.3)                                               # queued, its batch waiting to fill
    b.close()
    t.join(30)                                                # well before the 60 s timeout
    assert not t.is_alive() and len(results) == 1
    np.testing.assert_array_equal(results[0][0], servable.run([x])[0])
    # after close, requests run alone
    np.testing.assert_array_equal(b.submit(prepared(servable, x))[0], servable.run([x])[0])
    b.join(10)


def test_prepare_checks_the_signature(servable):
    assert prepared(servable, np.zeros((5, 6), np.float32)).rows == 5
    with pytest.raises(ServingError, match=r"has shape \[5,7\], but the model expects shape \[-1,6\]"):
        prepared(servable, np.zeros((5, 7), np.float32))
    assert servable.batchable and servable.input_names[0].startswith("input_layer")
    assert servable.output_names == ["output_0"]
