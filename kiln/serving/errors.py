"""Errors as TensorFlow Serving reports them: a canonical code and a message.

The HTTP status comes from the code (``http_server.cc``'s ``ToHTTPStatusCode``), and
the body is ``{ "error": "<message>" }``. A client mistake is always a 4xx: every
check that can fail because of a request raises a ``ServingError`` with a 4xx code,
and only a bug in kiln itself answers 500.
"""
from __future__ import annotations

import json

HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class ServingError(Exception):
    """A request that cannot be answered: ``code`` is a canonical status code name."""

    def __init__(self, code: str, message: str, http_status: int | None = None):
        super().__init__(message)
        assert code in HTTP_STATUS, code
        self.code = code
        self.message = message
        self.http_status = http_status or HTTP_STATUS[code]

    def status_string(self) -> str:
        """What ``absl::Status::ToString()`` prints (used when TF Serving nests an error)."""
        return f"{self.code}: {self.message}"

    def body(self) -> bytes:
        return error_body(self.message)


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def error_body(message: str) -> bytes:
    # TF Serving writes '{ "error": "' + CEscape(message) + '" }'. CEscape turns ' into \'
    # which is not valid JSON, so the message is escaped the JSON way instead: every JSON
    # parser reads back the same text.
    return ('{ "error": ' + json.dumps(message, ensure_ascii=False) + " }").encode()
