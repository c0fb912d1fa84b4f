import pytest

import kiln


@pytest.fixture(autouse=True)
def _fresh_session():
    """Every test starts with fresh automatic names (dense, dense_1, ...)."""
    kiln.utils.clear_session()
    yield
    kiln.utils.clear_session()
