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


@pytest.fixture
def fast_compile(monkeypatch):
    """Compile models' predict at LLVM -O0: the layer tests check the generated code's
    semantics on many small models, and O3 costs seconds per convolution kernel. The
    O3 path is exercised by the end-to-end tests (seed program, BatchNorm folding,
    toy ResNet) and by tests/codegen."""
    from kiln.frontend.models import model as model_module
    monkeypatch.setattr(model_module, "compile_model",
                        lambda m: kiln.compile(m, opt_level=0))
