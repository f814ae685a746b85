"""`starter.py stats`: the figures of the statistics database as JSON, CSV or tables, without
Temporal; an unmigrated database or a bad date is one line on stderr."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from ace_email.statistics.store import StatisticsStore, migrate
from starter import main
from tests.statistics_scenario import EXPECTED, SCENARIO

CONFIG = """
[temporal]
address = "127.0.0.1:1"

[[queues]]
name = "support"
answer_within_minutes = 10

[[queues]]
name = "billing"
answer_within_minutes = 30

[statistics]
database_url = "{url}"
"""
DAY = ["--since", "2026-12-01", "--until", "2026-12-01"]


def _config(tmp_path: Path, populated: bool = True) -> str:
    url = f"sqlite:///{tmp_path / 'statistics.sqlite3'}"
    if not populated:
        sqlite3.connect(tmp_path / "statistics.sqlite3").close()
    else:
        migrate(url)
        store = StatisticsStore(url)
        store.record(SCENARIO)
        store.close()
    config = tmp_path / "ace-email.toml"
    config.write_text(CONFIG.format(url=url))
    return str(config)


async def test_json_has_the_issues_shape_and_exact_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await main(["--config", _config(tmp_path), "stats", *DAY, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == EXPECTED


async def test_csv_is_one_table_with_a_section_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await main(["--config", _config(tmp_path), "stats", *DAY, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(row["section"], row["name"]) for row in rows] == [
        ("queues", "billing"),
        ("queues", "support"),
        ("agents", "ann"),
        ("agents", "bob"),
        ("accounts", "sales"),
        ("accounts", "support"),
    ]
    support = rows[1]
    assert support["received"] == "4"
    assert support["waiting_now"] == "1"
    assert support["wait_p90_seconds"] == "1092.0"
    assert support["answered_within_share"] == "0.3333"
    assert rows[2]["received"] == "0"


async def test_tables_for_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await main(["--config", _config(tmp_path), "stats", *DAY]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2026-12-01T00:00:00+00:00 .. 2026-12-02T00:00:00+00:00")
    support = next(line for line in out.splitlines() if line.startswith("support "))
    assert support.split() == [
        "support", "4", "0", "1", "1", "2", "2", "3", "1",
        "11.0m", "18.2m", "20.0m", "38.9h", "33%",
    ]  # fmt: skip


async def test_an_unmigrated_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await main(["--config", _config(tmp_path, populated=False), "stats"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("starter.py stats: sqlite:///")
    assert err.endswith("no statistics tables: the database has not been migrated")
    assert "\n" not in err


async def test_an_unreachable_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ace-email.toml"
    config.write_text(
        CONFIG.format(url="postgresql://ace:secret@127.0.0.1:1/ace").replace(
            "[statistics]", "[statistics]\nstore_addresses = false"
        )
    )
    assert await main(["--config", str(config), "stats"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("starter.py stats: postgresql+psycopg://ace:***@127.0.0.1:1/ace: ")
    assert "cannot reach the statistics database" in err
    assert "secret" not in err
    assert "\n" not in err


@pytest.mark.parametrize(
    ("arguments", "fault"),
    [
        (["--since", "yesterday"], "'yesterday' is neither YYYY-MM-DD nor an ISO date and time"),
        (["--since", "2026-12-02", "--until", "2026-12-01"], "is not before --until"),
    ],
)
async def test_a_bad_window_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], fault: str
) -> None:
    assert await main(["--config", _config(tmp_path), "stats", *arguments]) == 1
    assert fault in capsys.readouterr().err
