"""Records as people read them on a terminal: times in UTC to the second, yes and no, lists
joined, nested records one to a line; empty values left out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

WIDTH = 18


def when(value: datetime) -> str:
    moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def value_text(value: Any) -> str:
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {value_text(v)}" for k, v in value.items() if _shown(v))
    if isinstance(value, list | tuple):
        return ", ".join(value_text(v) for v in value)
    return str(value)


def record(fields: Mapping[str, Any]) -> str:
    """One `key: value` line per field; a list of records gets a line per record."""
    lines: list[str] = []
    for key, value in fields.items():
        if not _shown(value):
            continue
        if isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
            lines.append(f"{key:>{WIDTH}}: {len(value)}")
            lines += [f"{'':>{WIDTH}}  - {value_text(item)}" for item in value]
        else:
            lines.append(f"{key:>{WIDTH}}: {value_text(value)}")
    return "\n".join(lines)


def _shown(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}
