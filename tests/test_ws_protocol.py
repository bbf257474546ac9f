"""The pieces `api.ws_protocol` puts in uvicorn's WebSocket protocol (the protocol itself
serves every test under tests/live, over real sockets)."""

from __future__ import annotations

import asyncio

import pytest

from api.ws_protocol import _Gate, _Inbox


async def test_the_inbox_hands_messages_over_in_order_and_waits_for_the_next() -> None:
    inbox = _Inbox()
    inbox.put_nowait({"type": "websocket.connect"})
    inbox.put_nowait({"type": "websocket.receive", "text": "1"})
    assert not inbox.empty()
    assert (await inbox.get())["type"] == "websocket.connect"
    assert await inbox.get() == {"type": "websocket.receive", "text": "1"}
    assert inbox.empty()
    with pytest.raises(TimeoutError):  # a cancelled wait leaves it usable
        await asyncio.wait_for(inbox.get(), timeout=0.05)
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
    assert (await asyncio.wait_for(waiting, timeout=1))["type"] == "websocket.disconnect"


async def test_the_gate_holds_writers_while_paused_and_releases_them_all() -> None:
    gate = _Gate()
    await asyncio.wait_for(gate.wait(), timeout=1)  # open: at once
    gate.clear()
    writers = [asyncio.create_task(gate.wait()) for _ in range(3)]
    cancelled = asyncio.create_task(gate.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    assert not any(w.done() for w in writers)
    gate.set()
    await asyncio.wait_for(asyncio.gather(*writers), timeout=1)
    assert gate.is_set()
