"""The hot writes' common case on PostgreSQL, in a few statements straight on asyncpg.

`recordPurchase` and `redeemReward` are the writes clients send by the thousand. Their general
paths (`services.ledger.purchases`, `services.redemptions`, on the ORM) handle every case, at
7-12 statements and 3-7 ms of CPU each, most of it SQLAlchemy's unit of work. When nothing
but the write itself is due, the direct paths here do the same work on a connection from
SQLAlchemy's pool, computing every figure with the functions the general paths use: a purchase
as one unlocked read and one guarded write (two round trips, no transaction around them), a
redemption in three statements in a transaction. In any other case they write nothing and
return None, and the caller runs the general path, which writes the same rows (tests compare
both). SQLite has only the general paths.
"""
