"""The schema's SDL, committed as `schema.graphql`: `python -m schema.export > schema.graphql`."""

from __future__ import annotations

from schema.schema import build_schema


def schema_sdl() -> str:
    """The live schema's SDL, with a trailing newline: the same text on every run."""
    return build_schema().as_str() + "\n"


if __name__ == "__main__":
    print(schema_sdl(), end="")
