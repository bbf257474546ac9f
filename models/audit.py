"""The audit trail: who changed what, when, written in the transaction of the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, UtcDateTime


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_target_id_id", "target_id", "id"),
        Index("ix_audit_entries_actor_key_id_id", "actor_key_id", "id"),
        Index("ix_audit_entries_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The API key that made the change, as it was then (null: the command-line tool). No
    # foreign key: the trail outlives whatever it names.
    actor_key_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_name: Mapped[str | None] = mapped_column(String(200))
    actor_role: Mapped[str | None] = mapped_column(String(10))
    # The mutation's field name ("adjustPoints") or the CLI command ("import members").
    operation: Mapped[str] = mapped_column(String(100))
    # The global ID of the object changed.
    target_id: Mapped[str | None] = mapped_column(String(100))
    # The changed fields under their GraphQL names, personal data masked.
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
