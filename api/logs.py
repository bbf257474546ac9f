"""JSON logs, each line with the id of the request it was written for (issue 15, item 5).

* `RequestIds`, the outermost ASGI wrapper: a request's id is its `X-Request-ID` when that is
  well-formed (a proxy's or client's id, so one id follows a request through every hop), else
  a new one (this process's random prefix and a counter); it is set for the request's task
  (every line logged while serving it carries it) and sent back in an `X-Request-ID` header
  on every HTTP response, refusals by the inner wrappers (413, 503) included; with
  `access_log`, one line per HTTP request (method, path, status, milliseconds), never its
  headers, query string or body.
* `JsonFormatter`: one JSON object per line (time, level, logger, message, request_id, and
  the exception); anything that looks like a credential (a bearer token, a JWT, a Laurel API
  key) is replaced by `[REDACTED]` in the message, the exception and the extra fields,
  whoever logged it.
* `logging_config()`: the `logging.config.dictConfig` that `laurel serve` gives uvicorn, so
  every worker process (and uvicorn's own messages) logs this way.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "RequestIdFilter",
    "RequestIds",
    "current_request_id",
    "json_handler",
    "logging_config",
]

REQUEST_ID_HEADER: Final = "x-request-id"
_HEADER_BYTES: Final = REQUEST_ID_HEADER.encode()
# A proxy's id (UUIDs, AWS's "Root=1-...", hex, base64url): printable, no spaces or quotes,
# short. Anything else is replaced (it would go into every log line and header).
_WELL_FORMED: Final = re.compile(rb"[A-Za-z0-9._:=+/-]{1,128}")

_request_id: ContextVar[str | None] = ContextVar("laurel_request_id", default=None)

access_log: Final = logging.getLogger("laurel.access")

# What a credential looks like wherever it is written: an Authorization value, a JWT (three
# base64url parts, the first a JSON header, "eyJ"), a Laurel API key (lrl_<role>_<id>_<secret>).
_SECRETS: Final = re.compile(
    r"(?i:\b(?:bearer|basic)\s+)[^\s\"'\\,;]+"
    r"|\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|\blrl_[a-z]+_[A-Za-z0-9_-]+"
)
REDACTED: Final = "[REDACTED]"


def current_request_id() -> str | None:
    """The id of the HTTP request being served in this task (None outside one)."""
    return _request_id.get()


def redact(text: str) -> str:
    return _SECRETS.sub(REDACTED, text)


# A new request id: this process's random prefix and a counter, 32 hex digits. Unique, not
# secret (it only ties log lines together), so no system call for random bytes per request
# (`secrets.token_hex` was ~1% of a cheap request's CPU). A forked child draws its own prefix.
_process_prefix = secrets.token_hex(8)
_requests = itertools.count(1)


def _new_process() -> None:
    global _process_prefix, _requests
    _process_prefix, _requests = secrets.token_hex(8), itertools.count(1)


os.register_at_fork(after_in_child=_new_process)


def _new_request_id() -> str:
    return f"{_process_prefix}{next(_requests):016x}"


class RequestIds:
    """Gives each HTTP request an id (see the module doc); WebSockets and lifespan pass."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == _HEADER_BYTES:
                if _WELL_FORMED.fullmatch(value):
                    request_id = value.decode("ascii")
                break
        if request_id is None:
            request_id = _new_request_id()
        header = (_HEADER_BYTES, request_id.encode("ascii"))
        token = _request_id.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access_log and access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d",
                    scope.get("method", ""),
                    scope.get("path", ""),
                    status,
                    extra={"duration_ms": round((time.perf_counter() - started) * 1000, 2)},
                )
            _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id of the task that logs it (at emit time: a
    formatter may run later, elsewhere)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


# LogRecord's own attributes: everything else on a record came in `extra=` and is written.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's message again, with terminal colours
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, credentials redacted (module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(line, default=str).decode()


def json_handler(stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing JSON lines (stderr by default), each with its request id."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """Every logger, uvicorn's included, through one JSON handler on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"json": {"()": json_handler}},
        "root": {"handlers": ["json"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
        },
    }
