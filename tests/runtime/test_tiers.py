"""Tiered compilation (``kiln.compile(..., tiered=True)``): a quick tier answers the
first calls while the optimized code compiles on a thread."""
import numpy as np
import pytest

import kiln
from kiln.runtime.executable import Executable


def _cnn():
    kiln.utils.set_random_seed(5)
    L = kiln.layers
    return kiln.Sequential([kiln.Input((10, 10, 3)), L.Conv2D(6, 3, padding="same", activation="relu"),
                            L.MaxPooling2D(2), L.Conv2D(40, 3, activation="tanh"), L.Flatten(),
                            L.Dense(12, activation="gelu"), L.LayerNormalization(),
                            L.Dense(5, activation="softmax")])


def _convs():
    kiln.utils.set_random_seed(6)
    L = kiln.layers
    x = kiln.Input((12, 12, 4))
    y = L.Conv2D(16, 3, padding="same", activation="elu")(x)
    y = L.Conv2D(16, 3, padding="same")(y)                        # Winograd (16 channels)
    y = L.BatchNormalization()(y)
    y = L.DepthwiseConv2D(3, activation="swish")(y)
    y = L.SeparableConv2D(8, 3, padding="same", activation="softplus")(y)
    z = L.Conv2DTranspose(4, 3, strides=2, activation="selu")(y)
    z = L.AveragePooling2D(2)(z)
    y = L.Concatenate()([L.GlobalAveragePooling2D()(y), L.GlobalMaxPooling2D()(z)])
    return kiln.Model(x, L.Softmax(axis=-1)(L.Dense(7, activation="hard_sigmoid")(y)))


def _sequences():
    kiln.utils.set_random_seed(7)
    L = kiln.layers
    x = kiln.Input((9,), dtype="int32")
    e = L.Embedding(50, 12)(x)
    h = L.LSTM(16, return_sequences=True)(e)
    h = L.GRU(8, return_sequences=True)(h)
    h = L.SimpleRNN(8, return_sequences=True, activation="relu")(h)
    a = L.MultiHeadAttention(2, 4)(h, h)
    a = L.LayerNormalization()(L.Add()([a, h]))
    a = L.Conv1D(6, 3, activation="gelu")(a)
    return kiln.Model(x, L.Softmax(axis=1)(a))        # softmax along time: a strided row


def _sample(model, n):
    rng = np.random.default_rng(n)
    t = model._lower().inputs[0].type
    shape = (n, *t.shape[1:])
    if t.dtype.value.startswith("i"):
        return rng.integers(0, 50, shape).astype(np.int32)
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("build", [_cnn, _convs, _sequences])
def test_quick_tier_alone_computes_the_model_bit_for_bit(monkeypatch, build):
    """The quick tier's code on its own (the optimized tier never arrives) rounds as
    the optimized code does: every kernel fixes its rounding in the IR (no
    contract/reassoc flags: vmath.fma, kernels.ordered_sum), so switching tiers
    changes no result."""
    monkeypatch.setattr(Executable, "_compile_full_tier", lambda self, *a: setattr(self, "tier", "quick"))
    model = build()
    exe = kiln.compile(model, tiered=True, cache=False)
    assert exe.tier == "quick"
    ref = kiln.compile(model, tiered=False, cache=False)
    for n in (1, 3, 17):
        x = _sample(model, n)
        np.testing.assert_array_equal(exe(x), ref(x))
        np.testing.assert_allclose(exe(x), kiln.interpret(exe.graph, x), rtol=1e-4, atol=1e-5)


def test_calls_switch_to_the_optimized_tier_which_the_cache_keeps(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    model = _cnn()
    x = np.random.default_rng(0).random((2, 10, 10, 3), dtype=np.float32)
    exe = kiln.compile(model, tiered=True, cache=True)
    first = exe(x)
    assert exe.wait_optimized().tier == "full"
    np.testing.assert_array_equal(exe(x), first)
    again = kiln.compile(model, tiered=True, cache=True)      # a hit: optimized code at once
    assert again.cache_hit and again.tier == "full"
    np.testing.assert_array_equal(again(x), exe(x))


def test_tiers_by_default_for_inference_only(monkeypatch):
    model = _cnn()
    monkeypatch.delenv("KILN_TIERED", raising=False)
    assert kiln.compile(model, cache=False).tier in ("quick", "full")     # the default
    assert kiln.compile(model, cache=False, passes=["simplify", "fusion", "memory"]).tier == "full"
    assert kiln.compile(model, cache=False, profile=True).tier == "full"
    assert kiln.compile(model, cache=False, opt_level=0).tier == "full"
    monkeypatch.setenv("KILN_TIERED", "0")
    assert kiln.compile(model, cache=False).tier == "full"
    monkeypatch.setenv("KILN_TIERED", "1")
    exe = kiln.compile(model, cache=False)
    assert "define" in exe.llvm_ir_optimized and exe.tier == "full"        # dumps wait for it


def _slow_optimizer(monkeypatch, seconds=0.5):
    """The optimized tier takes ``seconds`` longer, so calls surely meet the quick one."""
    import time
    import kiln.runtime.executable as E
    jit = E.jit

    def slow(*a, **k):
        time.sleep(seconds)
        return jit(*a, **k)
    monkeypatch.setattr(E, "jit", slow)


def test_a_call_on_more_samples_than_the_quick_tier_serves_waits(monkeypatch):
    import kiln.runtime.executable as E
    _slow_optimizer(monkeypatch)
    monkeypatch.setattr(E, "QUICK_MAX_BATCH", 4)
    model = _cnn()
    x = np.random.default_rng(1).random((5, 10, 10, 3), dtype=np.float32)
    small = kiln.compile(model, tiered=True, cache=False)
    y = small(x[:4])
    assert small.tier == "quick"            # answered by the quick tier, optimizer still busy
    big = kiln.compile(model, tiered=True, cache=False)
    assert big.tier == "quick"
    np.testing.assert_array_equal(big(x), kiln.compile(model, tiered=False, cache=False)(x))
    assert big.tier == "full"               # that call waited for the optimized code
    np.testing.assert_array_equal(small.wait_optimized()(x[:4]), y)


@pytest.mark.filterwarnings("ignore:kiln. the optimized tier failed")
def test_a_failing_optimized_tier_keeps_the_quick_tier(monkeypatch):
    import kiln.runtime.executable as E

    def broken(*a, **k):
        raise RuntimeError("no optimizer today")
    monkeypatch.setattr(E, "jit", broken)
    exe = kiln.compile(_cnn(), tiered=True, cache=False)
    exe._full_tier.join()          # (its warning is raised on that thread)
    assert exe.tier == "quick" and "no optimizer today" in str(exe.tier_error)
    x = np.ones((1, 10, 10, 3), np.float32)
    assert np.isfinite(exe(x)).all()


def test_compiling_a_graph_again_while_it_is_optimized_waits_for_that_code(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    _slow_optimizer(monkeypatch)
    model = _cnn()
    first = kiln.compile(model, tiered=True, cache=True)
    assert first.tier == "quick"
    again = kiln.compile(model, tiered=True, cache=True)     # no second quick + O3 compile
    assert again.cache_hit and again.tier == "full"
    x = np.ones((2, 10, 10, 3), np.float32)
    np.testing.assert_array_equal(again(x), first.wait_optimized()(x))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_child_forked_while_the_optimizer_runs_can_compile():
    """fork waits for optimized tiers in flight: LLVM's lock, held by one, would stay held
    in the child forever (its first compile would hang)."""
    import os
    import time
    import warnings
    exe = kiln.compile(_transformerish(), tiered=True, cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)     # (fork with threads, 3.12+)
        pid = os.fork()
    if pid == 0:                                           # the child
        ok = False
        try:
            ok = kiln.compile(_cnn(), tiered=False, cache=False).tier == "full"
        finally:
            os._exit(0 if ok else 1)
    done = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the forked child's compile hung")
    finally:
        if not done:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert exe.tier == "full"                # the fork waited for it


def _transformerish():
    """Enough code that its optimized tier is still compiling when compile returns."""
    kiln.utils.set_random_seed(8)
    L = kiln.layers
    x = kiln.Input((16, 32))
    y = x
    for _ in range(3):
        y = L.LayerNormalization()(L.Add()([y, L.MultiHeadAttention(4, 8)(y, y)]))
        y = L.LayerNormalization()(L.Add()([y, L.Dense(32)(L.Dense(64, activation="gelu")(y))]))
    return kiln.Model(x, y)
