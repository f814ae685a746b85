"""`starter.py stats`: the figures of a window from the statistics database, per queue, agent
and account, as small tables, one CSV or JSON. Needs no Temporal."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, time, timedelta

from ace_email.config.settings import Settings
from ace_email.operations.common import Refused
from ace_email.statistics.report import Figures, StatsReport
from ace_email.statistics.store import StatisticsStore

FIELDS = tuple(name for name in Figures.model_fields if name != "name")
SHORT = {
    "received": "recv",
    "quarantined": "quar",
    "auto_replies_sent": "auto",
    "auto_replies_suppressed": "supp",
    "routed": "routed",
    "delivered": "deliv",
    "closed": "closed",
    "waiting_now": "waiting",
    "wait_p50_seconds": "wait50",
    "wait_p90_seconds": "wait90",
    "handling_p50_seconds": "hand50",
    "handling_p90_seconds": "hand90",
    "answered_within_share": "in-time",
}


def moment(text: str, *, end_of_day: bool = False) -> datetime:
    """YYYY-MM-DD (midnight UTC, or the next midnight for an end) or an ISO datetime (UTC
    unless it names its zone)."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if len(text) == len("YYYY-MM-DD"):
            start = datetime.combine(day, time(), tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither YYYY-MM-DD nor an ISO date and time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def window(
    since: str | None, until: str | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """[since, until): by default from today's midnight UTC to now; a date as `until` includes
    that day."""
    now = now or datetime.now(UTC)
    try:
        start = moment(since) if since else datetime.combine(now.date(), time(), tzinfo=UTC)
        end = moment(until, end_of_day=True) if until else now
    except ValueError as exc:
        raise Refused(str(exc)) from None
    if start >= end:
        raise Refused(f"--since {start.isoformat()} is not before --until {end.isoformat()}")
    return start, end


def report(settings: Settings, since: datetime, until: datetime) -> StatsReport:
    """The figures of [since, until) from the configured database."""
    promises = {
        queue.name: seconds / 60
        for queue in settings.queues
        if (seconds := queue.answer_within_seconds()) is not None
    }
    store = StatisticsStore(settings.statistics.url())
    try:
        return store.figures(since, until, promises)
    finally:
        store.close()


def as_json(stats: StatsReport) -> str:
    """`{"queues": [...], "agents": [...], "accounts": [...]}`."""
    sections = {name: [row.model_dump() for row in rows] for name, rows in stats.sections().items()}
    return json.dumps(sections, indent=2, ensure_ascii=False)


def as_csv(stats: StatsReport) -> str:
    """One CSV: a `section` column (queues, agents, accounts), the row's name, the figures."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "name", *FIELDS])
    for section, rows in stats.sections().items():
        for row in rows:
            writer.writerow([section, row.name, *(_cell(getattr(row, f)) for f in FIELDS)])
    return out.getvalue().rstrip("\n")


def _cell(value: float | int | None) -> str:
    return "" if value is None else str(value)


def _shown(value: float | int | None, name: str) -> str:
    if value is None:
        return "-"
    if name == "answered_within_share":
        return f"{value:.0%}"
    if name.endswith("_seconds"):
        return _duration(float(value))
    return str(value)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def describe(stats: StatsReport) -> str:
    """One small table per section, for people."""
    lines = [f"{stats.since.isoformat()} .. {stats.until.isoformat()}"]
    for section, rows in stats.sections().items():
        lines.append("")
        if not rows:
            lines.append(f"{section}: none")
            continue
        table = [[section[:-1], *(SHORT[f] for f in FIELDS)]]
        table += [[row.name, *(_shown(getattr(row, f), f) for f in FIELDS)] for row in rows]
        widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
        for cells in table:
            first = cells[0].ljust(widths[0])
            rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
            lines.append("  ".join([first, *rest]))
    return "\n".join(lines)
