"""Serving compiled models over TensorFlow Serving's REST API (``kiln serve``).

    from kiln.serving import ModelServer, Servable, load_models
    server = ModelServer(load_models("models/mlp"), port=0).start()   # serves in a thread
    ...
    server.stop()

Modules: ``json_tensor`` (the wire format), ``servable`` (a compiled model version and
its signature), ``batching`` (dynamic batching), ``server`` (routes, HTTP, graceful
stop), ``loader`` (what MODEL names), ``command`` (the CLI), ``client`` (a small client).
"""
from .batching import Batcher
from .command import load_models, serve
from .errors import ServingError
from .loader import find_versions, register_loader
from .servable import Servable
from .server import ModelServer

__all__ = ["Batcher", "ModelServer", "Servable", "ServingError", "find_versions", "load_models",
           "register_loader", "serve"]
