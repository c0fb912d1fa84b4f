"""Executable.__call__: the fast path (inputs shaped as in the last call) and the
validating path must agree, whatever order calls come in."""
import numpy as np
import pytest

import kiln


def test_fast_and_validating_paths_agree():
    kiln.utils.set_random_seed(0)
    model = kiln.Sequential([kiln.Input((5,)), kiln.layers.Dense(3, activation="tanh")])
    exe = kiln.compile(model)
    w, b = model.layers[0].get_weights()
    rng = np.random.default_rng(0)
    calls = [rng.random((4, 5), dtype=np.float32), rng.random((4, 5), dtype=np.float32),
             rng.random((7, 5), dtype=np.float32), rng.random((7, 5)),             # float64: converted
             np.asfortranarray(rng.random((7, 5), dtype=np.float32)),              # not C-contiguous
             rng.random((7, 10), dtype=np.float32)[:, ::2],                        # a strided view
             rng.random((4, 5), dtype=np.float32).tolist()]                        # a list
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
    np.testing.assert_allclose(exe(calls[1]), np.tanh(calls[1] @ w + b), rtol=1e-5, atol=1e-6)
