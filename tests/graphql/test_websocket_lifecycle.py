"""A WebSocket's resources end with it."""

from __future__ import annotations

import asyncio

from services import members
from tests.conftest import Api
from tests.graphql.test_limits_and_errors import WebSocketSession


async def test_a_closed_socket_leaves_no_timer_behind(api: Api) -> None:
    async with api.sessions.begin() as session:
        ann = await members.enroll(
            session, email="ann@example.com", display_name="Ann", now=api.clock.now()
        )
    token = api.member_token(ann.id)

    def timers() -> int:
        return len(api.app.state.token_expiries)

    before = timers()
    async with WebSocketSession(api.app, ["graphql-transport-ws"]) as socket:
        assert (await socket.event())["type"] == "websocket.accept"
        await socket.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        )
        assert (await socket.receive())["type"] == "connection_ack"
        assert timers() == before + 1  # the token's expiry is watched while it is open
    await asyncio.sleep(0)
    assert timers() == before  # and no longer once it closed
