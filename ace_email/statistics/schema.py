"""The tables of the statistics database, as SQLAlchemy declarative models."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Dialect, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from ace_email.contracts.statistics import DETAIL_LIMIT, KEY_LIMIT


class UtcDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC on every database, read back as aware UTC."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """The statistics tables."""


class ContactEventRow(Base):
    """One event of one contact; the primary key makes a repeated record a no-op."""

    __tablename__ = "contact_events"

    contact_id: Mapped[str] = mapped_column(String(KEY_LIMIT), primary_key=True)
    event: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    account: Mapped[str] = mapped_column(String(KEY_LIMIT), default="")
    queue: Mapped[str] = mapped_column(String(KEY_LIMIT), default="")
    agent: Mapped[str] = mapped_column(String(KEY_LIMIT), default="")
    channel: Mapped[str] = mapped_column(String(16), default="email")
    detail: Mapped[str] = mapped_column(String(DETAIL_LIMIT), default="")
    sender: Mapped[str | None] = mapped_column(String(320), nullable=True)

    __table_args__ = (Index("ix_contact_events_at", "at"),)
