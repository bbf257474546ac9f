"""The points ledger: append-only entries, lots, idempotent earning, spending and reversal."""
