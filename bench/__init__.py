"""Load benchmark of Laurel against a raw Starlette + asyncpg baseline (see bench/README.md)."""
