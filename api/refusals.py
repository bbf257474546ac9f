"""A JSON GraphQL error as raw ASGI messages, for the wrappers that answer before the app runs
(api.admission, api.body_limit): built once, sent as it is."""

from __future__ import annotations

import orjson
from starlette.types import Message


def refusal(status: int, message: str, code: str, **headers: str) -> tuple[Message, Message]:
    """`{"errors": [{"message", "extensions": {"code"}}]}` with `status` and `headers`."""
    body = orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}
