"""The statistics store on SQLite: exact figures after a known scenario, idempotent recording
(twice, and from two threads at once), no addresses unless asked, and its configuration."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ace_email.config.base import ConfigError
from ace_email.config.settings import load_settings
from ace_email.config.statistics import StatisticsSettings
from ace_email.statistics.report import percentile
from ace_email.statistics.store import StatisticsStore, StatisticsUnavailable, migrate
from tests.statistics_scenario import EXPECTED, NOW, PROMISES, SCENARIO, SINCE, UNTIL


def _store(path: Path, store_addresses: bool = False) -> StatisticsStore:
    url = f"sqlite:///{path / 'statistics.sqlite3'}"
    migrate(url)
    return StatisticsStore(url, store_addresses=store_addresses)


def _dumped(store: StatisticsStore) -> dict[str, list[dict[str, object]]]:
    report = store.figures(SINCE, UNTIL, PROMISES, now=NOW)
    return {name: [row.model_dump() for row in rows] for name, rows in report.sections().items()}


def test_a_known_day_gives_exact_figures(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.record(SCENARIO) == len(SCENARIO)
    assert _dumped(store) == EXPECTED


def test_recording_again_changes_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.record(SCENARIO[:10])
    assert store.record(SCENARIO) == len(SCENARIO) - 10
    assert store.record(SCENARIO) == 0
    assert _dumped(store) == EXPECTED


def test_two_threads_recording_the_same_events_count_them_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'statistics.sqlite3'}"
    migrate(url)
    inserted: list[int] = []
    barrier = threading.Barrier(2)

    def record() -> None:
        store = StatisticsStore(url)
        barrier.wait()
        for event in SCENARIO:
            inserted.append(store.record([event]))
        store.close()

    threads = [threading.Thread(target=record) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(inserted) == len(SCENARIO)
    assert _dumped(StatisticsStore(url)) == EXPECTED


def _senders(store: StatisticsStore) -> set[str | None]:
    with store.engine.connect() as connection:
        return set(connection.execute(text("SELECT sender FROM contact_events")).scalars())


def test_addresses_are_kept_only_when_asked(tmp_path: Path) -> None:
    plain = _store(tmp_path / "plain")
    plain.record(SCENARIO)
    assert _senders(plain) == {None}
    kept = _store(tmp_path / "kept", store_addresses=True)
    kept.record(SCENARIO)
    assert _senders(kept) == {None, "anna@example.com", "bert@example.com"}


def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.record(SCENARIO)
    migrate(store.url)
    engine = create_engine(store.url)
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert version == [("0001",)]
    assert _dumped(store) == EXPECTED


def _empty_database(path: Path) -> StatisticsStore:
    sqlite3.connect(path).close()
    return StatisticsStore(f"sqlite:///{path}")


def test_an_unmigrated_database_is_named(tmp_path: Path) -> None:
    store = _empty_database(tmp_path / "empty.sqlite3")
    with pytest.raises(StatisticsUnavailable, match="has not been migrated"):
        store.figures(SINCE, UNTIL, PROMISES)


def test_a_missing_sqlite_file_is_named_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "var" / "statistics.sqlite3"
    store = StatisticsStore(f"sqlite:///{path}")
    with pytest.raises(StatisticsUnavailable, match="no such database file"):
        store.figures(SINCE, UNTIL, PROMISES)
    with pytest.raises(StatisticsUnavailable, match="no such database file"):
        store.record(SCENARIO[:1])
    assert not path.parent.exists()
    migrate(store.url)
    assert store.record(SCENARIO[:1]) == 1


def test_percentiles_interpolate_linearly() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([0.0, 10.0], 0.9) == 9.0


def test_default_database_is_sqlite_in_the_data_folder() -> None:
    assert StatisticsSettings().url() == "sqlite:///var/statistics.sqlite3"
    assert StatisticsSettings(data_dir=Path("/srv/ace")).url() == (
        "sqlite:////srv/ace/statistics.sqlite3"
    )
    url = "postgresql://ace@db.example.com/ace"
    assert StatisticsSettings(database_url=url).url() == url


@pytest.mark.parametrize(
    ("url", "fault"),
    [
        ("mysql://ace@db/ace", "unsupported scheme 'mysql'"),
        ("postgres://ace@db/ace", "unsupported scheme 'postgres'"),
        ("statistics.sqlite3", "not a database URL"),
    ],
)
def test_a_bad_database_url_is_named(tmp_path: Path, url: str, fault: str) -> None:
    config = tmp_path / "ace-email.toml"
    config.write_text(f'[statistics]\ndatabase_url = "{url}"\nstore_addresses = true\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "statistics.database_url" in str(caught.value)
    assert fault in str(caught.value)


def test_statistics_settings_load_from_the_file(tmp_path: Path) -> None:
    config = tmp_path / "ace-email.toml"
    config.write_text(
        '[statistics]\ndatabase_url = "postgresql://ace@db.example.com/ace"\n'
        "store_addresses = true\n"
    )
    settings = load_settings(config).statistics
    assert settings.database_url == "postgresql://ace@db.example.com/ace"
    assert settings.store_addresses


def test_recording_into_an_unmigrated_database_is_named(tmp_path: Path) -> None:
    store = _empty_database(tmp_path / "empty.sqlite3")
    with pytest.raises(StatisticsUnavailable, match="has not been migrated"):
        store.record(SCENARIO[:1])
