"""Opening hours: windows, closed dates, and the next change, across daylight saving."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ace_email.decisions.opening_hours import OpeningHours, parse_window

STOCKHOLM = OpeningHours.of(
    ["mon-fri 08:00-17:00", "sat 10:00-14:00"], "Europe/Stockholm", [date(2026, 12, 24)]
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_open_inside_a_window_in_the_entrances_zone() -> None:
    assert STOCKHOLM.is_open(utc(2026, 12, 7, 7, 0))  # Monday 08:00 in Stockholm (+1)
    assert not STOCKHOLM.is_open(utc(2026, 12, 7, 6, 59))
    assert not STOCKHOLM.is_open(utc(2026, 12, 7, 16, 0)), "17:00 local: closed"
    assert STOCKHOLM.is_open(utc(2026, 12, 12, 12, 0)), "Saturday 13:00"
    assert not STOCKHOLM.is_open(utc(2026, 12, 13, 12, 0)), "Sunday"
    assert not STOCKHOLM.is_open(utc(2026, 12, 24, 10, 0)), "a closed date"


def test_the_next_change_opens_and_closes_and_skips_closed_dates() -> None:
    assert STOCKHOLM.next_change(utc(2026, 12, 7, 6, 0)) == utc(2026, 12, 7, 7, 0)
    assert STOCKHOLM.next_change(utc(2026, 12, 7, 7, 0)) == utc(2026, 12, 7, 16, 0)
    # Wednesday 23 December after closing: Thursday 24th is closed, Friday 25th opens.
    assert STOCKHOLM.next_change(utc(2026, 12, 23, 17, 0)) == utc(2026, 12, 25, 7, 0)


def test_windows_keep_their_local_time_across_daylight_saving() -> None:
    # Stockholm moves to summer time on Sunday 29 March 2026: Monday opens at 06:00 UTC.
    assert STOCKHOLM.next_change(utc(2026, 3, 28, 13, 0)) == utc(2026, 3, 30, 6, 0)
    assert STOCKHOLM.next_change(utc(2026, 3, 27, 12, 0)) == utc(2026, 3, 27, 16, 0)


def test_a_window_until_midnight_and_a_day_range_over_the_weekend() -> None:
    late = OpeningHours.of(["fri-mon 18:00-24:00"])
    assert late.is_open(utc(2026, 12, 6, 23, 59))  # Sunday
    assert not late.is_open(utc(2026, 12, 8, 19, 0)), "Tuesday"
    assert late.next_change(utc(2026, 12, 7, 20, 0)) == utc(2026, 12, 8, 0, 0)
    assert OpeningHours.of([]).next_change(utc(2026, 12, 7)) is None


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("mon-fry 08:00-17:00", "unknown weekday 'fry'"),
        ("mon 17:00-08:00", "ends before it starts"),
        ("mon 08:00-25:00", "is not a time of day"),
        ("weekdays", "is not an opening window"),
    ],
)
def test_a_bad_window_says_what_is_wrong(text: str, fault: str) -> None:
    with pytest.raises(ValueError, match=fault):
        parse_window(text)
