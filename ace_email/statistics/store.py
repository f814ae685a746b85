"""The statistics database: migrations, idempotent recording of events, and the figures.

SQLite and PostgreSQL alike: `postgresql://` URLs use psycopg 3. Recording an event twice (an
activity retried) inserts nothing the second time, by its key, whatever the interleaving.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import alembic.command
import alembic.config
from sqlalchemy import Engine, create_engine, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased

from ace_email.contracts.statistics import StatEvent, StatEventKind
from ace_email.statistics.report import StatsReport, compute
from ace_email.statistics.schema import ContactEventRow

MIGRATIONS = Path(__file__).parent / "migrations"
OPEN_ENDING = (StatEventKind.CLOSED.value, StatEventKind.JOINED.value)


class StatisticsUnavailable(Exception):
    """The database cannot be reached or holds no statistics tables; the message says which."""


def engine_url(url: str) -> str:
    """The URL SQLAlchemy opens: plain `postgresql://` means psycopg 3."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(engine_url(url)).render_as_string(hide_password=True)


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite database; None for another database or one in memory."""
    parsed = make_url(engine_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database or "")


def open_engine(url: str) -> Engine:
    """An engine for the URL."""
    parsed = make_url(engine_url(url))
    connect_args = {"timeout": 30} if parsed.get_backend_name() == "sqlite" else {}
    return create_engine(parsed, connect_args=connect_args)


def migrate(url: str) -> None:
    """Bring the database's schema to the newest revision; a no-op when it is there. An SQLite
    database is created, with its folder, if missing."""
    if (path := sqlite_file(url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = open_engine(url)
    config = alembic.config.Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            alembic.command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise StatisticsUnavailable(f"{shown_url(url)}: cannot migrate: {_reason(exc)}") from exc
    finally:
        engine.dispose()


def _reason(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class StatisticsStore:
    """Events in, figures out, on one database."""

    def __init__(self, url: str, *, store_addresses: bool = False) -> None:
        self.url = url
        self.store_addresses = store_addresses
        self.engine = open_engine(url)

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def record(self, events: Sequence[StatEvent]) -> int:
        """Insert the events not yet recorded; returns how many were new."""
        if not events:
            return 0
        self._present()
        rows = [
            {
                **event.model_dump(mode="python", exclude={"event", "channel", "sender"}),
                "event": event.event.value,
                "channel": event.channel.value,
                "sender": event.sender if self.store_addresses else None,
            }
            for event in events
        ]
        dialect = self.engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            insert(ContactEventRow)
            .on_conflict_do_nothing(index_elements=["contact_id", "event", "seq"])
            .returning(ContactEventRow.contact_id)
        )
        try:
            with self.engine.begin() as connection:
                inserted = len(connection.execute(statement, rows).all())
        except SQLAlchemyError as exc:
            raise StatisticsUnavailable(self._fault(exc)) from exc
        return inserted

    def figures(
        self,
        since: datetime,
        until: datetime,
        promises: Mapping[str, float],
        now: datetime | None = None,
    ) -> StatsReport:
        """The figures of [since, until); `promises` maps a queue to answer_within_minutes."""
        now = now or datetime.now(UTC)
        self._present()
        try:
            events = list(self._events(since, until))
        except SQLAlchemyError as exc:
            raise StatisticsUnavailable(self._fault(exc)) from exc
        return compute(events, since, until, promises, horizon=min(now, until))

    def _events(self, since: datetime, until: datetime) -> Iterator[StatEvent]:
        """Every event of the contacts with an event in the window or still open and queued."""
        events = ContactEventRow
        windowed, queued, ending = (aliased(ContactEventRow) for _ in range(3))
        in_window = select(windowed.contact_id).where(windowed.at >= since, windowed.at < until)
        ended = select(ending.contact_id).where(
            ending.contact_id == queued.contact_id, ending.event.in_(OPEN_ENDING)
        )
        queued_open = select(queued.contact_id).where(
            queued.event == StatEventKind.QUEUED.value, ~exists(ended)
        )
        query = select(events.__table__).where(
            events.contact_id.in_(in_window) | events.contact_id.in_(queued_open)
        )
        with self.engine.connect() as connection:
            for row in connection.execute(query).mappings():
                yield StatEvent.model_validate(dict(row))

    def _present(self) -> None:
        """Refuse to create an SQLite file by reading or recording: only migrate() does."""
        path = sqlite_file(self.url)
        if path is not None and not path.exists():
            raise StatisticsUnavailable(f"{shown_url(self.url)}: no such database file")

    def _fault(self, exc: SQLAlchemyError) -> str:
        where = shown_url(self.url)
        try:
            with self.engine.connect() as connection:
                migrated = self.engine.dialect.has_table(connection, ContactEventRow.__tablename__)
        except SQLAlchemyError:
            return f"{where}: cannot reach the statistics database: {_reason(exc)}"
        if not migrated:
            return f"{where}: no statistics tables: the database has not been migrated"
        return f"{where}: {_reason(exc)}"
