"""Executable.__call__: the fast path (inputs shaped as in the last call: in C where
kiln/runtime/c/kiln_call.c could be built, else in Python over ctypes) and the
validating path must agree, whatever order calls come in, from any thread."""
import threading

import numpy as np
import pytest

import kiln
from kiln.ir import Graph, TensorType
from kiln.runtime import fastcall

C_PATH = fastcall.entry_type() is not None


@pytest.fixture(params=["c", "ctypes"])
def path(request, monkeypatch):
    if request.param == "c" and not C_PATH:
        pytest.skip(f"no C call path here: {fastcall.error}")
    if request.param == "ctypes":
        monkeypatch.setenv("KILN_FAST_CALL", "0")
    return request.param


def _check_path(exe, path):
    assert (exe._entry is not None) == (path == "c")


def test_fast_and_validating_paths_agree(path):
    kiln.utils.set_random_seed(0)
    model = kiln.Sequential([kiln.Input((5,)), kiln.layers.Dense(3, activation="tanh")])
    exe = kiln.compile(model)
    _check_path(exe, path)
    w, b = model.layers[0].get_weights()
    rng = np.random.default_rng(0)
    calls = [rng.random((4, 5), dtype=np.float32), rng.random((4, 5), dtype=np.float32),
             rng.random((7, 5), dtype=np.float32), rng.random((7, 5)),             # float64: converted
             np.asfortranarray(rng.random((7, 5), dtype=np.float32)),              # not C-contiguous
             rng.random((7, 10), dtype=np.float32)[:, ::2],                        # a strided view
             rng.random((4, 5), dtype=np.float32).tolist(),                        # a list
             rng.random((4, 5), dtype=np.float32).astype(">f4"),                   # big-endian
             rng.random((0, 5), dtype=np.float32)]                                 # no rows
    for x in calls:
        want = np.tanh(np.asarray(x, np.float64) @ w + b)
        np.testing.assert_allclose(exe(x), want, rtol=1e-5, atol=1e-6)
    exe(calls[0])
    with pytest.raises(ValueError, match="expected shape"):
        exe(rng.random((4, 6), dtype=np.float32))
    with pytest.raises(ValueError, match="rank 2"):
        exe(rng.random((4, 5, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="expected 1 input"):
        exe(calls[0], calls[0])
    with pytest.raises(TypeError):
        exe(x=calls[0])
    np.testing.assert_allclose(exe(calls[1]), np.tanh(calls[1] @ w + b), rtol=1e-5, atol=1e-6)


def _two_in_two_out():
    """y1 = relu(a @ W), y2 = a_sum + b (several inputs and outputs, one symbol each)."""
    rng = np.random.default_rng(3)
    g = Graph("io")
    a = g.add_input("a", TensorType(("N", 6)))
    b = g.add_input("b", TensorType(("M",)))
    w = g.add_param("w", rng.standard_normal((6, 4)).astype(np.float32))
    y1 = g.op("relu", g.op("matmul", a, w))
    y2 = g.op("add", b, g.op("reduce_sum", a, axes=(0, 1), keepdims=False))
    g.set_outputs([y1, y2])
    return g


def test_several_inputs_and_outputs_and_fresh_outputs_every_call(path):
    g = _two_in_two_out()
    exe = kiln.compile(g, threads=2)
    _check_path(exe, path)
    w = g.param_values["w"]
    rng = np.random.default_rng(4)
    seen = []
    for n, m in [(3, 2), (3, 2), (9, 2), (9, 5), (3, 2), (3, 2)]:
        a, b = rng.random((n, 6), dtype=np.float32), rng.random(m, dtype=np.float32)
        y1, y2 = exe(a, b)
        assert y1.shape == (n, 4) and y2.shape == (m,)
        np.testing.assert_allclose(y1, np.maximum(a @ w, 0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(y2, b + a.sum(), rtol=1e-5)
        assert not any(np.shares_memory(y1, s) for s in seen)     # a new array every call
        seen.append(y1)
    y1, y2 = exe([a, b])                                          # one list of the inputs
    np.testing.assert_allclose(y2, b + a.sum(), rtol=1e-5)


def test_c_and_ctypes_paths_agree_bit_for_bit(monkeypatch):
    if not C_PATH:
        pytest.skip(f"no C call path here: {fastcall.error}")
    g = _two_in_two_out()
    c = kiln.compile(g, threads=2)
    monkeypatch.setenv("KILN_FAST_CALL", "0")
    plain = kiln.compile(g, threads=2)
    assert c._entry is not None and plain._entry is None
    rng = np.random.default_rng(5)
    for n in (1, 4, 300, 4):
        a, b = rng.standard_normal((n, 6)).astype(np.float32), rng.random(3, dtype=np.float32)
        for x, y in zip(c(a, b), plain(a, b)):
            np.testing.assert_array_equal(x, y)


def test_concurrent_calls_of_different_batch_sizes(path):
    """Threads calling one executable with their own batch sizes: every call runs with
    its own shapes' dims and an arena big enough for them (the arena grows meanwhile)."""
    rng = np.random.default_rng(6)
    g = Graph("c")
    x = g.add_input("x", TensorType(("N", 64)))
    w = g.add_param("w", rng.standard_normal((64, 48)).astype(np.float32))
    g.set_outputs([g.op("tanh", g.op("matmul", g.op("relu", x), w))])
    exe = kiln.compile(g, threads=2)
    _check_path(exe, path)
    wv = g.param_values["w"]
    errors = []

    def worker(t):
        r = np.random.default_rng(100 + t)
        try:
            for i in range(150):
                n = (1, 7, 33, 150 + 40 * t)[(i + t) % 4]
                a = r.standard_normal((n, 64)).astype(np.float32)
                np.testing.assert_allclose(exe(a), np.tanh(np.maximum(a, 0) @ wv), rtol=1e-4, atol=1e-5)
        except Exception as e:        # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]


def test_calls_go_on_through_the_switch_to_the_optimized_tier(path):
    """Calls from two threads while the optimized tier is compiled and swapped in:
    every result equals the untiered code's (the tiers agree bit for bit)."""
    rng = np.random.default_rng(8)
    g = Graph("t")
    x = g.add_input("x", TensorType(("N", 96)))
    w = g.add_param("w", rng.standard_normal((96, 80)).astype(np.float32))
    g.set_outputs([g.op("sigmoid", g.op("matmul", x, w))])
    exe = kiln.compile(g, threads=2, tiered=True, cache=False)
    _check_path(exe, path)
    want = kiln.compile(g, threads=2, tiered=False, cache=False)
    a = rng.standard_normal((5, 96)).astype(np.float32)
    expected = want(a)
    errors = []

    def worker():
        try:
            for _ in range(20000):
                np.testing.assert_array_equal(exe(a), expected)
                if exe.tier == "full":
                    break
            for _ in range(50):
                np.testing.assert_array_equal(exe(a), expected)
        except Exception as e:        # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=worker) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]
    assert exe.wait_optimized().tier == "full"
    np.testing.assert_array_equal(exe(a), expected)
