"""Moving a program in from another platform: members, balances and tiers from a CSV file.

`rows` reads the file (formats, headers, values, line numbers), `plan` decides what each row
changes with the ledger's own rules, `writers` persist a batch's rows, and `members` runs an
import batch by batch.
"""
