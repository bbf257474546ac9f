"""Inputs built straight from their GraphQL value, for the mutations sent by the thousand.

Strawberry converts every argument field by field, resolving each field's type and name again
on every request (about a tenth of a `recordPurchase`'s CPU). An input made only of scalars
(str, int, float, bool, ID, datetime, date) needs none of that: graphql-core has already
coerced the values, so `flat_input` gives the type a `from_input` hook (strawberry's hook
for types that build themselves) that passes them to the class under their Python names.
A list of another flat input (recordPurchase's `lines`) is built the same way, item by item.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, TypeVar

import strawberry
from strawberry.types.arguments import InputContext
from strawberry.types.base import StrawberryList, StrawberryOptional, get_object_definition

T = TypeVar("T", bound=type)

_SCALARS: tuple[object, ...] = (str, int, float, bool, strawberry.ID, datetime, date)


def flat_input(cls: T) -> T:
    """Mark a `@strawberry.input` made only of scalar fields to be built in one step."""
    definition = get_object_definition(cls, strict=True)
    assert definition.is_input, f"{cls.__name__} is not an input"
    # Fields holding a list of flat inputs: python name -> the item type.
    nested: dict[str, type] = {}
    for field in definition.fields:
        kind = field.type
        if isinstance(kind, StrawberryOptional):
            kind = kind.of_type
        if isinstance(kind, StrawberryList) and _is_flat(kind.of_type):
            assert isinstance(kind.of_type, type)
            nested[field.python_name] = kind.of_type
        elif kind not in _SCALARS:
            raise TypeError(f"{cls.__name__}.{field.python_name} is not a plain scalar")
    names: list[tuple[str, str]] = []

    def build(target: type, value: Mapping[str, Any], context: InputContext) -> Any:
        if not names:  # GraphQL names as the schema's name converter gives them
            converter = context.config.name_converter
            names.extend((converter.from_field(f), f.python_name) for f in definition.fields)
        built = {python: value[name] for name, python in names if name in value}
        for python, item_type in nested.items():
            items = built.get(python)
            if items is not None:
                item_build = get_object_definition(item_type, strict=True).from_input
                assert item_build is not None
                built[python] = [item_build(item_type, item, context) for item in items]
        return target(**built)

    definition.from_input = build
    return cls


def _is_flat(kind: object) -> bool:
    definition = get_object_definition(kind) if isinstance(kind, type) else None
    return definition is not None and definition.is_input and definition.from_input is not None
