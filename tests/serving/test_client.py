"""kiln.serving.client against an in-process ModelServer on 127.0.0.1."""
from __future__ import annotations

import numpy as np
import pytest

from kiln.serving import ModelServer, load_models
from kiln.serving.client import Client, ClientError



@pytest.fixture(scope="module")
def server(model_files):
    s = ModelServer(load_models(f"{model_files}/mlp.py:model", max_batch=8), host="127.0.0.1",
                    port=0).start()
    yield s
    assert s.stop(10)


def test_client(server, mlp_exe):
    exe = mlp_exe
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    c = Client(f"http://127.0.0.1:{server.port}", "mlp")
    np.testing.assert_array_equal(c.predict(instances=x).astype(np.float32), exe(x))
    np.testing.assert_array_equal(c.predict(inputs=x, version=1).astype(np.float32), exe(x))
    assert c.status()["model_version_status"][0]["state"] == "AVAILABLE"
    assert list(c.metadata()["metadata"]["signature_def"]["signature_def"]) == ["serving_default"]
    with pytest.raises(ClientError) as e:
        c.predict(instances=x, name="nope")
    assert (e.value.status, e.value.message) == (404, "Servable not found for request: Latest(nope)")
    with pytest.raises(ClientError) as e:
        c.predict(instances=[[1, 2]])
    assert e.value.status == 400
    c.close()


def test_in_process_handle_without_http(server):
    status, body = server.handle("GET", "/v1/models/mlp", b"")
    assert status == 200 and b'"AVAILABLE"' in body
    assert server.handle("GET", "/v2/x", b"")[0] == 404
