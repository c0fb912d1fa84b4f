"""The HTTP side: TF Serving's REST routes on the standard library's threading server.

Why ``http.server.ThreadingHTTPServer``: it is the standard library's, it speaks
HTTP/1.1 with keep-alive, and one thread per connection is what this workload needs:
request handling is short, the native call releases the GIL, and dynamic batching
collects the concurrent requests. The load test (20 concurrent clients, thousands of
requests, malformed ones among them) passes with it; no third-party server is needed.
On top of it this module adds what a model server needs:

- routing with TF Serving's regular expressions (``http_rest_api_util.cc``) and its
  order of checks, errors as ``{ "error": "..." }`` with the canonical status, JSON
  error bodies for protocol-level errors too (bad request line, too many headers);
- request size limits: a body over ``max_request_bytes`` is answered 413 before it is
  parsed (the body is drained, so the client reads the answer);
- graceful shutdown (``stop``): stop accepting, close idle keep-alive connections, let
  every request already read finish (its answer says ``Connection: close``), then stop
  the batchers. Requests in flight are counted per connection state.
- one write per response and TCP_NODELAY (no Nagle/delayed-ACK stalls on keep-alive).
"""
from __future__ import annotations

import json
import re
import socket
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from .errors import ServingError, error_body, invalid, not_found
from .json_tensor import parse_json, predict_response, request_tensors, signature_name
from .servable import SIGNATURE

PREDICT_RE = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                        r":(classify|regress|predict)", re.IGNORECASE)
STATUS_RE = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                       r"(?:/(metadata))?", re.IGNORECASE)
API_RE = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_INT64_MAX = (1 << 63) - 1
DEFAULT_MAX_REQUEST_BYTES = 32 << 20
_DRAIN_LIMIT = 64 << 20            # bytes of a rejected body read and dropped before closing


def _version(s: str | None) -> int | None:
    if not s:
        return None
    v = int(s)
    if v > _INT64_MAX:
        raise invalid(f"Failed to convert version: {s} to numeric.")
    return v


def _json(obj) -> bytes:
    # protobuf's JSON printer with add_whitespace: one-space indentation
    return (json.dumps(obj, indent=1) + "\n").encode()


class ModelServer:
    """Serves ``models`` ({name: {version: Servable}}) on ``host:port`` (0: any free port)."""

    def __init__(self, models: dict, host: str = "127.0.0.1", port: int = 8501,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, idle_timeout: float = 60.0,
                 access_log: bool = False):
        self.models = models
        self.max_request_bytes = int(max_request_bytes)
        self.idle_timeout = idle_timeout
        self.access_log = access_log
        self._lock = threading.Condition()
        self._idle: set = set()            # handlers waiting for their next request
        self._in_flight = 0
        self._stopping = False
        self._thread = None
        server_cls = _Server6 if ":" in host else _Server
        self.httpd = server_cls((host, port), _Handler)
        self.httpd.app = self

    @property
    def host(self) -> str:
        return self.httpd.server_address[0]

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self):
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="kiln-serve-accept", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        """Graceful stop: no new requests; those already read finish. True when every
        request in flight finished within ``timeout`` seconds."""
        with self._lock:
            self._stopping = True
            idle = list(self._idle)
        if self._thread is not None:
            self.httpd.shutdown()
        self.httpd.server_close()
        for h in idle:                     # a handler blocked reading its next request
            try:
                h.connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        batchers = [s.batcher for versions in self.models.values() for s in versions.values()
                    if s.batcher is not None]
        for b in batchers:                 # queued requests run now, not at their deadline
            b.close()
        with self._lock:
            drained = self._lock.wait_for(lambda: self._in_flight == 0, timeout)
        for b in batchers:
            b.join(timeout)
        return drained

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- connection states (for the graceful stop) --------------------------------------
    def _wait_request(self, h) -> bool:
        with self._lock:
            if self._stopping:
                return False
            self._idle.add(h)
            return True

    def _begin_request(self, h):
        with self._lock:
            self._idle.discard(h)
            self._in_flight += 1

    def _end_request(self, h):
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    def _forget(self, h):
        with self._lock:
            self._idle.discard(h)

    # -- the API ------------------------------------------------------------------------
    def handle(self, method: str, path: str, body: bytes) -> tuple:
        """``(HTTP status, response body)`` for one request."""
        try:
            if not API_RE.fullmatch(path):
                return 404, error_body(f"Not found: {method} {path} (the API is under /v1/)")
            return 200, self._route(method, path, body)
        except ServingError as e:
            return e.http_status, e.body()
        except RecursionError:
            return 400, error_body("The request is nested too deeply")
        except Exception as e:                        # noqa: BLE001 - a bug in kiln: 500
            traceback.print_exc(file=sys.stderr)
            return 500, error_body(f"Internal error: {type(e).__name__}: {e}")

    def _route(self, method: str, path: str, body: bytes) -> bytes:
        if method == "POST":
            m = PREDICT_RE.fullmatch(path)
            if m:
                name, version_s, label, verb = m.groups()
                name = unquote(name)
                version = _version(version_s)
                label = unquote(label) if label is not None else None
                if verb == "predict":
                    return self._predict(name, version, label, body)
                if verb in ("classify", "regress"):
                    return self._classify_regress(name, version, label, verb, body)
        elif method == "GET":
            m = STATUS_RE.fullmatch(path)
            if m:
                name, version_s, label, sub = m.groups()
                name = unquote(name) if name is not None else ""
                version = _version(version_s)
                label = unquote(label) if label is not None else None
                if sub == "metadata":
                    return self._metadata(name, version, label)
                return self._status(name, version, label)
        raise invalid(f"Malformed request: {method} {path}")

    def _servable(self, name: str, version: int | None, label: str | None):
        if label is not None:
            raise invalid(f"Unrecognized servable version label: {label}")
        versions = self.models.get(name)
        if not versions or (version is not None and version not in versions):
            what = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise not_found(f"Servable not found for request: {what}")
        return versions[max(versions) if version is None else version]

    def _predict(self, name, version, label, body: bytes) -> bytes:
        doc = parse_json(body)
        sig = signature_name(doc)
        servable = self._servable(name, version, label)
        if sig not in ("", SIGNATURE):
            raise invalid(f'Serving signature name: "{sig}" not found in signature def')
        if not servable.specs:
            raise invalid(f"Failed to get input map for signature: {sig or 'DEFAULT'}")
        fmt, tensors = request_tensors(doc, servable.specs)
        outputs = servable.predict(servable.prepare(tensors))
        return predict_response(fmt, servable.output_names, outputs)

    def _classify_regress(self, name, version, label, verb, body: bytes) -> bytes:
        signature_name(parse_json(body))
        self._servable(name, version, label)
        what = "classification" if verb == "classify" else "regression"
        raise invalid(f"Expected {what} signature method_name to be tensorflow/serving/{verb}. "
                      f"Was: tensorflow/serving/predict")

    def _status(self, name, version, label) -> bytes:
        if not name:
            raise invalid("Missing model name in request.")
        if label is not None:
            raise invalid(f"Unrecognized servable version label: {label}")
        versions = self.models.get(name, {})
        if version is not None:
            if version not in versions:
                raise not_found(f"Could not find version {version} of model {name}")
            chosen = [versions[version]]
        else:
            if not versions:
                raise not_found(f"Could not find any versions of model {name}")
            chosen = [versions[v] for v in sorted(versions, reverse=True)]
        return _json({"model_version_status": [s.status_entry() for s in chosen]})

    def _metadata(self, name, version, label) -> bytes:
        if not name:
            raise invalid("Missing model name in request.")
        return _json(self._servable(name, version, label).metadata())


class _Server(ThreadingHTTPServer):
    daemon_threads = True          # idle keep-alive connections never hold the process
    block_on_close = False         # ModelServer.stop counts and waits for requests in flight
    request_queue_size = 128


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        import kiln                     # late: kiln/__init__ may still be importing us
        return f"kiln-serve/{getattr(kiln, '__version__', '0')}"

    def handle_expect_100(self):
        """Refuse an oversized body before the client sends it."""
        limit = self.server.app.max_request_bytes
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            self._too_large(int(length), limit, drain=0)
            return False
        return super().handle_expect_100()

    def setup(self):
        self.timeout = self.server.app.idle_timeout
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def finish(self):
        self.server.app._forget(self)
        try:
            super().finish()
        except OSError:
            pass

    def handle_one_request(self):
        app = self.server.app
        if not app._wait_request(self):
            self.close_connection = True
            return
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (TimeoutError, OSError):
            self.raw_requestline = b""
        if not self.raw_requestline:
            app._forget(self)
            self.close_connection = True
            return
        app._begin_request(self)
        try:
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.parse_request():
                return
            self._serve()
        except (TimeoutError, OSError):          # the client went away or stalled
            self.close_connection = True
        finally:
            app._end_request(self)

    def _serve(self):
        app = self.server.app
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        status, out = app.handle(self.command, path, body)
        self._reply(status, out)

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering (413, 400) or on a broken connection."""
        limit = self.server.app.max_request_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Invalid Content-Length: {length!r}")
            return None
        if n > limit:
            self._too_large(n, limit, drain=n)
            return None
        body = self.rfile.read(n)
        if len(body) < n:
            self.close_connection = True
            return None
        return body

    def _read_chunked(self, limit: int) -> bytes | None:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.send_error(HTTPStatus.BAD_REQUEST, "Invalid chunked transfer encoding")
                return None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass                          # trailer fields
                return b"".join(chunks)
            total += size
            if total > limit:
                self._too_large(total, limit, drain=0)
                return None
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                self.close_connection = True
                return None
            chunks.append(chunk)
            self.rfile.readline(65537)           # the CRLF after the chunk

    def _too_large(self, n: int, limit: int, drain: int):
        self.close_connection = True
        self._reply(413, error_body(f"Request body of {n} bytes exceeds the limit of {limit} bytes "
                                    f"(kiln serve --max-request-bytes)"))
        if 0 < drain <= _DRAIN_LIMIT:             # so that the client reads the answer
            try:
                self.connection.settimeout(2.0)
                while drain > 0:
                    got = self.rfile.read(min(drain, 1 << 16))
                    if not got:
                        break
                    drain -= len(got)
            except OSError:
                pass

    def _reply(self, status: int, body: bytes):
        app = self.server.app
        if app.stopping:
            self.close_connection = True
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Client Closed Request" if status == 499 else ""
        head = [f"{self.protocol_version} {status} {phrase}",
                f"Server: {self.version_string()}",
                f"Date: {self.date_time_string()}",
                "Content-Type: application/json",
                f"Content-Length: {len(body)}"]
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(data if self.command == "HEAD" else data + body)
        if app.access_log:
            self.log_request(status, len(body))

    def send_error(self, code, message=None, explain=None):
        """Protocol-level errors (from http.server too) as JSON, then close."""
        code = int(code)
        self.close_connection = True
        try:
            text = message or HTTPStatus(code).phrase
        except ValueError:
            text = message or "Error"
        self._reply(code, error_body(text))

    def log_message(self, format, *args):
        if self.server.app.access_log:
            super().log_message(format, *args)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve
