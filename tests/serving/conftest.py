"""Fixtures for the serving tests (helpers live in util.py)."""
from __future__ import annotations

import pytest

from .util import MLP_FILE, MULTI_IO_FILE, ServerProcess, load


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """mlp.py (a kiln.Sequential MLP, fixed weights), multi_io.py (a graph with three
    inputs and three outputs) and models/mlp/{1,2}/model.py (two versions)."""
    d = tmp_path_factory.mktemp("serving_models")
    (d / "mlp.py").write_text(MLP_FILE)
    (d / "multi_io.py").write_text(MULTI_IO_FILE)
    versions = d / "models" / "mlp"
    for v in (1, 2):
        (versions / str(v)).mkdir(parents=True)
        (versions / str(v) / "model.py").write_text(MLP_FILE + f"\nmodel = model(seed={v})\n")
    (versions / "notes").mkdir()                       # not a version: ignored
    return d


@pytest.fixture(scope="session")
def mlp_exe(model_files):
    """kiln.compile of mlp.py's model: what the servers' answers are checked against."""
    import kiln
    return kiln.compile(load(f"{model_files}/mlp.py:model"))


@pytest.fixture
def start_server(tmp_path):
    """start_server(*args) -> ServerProcess; every server started is stopped at the end."""
    servers = []

    def start(*args, **kw):
        s = ServerProcess(*args, log_dir=str(tmp_path), **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()
