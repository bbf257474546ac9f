"""What every process must refuse from the next request on: erased members' tokens, and API
keys that were revoked (or whose partner was deactivated or renamed) since they were cached.

A change is announced over the bus (`LocalBus.broadcast`; over Redis, every process hears it
before the announcing request returns). Each process also looks in the database now and then
(`catch_up`, every LAUREL_API_KEY_CACHE_SECONDS), so a process that missed an announcement
(Redis down or frozen, or not configured with several processes) catches up within that
interval, whatever Redis does: the database, not the bus, is what makes a revocation hold.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Member

KEYS_CHANGED = "keys"
_ERASED = "erased:"
# Erasures are read again this far behind the newest one seen: an erasure stamped earlier
# may commit later (another process's transaction, or its clock a little behind), and must
# not fall behind the mark. Reading one again changes nothing.
CATCH_UP_OVERLAP = timedelta(minutes=10)


def member_erased_message(member_id: int) -> str:
    return f"{_ERASED}{member_id}"


class Revocations:
    """This process's view: the erased members, and listeners told when keys changed."""

    def __init__(self) -> None:
        self._erased: set[int] = set()
        self._keys_listeners: list[Callable[[], None]] = []
        self._erased_listeners: list[Callable[[int], None]] = []
        self.erased_seen_until: datetime | None = None  # the newest erasure read from the db

    def is_erased(self, member_id: int) -> bool:
        return member_id in self._erased

    def on_keys_changed(self, listener: Callable[[], None]) -> None:
        self._keys_listeners.append(listener)

    def on_member_erased(self, listener: Callable[[int], None]) -> None:
        self._erased_listeners.append(listener)

    def member_erased(self, member_id: int) -> None:
        if member_id in self._erased:
            return
        self._erased.add(member_id)
        for listener in self._erased_listeners:
            listener(member_id)

    def keys_changed(self) -> None:
        for listener in self._keys_listeners:
            listener()

    def apply(self, message: str) -> None:
        """A broadcast from this or another process (see `LocalBus.broadcast`)."""
        if message == KEYS_CHANGED:
            self.keys_changed()
        elif message.startswith(_ERASED) and message[len(_ERASED) :].isdigit():
            self.member_erased(int(message[len(_ERASED) :]))

    async def catch_up(self, session: AsyncSession) -> None:
        """Read the erasures this process has not seen (all of them the first time), and
        forget cached keys: what a missed announcement would have said."""
        stmt = select(Member.id, Member.erased_at).where(Member.erased_at.is_not(None))
        if self.erased_seen_until is not None:
            stmt = stmt.where(Member.erased_at >= self.erased_seen_until - CATCH_UP_OVERLAP)
        for member_id, erased_at in await session.execute(stmt):
            self.member_erased(member_id)
            if self.erased_seen_until is None or erased_at > self.erased_seen_until:
                self.erased_seen_until = erased_at
        self.keys_changed()
