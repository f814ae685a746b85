"""Contact data from patterns: named regular expressions whose first match in an email's
subject, else in its text, gives a value (`order_id = "12345"`), and the `when.data` condition
that asks for such values.

A pattern's value is its first capture group, or the whole match when it has no group;
patterns apply as written (case-sensitive unless they say `(?i)`). Values are one line of at
most `VALUE_LIMIT` characters; a match whose value is empty counts as no match. Patterns that
do not compile are configuration faults (`pattern_problems`); `extract` skips them, so a
pattern that slipped past validation costs a value, never an email.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Mapping, Sequence

NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_PATTERNS = 20
VALUE_LIMIT = 200
# Patterns search at most this much of the text: enough for any reference a customer quotes,
# and a bound on what a careless pattern can cost.
TEXT_LIMIT = 100_000
ANY_VALUE = "*"

Patterns = dict[str, str]
"""Name -> regular expression, e.g. {"order_id": r"(?i)order\\s*#?\\s*(\\d{4,10})"}."""

_SPACE = re.compile(r"[\s\x00-\x1f\x7f]+")


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return None


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern.lower()), re.IGNORECASE)


def clean_value(text: str) -> str:
    """One line, inner whitespace and control characters as single spaces, bounded."""
    return _SPACE.sub(" ", text[: VALUE_LIMIT * 4]).strip()[:VALUE_LIMIT].rstrip()


def _first_value(regex: re.Pattern[str], text: str) -> str:
    found = regex.search(text)
    if found is None:
        return ""
    value = found.group(1) if regex.groups else found.group(0)
    return clean_value(value or "")


def extract(patterns: Mapping[str, str], subject: str, text: str) -> dict[str, str]:
    """The value of each pattern that matches the subject, else the text; the others are
    absent. Never raises."""
    found: dict[str, str] = {}
    for name, pattern in patterns.items():
        regex = _compiled(pattern)
        if regex is None:
            continue
        for where in (subject, text[:TEXT_LIMIT]):
            try:
                value = _first_value(regex, where)
            except (RecursionError, MemoryError):
                value = ""
            if value:
                found[name] = value
                break
    return found


def data_holds(wanted: Mapping[str, str], data: Mapping[str, str]) -> bool:
    """Every wanted name has a value its glob matches (case-insensitively); "*": any value."""
    for name, pattern in wanted.items():
        value = data.get(name)
        if value is None:
            return False
        if pattern != ANY_VALUE and _glob(pattern).match(value.lower()) is None:
            return False
    return True


def pattern_problems(patterns: Mapping[str, str], where: str) -> list[str]:
    """Faults of a pattern table, each as "where.name: fault"."""
    problems: list[str] = []
    if len(patterns) > MAX_PATTERNS:
        problems.append(f"{where}: {len(patterns)} patterns; at most {MAX_PATTERNS} are allowed")
    for name, pattern in patterns.items():
        if not NAME.fullmatch(name):
            problems.append(
                f"{where}.{name}: not a usable name; use a lower-case letter, then lower-case "
                "letters, digits or _ (at most 40), e.g. order_id"
            )
            continue
        try:
            regex = re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            problems.append(f"{where}.{name}: invalid regular expression {pattern!r}: {exc}")
            continue
        if regex.search("") is not None:
            problems.append(
                f"{where}.{name}: {pattern!r} matches empty text; it would never give a value"
            )
    return problems


def condition_problems(wanted: Mapping[str, str], where: str, names: Sequence[str]) -> list[str]:
    """Faults of a `when.data` table: names no account pattern gives, empty globs."""
    problems: list[str] = []
    for name, pattern in wanted.items():
        if name not in names:
            known = ", ".join(sorted(names)) or "none: the account has no extract patterns"
            problems.append(
                f"{where}.{name}: the account's extract has no pattern {name!r} (known: {known})"
            )
        elif not pattern.strip():
            problems.append(
                f'{where}.{name}: an empty pattern never matches; "*" asks for any value'
            )
    return problems
