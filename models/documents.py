"""Trusted documents: the GraphQL documents member apps may run when only registered ones are
allowed (LAUREL_TRUSTED_DOCUMENTS), by the SHA-256 of their exact text."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UtcDateTime


class TrustedDocument(Base):
    __tablename__ = "trusted_documents"

    # Lowercase hex SHA-256 of `body`: the id clients send (`documentId: "sha256:<hex>"`, or
    # as an automatic persisted query's hash). A document never changes under its hash.
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    # The first operation's name, for `laurel documents list` (None: anonymous).
    operation_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
