"""The per-kernel profiler: counters in the generated entry, read back as a table."""
import numpy as np
import pytest

import kiln


def _model():
    kiln.utils.set_random_seed(3)
    return kiln.Sequential([kiln.Input((12,)), kiln.layers.Dense(16, activation="relu"),
                            kiln.layers.Dense(4, activation="softmax")])


def test_profile_counts_every_kernel_call_and_changes_no_result():
    model = _model()
    x = np.random.default_rng(0).random((9, 12), dtype=np.float32)
    plain = kiln.compile(model, cache=False)
    exe = kiln.compile(model, profile=True)
    for _ in range(5):
        np.testing.assert_array_equal(exe(x), plain(x))
    rows = kiln.profile.rows(exe)
    kernels = exe._lowered.kernels
    assert [r.kernel for r in rows[:-1]] == [k for k, _ in kernels]
    assert all(r.calls == 5 for r in rows)
    assert all(r.seconds >= 0 for r in rows) and sum(r.seconds for r in rows) > 0
    assert rows[0].what == "fusion(matmul_packed,add,relu)" and rows[0].shape == "f32[N,16]"
    text = kiln.profile.report(exe)
    assert "k0_fusion" in text and "entry: 5 calls" in text
    assert len(kiln.profile.report(exe, top=1).splitlines()) == 5   # header, rule, 1 row, rule, total
    kiln.profile.reset(exe)
    assert all(r.calls == 0 for r in kiln.profile.rows(exe))


def test_profile_from_the_environment_instruments_fit(monkeypatch):
    monkeypatch.setenv("KILN_PROFILE", "1")
    model = _model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(1).random((20, 12), dtype=np.float32)
    model.fit(x, np.arange(20) % 4, batch_size=8, epochs=1, verbose=0)
    rows = kiln.profile.rows(model._train_step.train_exe)
    assert all(r.calls == 3 for r in rows)          # 20 samples at batch 8: 3 steps


def test_unprofiled_executable_says_how_to_profile():
    exe = kiln.compile(_model(), profile=False)
    with pytest.raises(ValueError, match="profile=True"):
        kiln.profile.report(exe)


def test_scan_bodies_get_rows_of_their_own():
    kiln.utils.set_random_seed(4)
    model = kiln.Sequential([kiln.Input((7, 3)), kiln.layers.LSTM(5), kiln.layers.Dense(2)])
    exe = kiln.compile(model, profile=True)
    x = np.random.default_rng(2).random((4, 7, 3), dtype=np.float32)
    for _ in range(3):
        np.testing.assert_allclose(exe(x), kiln.compile(model, cache=False)(x), rtol=1e-6)
    rows = kiln.profile.rows(exe)
    (scan,) = [r for r in rows if r.what == "scan"]
    body = [r for r in rows if r.index.startswith(scan.index + ".")]
    assert body and all(r.calls == 3 * 7 for r in body)        # every step of every call
    assert sum(r.seconds for r in body) <= scan.seconds
    assert scan.calls == 3 and body[0].kernel.startswith("  k")
    kiln.profile.reset(exe)
    assert all(r.calls == 0 for r in kiln.profile.rows(exe))
