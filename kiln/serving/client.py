"""A small client for TF Serving's REST API (kiln serve, or TF Serving itself).

    c = Client("http://127.0.0.1:8501", "mlp")
    c.predict(instances=x)          # -> numpy array (or {name: array} for several outputs)
    c.status(); c.metadata()

Standard library only; one keep-alive connection per thread. Errors raise
``ClientError`` with the HTTP status and the server's message.
"""
from __future__ import annotations

import http.client
import json
import threading
from urllib.parse import quote, urlsplit

import numpy as np


class ClientError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _arrays(x):
    if isinstance(x, dict):
        return {k: np.asarray(v) for k, v in x.items()}
    if isinstance(x, list) and x and isinstance(x[0], dict):
        return {k: np.asarray([row[k] for row in x]) for k in x[0]}
    return np.asarray(x)


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8501", model: str | None = None,
                 timeout: float = 30.0):
        u = urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"expected an http://HOST:PORT url, got {url!r}")
        self.host, self.port = u.hostname, u.port or 80
        self.model = model
        self.timeout = timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = http.client.HTTPConnection(self.host, self.port,
                                                              timeout=self.timeout)
        return c

    def request(self, method: str, path: str, doc=None) -> tuple:
        """``(status, decoded JSON body)``; reconnects once if a kept-alive connection
        was closed by the server."""
        body = None if doc is None else json.dumps(doc).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            c = self._conn()
            try:
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
                    self._local.conn = None
                return r.status, json.loads(data) if data else None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                c.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _path(self, name, version, suffix="") -> str:
        name = name or self.model
        if not name:
            raise ValueError("no model name: give Client(..., model=NAME) or name=")
        path = f"/v1/models/{quote(name, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        return path + suffix

    def _checked(self, status, doc):
        if status != 200:
            message = doc.get("error", "") if isinstance(doc, dict) else str(doc)
            raise ClientError(status, message)
        return doc

    def predict(self, instances=None, inputs=None, name=None, version=None,
                signature_name=None, raw=False):
        """Row format (``instances``) or columnar format (``inputs``); returns numpy
        arrays (a dict of them for several outputs), or the JSON when ``raw``."""
        if (instances is None) == (inputs is None):
            raise ValueError("give exactly one of instances= or inputs=")
        doc = {"instances": _jsonable(instances)} if instances is not None \
            else {"inputs": _jsonable(inputs)}
        if signature_name is not None:
            doc["signature_name"] = signature_name
        out = self._checked(*self.request("POST", self._path(name, version, ":predict"), doc))
        if raw:
            return out
        return _arrays(out["predictions"] if instances is not None else out["outputs"])

    def status(self, name=None, version=None) -> dict:
        return self._checked(*self.request("GET", self._path(name, version)))

    def metadata(self, name=None, version=None) -> dict:
        return self._checked(*self.request("GET", self._path(name, version, "/metadata")))

    def close(self):
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None
