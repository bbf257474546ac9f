"""The benchmark's webhook receiver, in a process of its own: a bare asyncio HTTP/1.1 server
(keep-alive, Content-Length bodies) that answers 204 at once and notes when each request
arrived, except on paths starting with /dead, where it never answers (an endpoint that
accepts connections and times out).

    python -m bench.webhook_receiver --port 9100

`GET /stats` returns what arrived: {"path": [[webhook-id, order reference or null, unix time],
...]}; `POST /reset` forgets it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import orjson

Arrival = tuple[str, str | None, float]


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, list[Arrival]] = {}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                at = time.time()
                lines = head.split(b"\r\n")
                _method, path, _ = lines[0].split(b" ", 2)
                length, message_id = 0, ""
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"webhook-id":
                        message_id = value.strip().decode()
                body = await reader.readexactly(length) if length else b""
                if path == b"/stats":
                    self.answer(writer, 200, orjson.dumps(self.arrived))
                elif path == b"/reset":
                    self.arrived = {}
                    self.answer(writer, 204)
                else:
                    self.arrived.setdefault(path.decode(), []).append(
                        (message_id, reference(body), at)
                    )
                    if path.startswith(b"/dead"):
                        await asyncio.sleep(3600)
                        return
                    self.answer(writer, 204)
                await writer.drain()
        writer.close()

    @staticmethod
    def answer(writer: asyncio.StreamWriter, status: int, body: bytes = b"") -> None:
        writer.write(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body))


def reference(body: bytes) -> str | None:
    """The benchmark's key: a points.earned's order id, or a member.updated's changed field."""
    try:
        data = orjson.loads(body)["data"]
        found = data["changed"][0] if "changed" in data else data["transaction"]["reference"]
    except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
        return None
    return str(found) if found is not None else None


async def main(port: int) -> None:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", port, backlog=1024)
    print(f"listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(parser.parse_args().port))
