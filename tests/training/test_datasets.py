"""kiln.datasets.digits: the bundled UCI digits, Keras' load_data contract."""
import hashlib

import numpy as np

from kiln.datasets import digits


def test_load_data_contract():
    (xt, yt), (xv, yv) = digits.load_data()
    assert xt.shape == (1438, 8, 8) and yt.shape == (1438,)
    assert xv.shape == (359, 8, 8) and yv.shape == (359,)
    assert xt.dtype == np.uint8 and yt.dtype == np.uint8
    assert xt.max() == 16 and xt.min() == 0 and set(np.unique(yt)) == set(range(10))
    (xt2, yt2), (xv2, yv2) = digits.load_data()
    np.testing.assert_array_equal(xt, xt2)
    np.testing.assert_array_equal(yv, yv2)
    (a, _), (b, _) = digits.load_data(test_split=0.5, seed=1)
    assert len(a) == 899 and len(b) == 898


def test_bundled_file_is_the_cited_one():
    assert hashlib.sha256(digits.PATH.read_bytes()).hexdigest() == \
        "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
    x, y = digits.load_all()
    assert x.shape == (1797, 8, 8) and np.bincount(y).min() >= 170
    assert "BSD 3-Clause" in (digits.PATH.parent / "DIGITS_LICENSE.txt").read_text()
