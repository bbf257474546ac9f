"""Documents run from a plan instead of graphql-core's executor (see `operations`)."""

from schema.compiled.operations import (
    CompiledOperation,
    CompiledOperations,
    OperationObserver,
    ReadView,
)

__all__ = ["CompiledOperation", "CompiledOperations", "OperationObserver", "ReadView"]
