"""``kiln serve``: load, compile, serve until SIGTERM/SIGINT, then stop gracefully."""
from __future__ import annotations

import signal
import sys
import threading

from ..utils import clear_session
from .batching import Batcher
from .loader import find_versions
from .server import DEFAULT_MAX_REQUEST_BYTES, ModelServer
from .servable import Servable


def load_models(model: str, name: str | None = None, workers: int = 1, max_batch: int = 0,
                batch_timeout_ms: float = 2.0, versions: str = "latest") -> dict:
    """``{name: {version: Servable}}`` for MODEL (see ``kiln.serving.loader``), each
    compiled, with a batcher when ``max_batch`` > 0. Each version is loaded after
    ``kiln.utils.clear_session()``, so that its automatic names (``input_layer``, which
    names the input in requests and metadata) do not depend on what was loaded before."""
    default_name, found = find_versions(model, versions)
    name = name or default_name
    if not name or "/" in name or ":" in name:
        from ..cli import CLIError
        raise CLIError(f"model name {name!r}: must be non-empty, without '/' or ':' (give --name)")
    served = {}
    for version, (load, _source) in sorted(found.items()):
        clear_session()      # automatic names (input_layer, dense, ...) as in a fresh process
        s = Servable(name, version, load(), workers=workers)
        if max_batch > 0:
            if s.batchable:
                s.batcher = Batcher(s, max_batch, batch_timeout_ms / 1000.0)
            else:
                print(f"kiln serve: {name} version {version} is served without batching (every "
                      f"input and output must have the batch dimension N first, and only there)",
                      file=sys.stderr)
        served[version] = s
    return {name: served}


def serve(model: str, name: str | None = None, host: str = "127.0.0.1", port: int = 8501,
          workers: int = 1, max_batch: int = 0, batch_timeout_ms: float = 2.0,
          max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, versions: str = "latest",
          shutdown_timeout: float = 30.0, access_log: bool = False) -> int:
    """Serve until SIGTERM or SIGINT; then finish the requests in flight and return 0
    (1 when some did not finish within ``shutdown_timeout`` seconds)."""
    try:                   # listen first: a busy port is reported before compiling
        server = ModelServer({}, host, port, max_request_bytes=max_request_bytes,
                             access_log=access_log)
    except OSError as e:
        from ..cli import CLIError
        raise CLIError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    try:
        models = load_models(model, name, workers, max_batch, batch_timeout_ms, versions)
    except BaseException:
        server.stop(0)
        raise
    server.models = models
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        for model_name, served in models.items():
            batching = (f"batching up to {max_batch} rows, {batch_timeout_ms:g} ms"
                        if max_batch > 0 else "no batching")
            print(f"kiln serve: {model_name} version(s) {', '.join(map(str, sorted(served)))} at "
                  f"http://{server.host}:{server.port}/v1/models/{model_name} "
                  f"({workers} worker(s), {batching})", flush=True)
        while not stop.wait(0.2):
            pass
        print("kiln serve: stopping (finishing requests in flight)", file=sys.stderr, flush=True)
        drained = server.stop(shutdown_timeout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("kiln serve: stopped", file=sys.stderr, flush=True)
    return 0 if drained else 1


def add_parser(sub):
    """The ``serve`` subcommand of ``kiln``."""
    p = sub.add_parser("serve", help="serve a model over TensorFlow Serving's REST API",
                       description="Serve a model over TensorFlow Serving's REST API: "
                                   "POST /v1/models/NAME[/versions/V]:predict, "
                                   "GET /v1/models/NAME[/versions/V][/metadata].")
    p.add_argument("model", metavar="MODEL",
                   help="path/to/file.py:NAME (a model or graph, or a function returning one), "
                        "a .kir file, or a directory of versions NAME/1/, NAME/2/, ... each "
                        "holding model.py (defining `model`)")
    p.add_argument("--name", help="the model's name in URLs (default: the directory's or "
                                  "file's name)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501; 0: any free port)")
    p.add_argument("--workers", type=int, default=1, metavar="K",
                   help="native calls that may run at once, each on its own copy of the "
                        "executable (default 1; the generated code is itself multithreaded)")
    p.add_argument("--max-batch", type=int, default=0, metavar="B",
                   help="dynamic batching: group concurrent requests into one call of up to B "
                        "rows (default 0: off)")
    p.add_argument("--batch-timeout-ms", type=float, default=2.0, metavar="T",
                   help="dynamic batching: longest wait for a batch to fill (default 2)")
    p.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES, metavar="N",
                   help=f"larger request bodies are answered 413 (default {DEFAULT_MAX_REQUEST_BYTES})")
    p.add_argument("--all-versions", action="store_true",
                   help="serve every version of a directory, not only the highest")
    p.add_argument("--shutdown-timeout", type=float, default=30.0, metavar="S",
                   help="on SIGTERM, seconds to let requests in flight finish (default 30)")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.set_defaults(fn=cmd_serve)
    return p


def cmd_serve(args) -> int:
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.max_batch < 0:
        raise ValueError(f"--max-batch must be >= 0, got {args.max_batch}")
    if args.max_request_bytes < 1:
        raise ValueError(f"--max-request-bytes must be >= 1, got {args.max_request_bytes}")
    return serve(args.model, name=args.name, host=args.host, port=args.port, workers=args.workers,
                 max_batch=args.max_batch, batch_timeout_ms=args.batch_timeout_ms,
                 max_request_bytes=args.max_request_bytes,
                 versions="all" if args.all_versions else "latest",
                 shutdown_timeout=args.shutdown_timeout, access_log=args.access_log)
