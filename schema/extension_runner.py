"""Extension hooks run without rebuilding them on every request.

For each phase of each operation (operation, parsing, validation, execution), strawberry's
runner asks every extension for its hook and wraps a generator hook in a new
`contextlib.contextmanager` (a decorator applied per call, `functools.wraps` included) inside
an `ExitStack`: about a tenth of a small mutation's CPU. Which hooks a class overrides never
changes, so `LeanExtensionsRunner` works that out once per extension class and drives the
generator hooks itself, as strawberry's managers do (hooks end in reverse order; an exception
is thrown into each, which may handle it, and still propagates). Phases with any other kind of
hook (async generators, plain functions) keep strawberry's own context managers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext

# Per tuple of extension classes and phase: which extensions (by position) have a generator
# hook for it, and the hook; None when one has a hook of another kind (strawberry's own context
# manager then runs the phase).
Plan = list[tuple[int, Callable[..., Any]]]
_plans: dict[tuple[tuple[type[SchemaExtension], ...], str], Plan | None] = {}


def _plan(classes: tuple[type[SchemaExtension], ...], phase: str) -> Plan | None:
    key = (classes, phase)
    if key in _plans:
        return _plans[key]
    default = getattr(SchemaExtension, phase)
    plan: Plan | None = []
    for position, cls in enumerate(classes):
        hook = getattr(cls, phase)
        if hook is default:
            continue
        if not inspect.isgeneratorfunction(hook):
            plan = None
            break
        assert plan is not None
        plan.append((position, hook))
    _plans[key] = plan
    return plan


def _end(generator: Generator[None, None, None], error: BaseException | None) -> bool:
    """Finish one hook as `contextlib.contextmanager` does; True: it handled `error`."""
    if error is None:
        try:
            next(generator)
        except StopIteration:
            return False
        raise RuntimeError("a SchemaExtension hook must yield only once")
    try:
        generator.throw(error)
    except StopIteration as stopped:
        return stopped is not error
    except BaseException as raised:
        if raised is error:
            return False
        raise
    raise RuntimeError("a SchemaExtension hook must not yield again after an exception")


class _GeneratorHooks:
    """One phase's generator hooks, entered in order and ended in reverse, as strawberry's
    `ExitStack` of `contextlib.contextmanager`s would."""

    __slots__ = ("_extensions", "_plan", "_running")

    def __init__(self, plan: Plan, extensions: list[SchemaExtension]) -> None:
        self._plan = plan
        self._extensions = extensions
        self._running: list[Generator[None, None, None]] = []

    def __enter__(self) -> None:
        for position, hook in self._plan:
            generator = hook(self._extensions[position])
            try:
                next(generator)
            except BaseException as error:  # the hooks already started end (strawberry's don't)
                if isinstance(error, StopIteration):
                    error = RuntimeError("a SchemaExtension hook must yield")
                self.__exit__(type(error), error, error.__traceback__)
                raise error
            self._running.append(generator)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pending = False
        while self._running:
            generator = self._running.pop()
            try:
                if _end(generator, exc):
                    exc, pending = None, False
            except BaseException as raised:
                exc, pending = raised, True
        if pending:
            assert exc is not None
            raise exc
        # Like strawberry's managers: a hook that handles the exception ends normally, and
        # the hooks around it see none, but the operation's exception still propagates.

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


class LeanExtensionsRunner(SchemaExtensionsRunner):
    def __init__(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension] | None = None
    ) -> None:
        super().__init__(execution_context, extensions)
        self._classes = tuple(type(extension) for extension in self.extensions)

    def _phase(self, phase: str, fallback: Callable[[], Any]) -> Any:
        plan = _plan(self._classes, phase)
        return fallback() if plan is None else _GeneratorHooks(plan, self.extensions)

    def operation(self) -> Any:
        return self._phase("on_operation", super().operation)

    def parsing(self) -> Any:
        return self._phase("on_parse", super().parsing)

    def validation(self) -> Any:
        return self._phase("on_validate", super().validation)

    def executing(self) -> Any:
        return self._phase("on_execute", super().executing)
