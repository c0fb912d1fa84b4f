import pytest

import kiln


@pytest.fixture(autouse=True)
def _fresh_session():
    """Every test starts with fresh automatic names (dense, dense_1, ...) and a seeded
    random generator, so statistical checks are deterministic, not flaky."""
    kiln.utils.clear_session()
    kiln.utils.set_random_seed(20261126)
    yield
    kiln.utils.clear_session()
