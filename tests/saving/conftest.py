import os
import sys

import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "keras")
sys.path.insert(0, os.path.dirname(__file__))

MODELS = ["mlp", "cnn", "two_input", "lstm", "rnn", "bn", "transformer", "embed_conv1d", "misc",
          "nested", "trained"]


def fixture(name):
    return os.path.join(FIXTURES, name)


def inputs(npz):
    xs = [npz[k] for k in sorted(npz.files) if k.startswith("x")]
    return xs if len(xs) > 1 else xs[0]


def assert_close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.fixture
def kiln_models():
    import kiln
    from kiln_models import kiln_models as make
    return make(kiln)
