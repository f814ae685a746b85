"""The statistics store on a real PostgreSQL (Debian's, a throwaway cluster on loopback): the
known scenario gives the same exact figures as on SQLite, recording is idempotent, and
migrating again changes nothing. Skipped without PostgreSQL unless POSTGRES_REQUIRED is set."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from ace_email.statistics.store import StatisticsStore, migrate
from devtools import postgres
from tests.statistics_scenario import EXPECTED, NOW, PROMISES, SCENARIO, SINCE, UNTIL

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    reason = postgres.unavailable_reason()
    if reason is not None:
        if os.environ.get("POSTGRES_REQUIRED"):
            pytest.fail(f"PostgreSQL is required: {reason}")
        pytest.skip(reason)
    with postgres.cluster() as url:
        migrate(url)
        yield url


@pytest.fixture
def store(database: str) -> Iterator[StatisticsStore]:
    store = StatisticsStore(database, store_addresses=True)
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM contact_events"))
    yield store
    store.close()


def _dumped(store: StatisticsStore) -> dict[str, list[dict[str, object]]]:
    report = store.figures(SINCE, UNTIL, PROMISES, now=NOW)
    return {name: [row.model_dump() for row in rows] for name, rows in report.sections().items()}


def test_a_known_day_gives_the_same_figures_as_on_sqlite(store: StatisticsStore) -> None:
    assert store.record(SCENARIO) == len(SCENARIO)
    assert _dumped(store) == EXPECTED


def test_recording_twice_and_from_two_threads_counts_once(store: StatisticsStore) -> None:
    inserted: list[int] = []
    barrier = threading.Barrier(2)

    def record() -> None:
        own = StatisticsStore(store.url)
        barrier.wait()
        for event in SCENARIO:
            inserted.append(own.record([event]))
        own.close()

    threads = [threading.Thread(target=record) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(inserted) == len(SCENARIO)
    assert store.record(SCENARIO) == 0
    assert _dumped(store) == EXPECTED


def test_migrating_again_is_a_no_op(store: StatisticsStore) -> None:
    store.record(SCENARIO)
    migrate(store.url)
    migrate(store.url)
    with store.engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    assert versions == [("0001",)]
    assert _dumped(store) == EXPECTED
