"""Flat inputs are built in one step with the values strawberry's conversion would give."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

import pytest
import strawberry

from schema.flat_inputs import flat_input
from schema.scalars import DateTime
from schema.schema import CachedNames


@flat_input
@strawberry.input
class Flat:
    order_id: str
    amount: float
    member_id: strawberry.ID | None = None
    occurred_at: datetime | None = None


received: list[Flat] = []


@strawberry.type
class Query:
    @strawberry.field
    def take(self, input: Flat) -> str:
        received.append(input)
        return input.order_id


schema = strawberry.Schema(
    query=Query,
    config=strawberry.schema.config.StrawberryConfig(
        name_converter=CachedNames(), scalar_map={datetime: DateTime}
    ),
)


async def test_given_variables_and_literals_then_the_input_holds_the_coerced_values() -> None:
    received.clear()
    document = "query($input: Flat!) { take(input: $input) }"
    variables = {"input": {"orderId": "o-1", "amount": 5, "occurredAt": "2026-01-05T12:00:00Z"}}
    result = await schema.execute(document, variable_values=variables)
    assert result.errors is None and result.data == {"take": "o-1"}
    literal = await schema.execute('{ take(input: {orderId: "o-2", amount: 1.5, memberId: 7}) }')
    assert literal.errors is None
    first, second = received
    assert (first.order_id, first.amount, first.member_id) == ("o-1", 5.0, None)
    assert first.occurred_at == datetime(2026, 1, 5, 12, tzinfo=UTC)
    assert (second.order_id, second.amount, second.member_id, second.occurred_at) == (
        "o-2",
        1.5,
        "7",
        None,
    )


def test_an_input_with_a_field_that_is_not_a_plain_scalar_is_refused() -> None:
    @strawberry.enum
    class Kind(enum.Enum):
        A = "A"

    @strawberry.input
    class WithEnum:
        kind: Kind

    with pytest.raises(TypeError, match=r"WithEnum\.kind"):
        flat_input(WithEnum)
