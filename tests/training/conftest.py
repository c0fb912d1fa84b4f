import pytest

import kiln


@pytest.fixture(autouse=True)
def _fresh_session():
    """Fresh automatic names and a seeded generator in every test (deterministic)."""
    kiln.utils.clear_session()
    kiln.utils.set_random_seed(20261126)
    yield
    kiln.utils.clear_session()
