"""API keys (stored only as hashes) for service, partner and admin callers."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, UtcDateTime


class KeyRole(enum.StrEnum):
    SERVICE = "service"
    PARTNER = "partner"
    ADMIN = "admin"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[KeyRole] = mapped_column(Enum(KeyRole, native_enum=False, length=10))
    # SHA-256 of the key: keys are 256-bit random, so a fast hash is enough and lookups stay O(1).
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    partner_slug: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Refreshed at most once a minute per process (services.access.LAST_USED_RESOLUTION).
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
