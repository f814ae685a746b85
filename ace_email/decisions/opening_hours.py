"""An entrance's opening hours: weekly windows such as "mon-fri 08:00-17:00" in a time zone,
with closed dates; whether it is open at a moment, and when that next changes.

Pure: every function takes the moment it is asked about (a workflow passes `workflow.now()`,
so a timer to the next change is deterministic). Moments are aware datetimes, compared in the
entrance's zone, so the windows keep their local times across daylight-saving changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator

from ace_email.contracts.queues import Hours

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ENTRY = re.compile(
    r"^\s*(?P<days>[a-z,\- ]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$"
)
_LOOKAHEAD_DAYS = 400  # a year of closed dates and a week's windows beyond


@dataclass(frozen=True)
class Window:
    """Open on `days` (0 = Monday) from `start` to `end`, local time; `end` 24:00 is midnight."""

    days: frozenset[int]
    start: time
    end: time | None  # None: until midnight

    def covers(self, local: datetime) -> bool:
        if local.weekday() not in self.days:
            return False
        moment = local.time().replace(tzinfo=None)
        return self.start <= moment and (self.end is None or moment < self.end)


def parse_window(text: str) -> Window:
    """ "mon-fri 08:00-17:00", "sat 10:00-14:00", "mon,wed,fri 09:00-12:00", "sun 18:00-24:00".
    Raises ValueError saying what is wrong and how to write it."""
    match = _ENTRY.match(text.lower())
    if match is None:
        raise ValueError(
            f"{text!r} is not an opening window; write days and times, e.g. "
            '"mon-fri 08:00-17:00" or "sat 10:00-14:00"'
        )
    days = _days(match["days"], text)
    start = _clock(match["start"], text, allow_midnight=False) or time(0, 0)
    end = _clock(match["end"], text, allow_midnight=True)
    if end is not None and end <= start:
        raise ValueError(
            f"{text!r}: the window ends before it starts; a window past midnight is two "
            'entries, e.g. "fri 22:00-24:00" and "sat 00:00-02:00"'
        )
    return Window(days=days, start=start, end=end)


def _days(text: str, whole: str) -> frozenset[int]:
    found: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        first, dash, last = part.partition("-")
        names = [first.strip(), last.strip()] if dash else [first.strip()]
        for name in names:
            if name not in WEEKDAYS:
                raise ValueError(f"{whole!r}: unknown weekday {name!r} (use {', '.join(WEEKDAYS)})")
        low, high = WEEKDAYS.index(names[0]), WEEKDAYS.index(names[-1])
        found.update(range(low, high + 1) if low <= high else [*range(low, 7), *range(high + 1)])
    return frozenset(found)


def _clock(text: str, whole: str, *, allow_midnight: bool) -> time | None:
    hour, minute = (int(part) for part in text.split(":"))
    if allow_midnight and (hour, minute) == (24, 0):
        return None
    if hour > 23 or minute > 59:
        raise ValueError(f"{whole!r}: {text!r} is not a time of day (00:00 to 23:59, or 24:00)")
    return time(hour, minute)


def _valid_windows(values: list[str]) -> list[str]:
    for index, value in enumerate(values):
        try:
            parse_window(value)
        except ValueError as exc:
            raise ValueError(f"[{index}] {exc}") from None
    return values


OpeningWindows = Annotated[list[str], AfterValidator(_valid_windows)]
"""Configured opening windows, each checked as it is read."""


@dataclass(frozen=True)
class OpeningHours:
    """When an entrance is open: weekly windows in a zone, less its closed dates."""

    windows: tuple[Window, ...]
    zone: ZoneInfo
    closed_dates: frozenset[date] = frozenset()

    @classmethod
    def of(
        cls, entries: Sequence[str], timezone: str = "UTC", closed_dates: Iterable[date] = ()
    ) -> OpeningHours:
        return cls(
            tuple(parse_window(e) for e in entries), ZoneInfo(timezone), frozenset(closed_dates)
        )

    @classmethod
    def of_hours(cls, hours: Hours) -> OpeningHours:
        return cls.of(hours.windows, hours.timezone, hours.closed_dates)

    def is_open(self, moment: datetime) -> bool:
        local = _aware(moment).astimezone(self.zone)
        if local.date() in self.closed_dates:
            return False
        return any(window.covers(local) for window in self.windows)

    def next_change(self, moment: datetime) -> datetime | None:
        """The first moment after `moment` (UTC) at which `is_open` answers otherwise; None
        if it never does (no windows, or open around the clock)."""
        moment = _aware(moment)
        now_open = self.is_open(moment)
        for boundary in self._boundaries(moment):
            if boundary > moment and self.is_open(boundary) != now_open:
                return boundary
        return None

    def _boundaries(self, moment: datetime) -> list[datetime]:
        """Every window's start and end, and every midnight, from the day before `moment`
        on, as UTC moments in order (a local time that a clock change skips moves on with it)."""
        first = moment.astimezone(self.zone).date() - timedelta(days=1)
        found: list[datetime] = []
        for offset in range(_LOOKAHEAD_DAYS):
            day = first + timedelta(days=offset)
            found.append(_utc(day, time(0, 0), self.zone))
            for window in self.windows:
                if day.weekday() in window.days:
                    found.append(_utc(day, window.start, self.zone))
                    if window.end is not None:
                        found.append(_utc(day, window.end, self.zone))
        return sorted(set(found))


def _utc(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
