"""The lean extension runner runs generator hooks exactly as strawberry's own runner does:
the same order, and the same outcome when the operation or a hook raises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from strawberry.extensions import SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext

from schema.extension_runner import LeanExtensionsRunner

log: list[str] = []


class Outer(SchemaExtension):
    swallow = False

    def on_operation(self) -> Iterator[None]:
        log.append("outer enter")
        try:
            yield
        except ValueError as error:
            log.append(f"outer saw {error!r}")
            if not self.swallow:
                raise
        log.append("outer exit")

    def on_parse(self) -> Iterator[None]:
        log.append("outer parse")
        yield


class Inner(SchemaExtension):
    fail_on_exit = False

    def on_operation(self) -> Iterator[None]:
        log.append("inner enter")
        yield
        log.append("inner exit")
        if self.fail_on_exit:
            raise ValueError("inner failed")


async def run(runner_class: type[SchemaExtensionsRunner], scenario: str) -> list[str]:
    log.clear()
    outer, inner = Outer(), Inner()
    outer.swallow = scenario in ("swallowed", "inner fails, swallowed")
    inner.fail_on_exit = scenario.startswith("inner fails")
    context: Any = ExecutionContext.__new__(ExecutionContext)
    runner = runner_class(context, [outer, inner])
    try:
        async with runner.operation():
            async with runner.parsing():
                log.append("parsing")
            async with runner.executing():
                log.append("executing")
            if scenario in ("raises", "swallowed"):
                raise ValueError("operation failed")
    except ValueError as error:
        log.append(f"raised {error!r}")
    log.append("after")
    return list(log)


@pytest.mark.parametrize(
    "scenario", ["plain", "raises", "swallowed", "inner fails", "inner fails, swallowed"]
)
async def test_hooks_run_as_strawberry_runs_them(scenario: str) -> None:
    expected = await run(SchemaExtensionsRunner, scenario)
    assert await run(LeanExtensionsRunner, scenario) == expected
    assert expected[0] == "outer enter" and expected[-1] == "after"
