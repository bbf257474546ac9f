"""`programTimeline`: the window and its buckets, checked before any figure is read."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from schema.context import Info
from schema.exceptions import BadUserInput
from schema.types.timeline import ProgramTimeline
from services import timeline
from services.errors import DomainError
from services.timeline import Interval


def program_timeline(
    info: Info,
    from_: Annotated[datetime, strawberry.argument(name="from")],
    to: datetime,
    interval: Interval = Interval.DAY,
) -> ProgramTimeline:
    try:
        cut = timeline.buckets(from_, to, interval)
    except DomainError as error:  # an empty or reversed window, too many buckets
        raise BadUserInput(error.message) from error
    return ProgramTimeline(from_=cut[0].start, to=cut[-1].end, interval=interval, cut=cut)
