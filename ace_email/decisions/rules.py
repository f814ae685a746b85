"""Per-account analysis rules: an ordered list, the first match wins, else the account default.

A rule has conditions (`when`, all of which must hold) and actions (`then`). Evaluation is a
pure function of the rules, the account's defaults and calendar, and facts about one email; it
never reads the clock. Conditions see the analysis as enriched before the rules (the account's
extracted `data`, the keyword `categories`); a matched rule's own `extract` patterns add data.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ace_email.contracts.message import Address, Analysis, Routing
from ace_email.decisions.extraction import (
    Patterns,
    condition_problems,
    data_holds,
    extract,
    pattern_problems,
)

NO_TEMPLATE = "none"
DEFAULT_RULE_NAME = "default"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_NAMES = {name: name[:3] for name in _FULL_WEEKDAYS} | {day: day for day in WEEKDAYS}
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
REGEX_PREFIX = "re:"


@functools.cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


@functools.cache
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern.lower()), re.IGNORECASE)


@functools.cache
def _address_matcher(pattern: str) -> Callable[[str], bool]:
    """A predicate on a lower-cased address; see `AddressPattern`."""
    if pattern.startswith(REGEX_PREFIX):
        regex = _regex(pattern[len(REGEX_PREFIX) :])
        return lambda address: regex.search(address) is not None
    if "@" in pattern:
        whole = _glob(pattern)
        return lambda address: whole.match(address) is not None
    domain = re.compile(r"(?s:.*\.)?" + fnmatch.translate(pattern.lower()), re.IGNORECASE)
    return lambda address: domain.match(address.rpartition("@")[2]) is not None


def _valid_regex(value: str) -> str:
    try:
        _regex(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


def _valid_address_pattern(value: str) -> str:
    if not value.strip():
        raise ValueError("an address pattern must not be empty")
    if value.startswith(REGEX_PREFIX):
        _valid_regex(value[len(REGEX_PREFIX) :])
    return value


def _weekday(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    day = _WEEKDAY_NAMES.get(value.strip().lower())
    if day is None:
        raise ValueError(f"unknown weekday {value!r} (use {', '.join(WEEKDAYS)})")
    return day


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _lowered_list(value: Any) -> Any:
    value = _as_list(value)
    if isinstance(value, list):
        return [item.strip().lower() if isinstance(item, str) else item for item in value]
    return value


def _clock_value(value: Any) -> Any:
    if isinstance(value, str):
        return _clock(value)
    if isinstance(value, time) and value.tzinfo is not None:
        raise ValueError("give a local time of day without a UTC offset")
    return value


def _clock(text: str) -> time:
    found = _CLOCK.match(text.strip())
    if not found:
        raise ValueError(f"{text.strip()!r} is not a time of day HH:MM")
    hour, minute = int(found[1]), int(found[2])
    if hour > 23 or minute > 59:
        raise ValueError(f"{text.strip()!r} is not a time of day (00:00 to 23:59)")
    return time(hour, minute)


@dataclass(frozen=True)
class TimeWindow:
    """A time of day window `start <= t < end`; it wraps midnight when start is after end."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> TimeWindow:
        start, dash, end = text.partition("-")
        if not dash:
            raise ValueError(f"invalid time window {text!r}: use HH:MM-HH:MM, e.g. 18:00-08:00")
        try:
            window = cls(_clock(start), _clock(end))
        except ValueError as exc:
            raise ValueError(f"invalid time window {text!r}: {exc}") from None
        if window.start == window.end:
            raise ValueError(f"invalid time window {text!r}: start and end are the same")
        return window

    def __contains__(self, moment: time) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


@functools.cache
def _window(text: str) -> TimeWindow:
    return TimeWindow.parse(text)


def _valid_window(value: str) -> str:
    _window(value)
    return value


def _valid_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as Europe/Stockholm)"
        ) from None
    return value


Regex = Annotated[str, AfterValidator(_valid_regex)]
AddressPattern = Annotated[str, AfterValidator(_valid_address_pattern)]
"""Glob on the whole address (case-insensitive); without "@": the domain and its subdomains;
with the prefix "re:": a case-insensitive regular expression search."""
AddressPatterns = Annotated[list[AddressPattern], BeforeValidator(_as_list), Field(min_length=1)]
Weekday = Annotated[str, BeforeValidator(_weekday)]
Weekdays = Annotated[list[Weekday], BeforeValidator(_as_list), Field(min_length=1)]
Words = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_as_list)]
NonEmptyWords = Annotated[
    list[Annotated[str, Field(min_length=1)]], BeforeValidator(_as_list), Field(min_length=1)
]
Lowered = Annotated[
    list[Annotated[str, Field(min_length=1)]], BeforeValidator(_lowered_list), Field(min_length=1)
]
ClockTime = Annotated[time, BeforeValidator(_clock_value)]
Window = Annotated[str, AfterValidator(_valid_window)]
TimeZoneName = Annotated[str, AfterValidator(_valid_zone)]


class RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class OfficeHours(RuleModel):
    """When the account is open, in its time zone. Holidays are closed all day."""

    days: Weekdays = ["mon", "tue", "wed", "thu", "fri"]
    start: ClockTime = time(8, 0)
    end: ClockTime = time(17, 0)
    holidays: list[date] = []

    @model_validator(mode="after")
    def _end_after_start(self) -> Self:
        if self.end <= self.start:
            raise ValueError(f"end {self.end:%H:%M} must be after start {self.start:%H:%M}")
        return self

    def describe(self, timezone: str = "UTC") -> str:
        """For people, e.g. "Mon-Fri 08:00-17:00 (Europe/Stockholm)"."""
        return f"{_day_ranges(self.days)} {self.start:%H:%M}-{self.end:%H:%M} ({timezone})"

    def __contains__(self, local: datetime) -> bool:
        return (
            local.date() not in self.holidays
            and WEEKDAYS[local.weekday()] in self.days
            and self.start <= local.time() < self.end
        )


def _day_ranges(days: Sequence[str]) -> str:
    runs: list[list[int]] = []
    for index in sorted({WEEKDAYS.index(day) for day in days}):
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    names = [[WEEKDAYS[i].title() for i in (run[0], run[-1])] for run in runs]
    return ", ".join(first if first == last else f"{first}-{last}" for first, last in names)


@dataclass(frozen=True)
class Calendar:
    """An account's time zone and office hours: the context of time conditions."""

    zone: tzinfo = UTC
    office_hours: OfficeHours | None = None

    def local(self, moment: datetime) -> datetime:
        """`moment` in this zone; a naive moment is taken as UTC."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(self.zone)

    def is_open(self, local: datetime) -> bool:
        """Inside office hours; never, when the account has none."""
        return self.office_hours is not None and local in self.office_hours


UTC_CALENDAR = Calendar()


@dataclass(frozen=True, kw_only=True)
class MessageFacts:
    """What rules may look at: the analysis, the decoded body, when it arrived, its headers.

    `to` and `cc` are every address of those fields, where known; the analysis lists only
    the first few dozen of a long list.
    """

    analysis: Analysis
    received_at: datetime
    body: str = ""
    headers: Sequence[tuple[str, str]] = field(default=())
    to: Sequence[str] | None = None
    cc: Sequence[str] | None = None


class RuleWhen(RuleModel):
    """Conditions: every one given must hold; a list holds when any of its items does."""

    sender: AddressPatterns | None = Field(default=None, alias="from")
    to: AddressPatterns | None = None
    cc: AddressPatterns | None = None
    subject: Regex | None = None
    body: Regex | None = None
    language: Lowered | None = None
    has_attachment: bool | None = None
    attachment_type: NonEmptyWords | None = None
    min_size: int | None = Field(default=None, ge=0)
    max_size: int | None = Field(default=None, ge=0)
    headers: dict[str, Regex] | None = Field(
        default=None, description='header name -> regex on its value; "" = present'
    )
    automatic: bool | None = None
    spam: bool | None = Field(default=None, description="false also holds when no verdict")
    office_hours: bool | None = None
    days: Weekdays | None = None
    time: Window | None = None
    data: dict[str, str] | None = Field(
        default=None, description='extracted name -> glob on its value; "*" = any value'
    )
    category: NonEmptyWords | None = Field(default=None, description="any keyword category")

    @model_validator(mode="after")
    def _sizes_in_order(self) -> Self:
        low, high = self.min_size, self.max_size
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_size {self.min_size} is above max_size {self.max_size}")
        return self

    def matches(self, facts: MessageFacts, local: datetime, calendar: Calendar) -> bool:
        """Whether every given condition holds; `local` is the arrival time in the account zone."""
        analysis = facts.analysis
        if self.automatic is not None and analysis.automatic != self.automatic:
            return False
        if self.spam is not None and (analysis.spam is True) != self.spam:
            return False
        if self.has_attachment is not None and bool(analysis.attachments) != self.has_attachment:
            return False
        if self.min_size is not None and analysis.size < self.min_size:
            return False
        if self.max_size is not None and analysis.size > self.max_size:
            return False
        if self.language is not None and (analysis.language or "").lower() not in self.language:
            return False
        if self.days is not None and WEEKDAYS[local.weekday()] not in self.days:
            return False
        if self.time is not None and local.time() not in _window(self.time):
            return False
        if self.office_hours is not None and calendar.is_open(local) != self.office_hours:
            return False
        sender = [analysis.sender.addr] if analysis.sender else []
        if self.sender is not None and not _any_address(self.sender, sender):
            return False
        if self.to is not None and not _any_address(self.to, _listed(facts.to, analysis.to)):
            return False
        if self.cc is not None and not _any_address(self.cc, _listed(facts.cc, analysis.cc)):
            return False
        if self.attachment_type is not None and not _any_attachment(self.attachment_type, analysis):
            return False
        if self.subject is not None and not _regex(self.subject).search(analysis.subject):
            return False
        if self.headers is not None and not _headers_match(self.headers, facts.headers):
            return False
        if self.data is not None and not data_holds(self.data, analysis.data):
            return False
        if self.category is not None and not set(self.category) & set(analysis.categories):
            return False
        return self.body is None or _regex(self.body).search(facts.body) is not None


def _listed(full: Sequence[str] | None, summary: Sequence[Address]) -> Sequence[str]:
    return full if full is not None else [a.addr for a in summary]


def _any_address(patterns: Sequence[str], addresses: Sequence[str]) -> bool:
    lowered = [a.strip().lower() for a in addresses if a.strip()]
    return any(_address_matcher(p)(a) for p in patterns for a in lowered)


def _any_attachment(patterns: Sequence[str], analysis: Analysis) -> bool:
    names = [a.content_type for a in analysis.attachments]
    names += [a.filename for a in analysis.attachments if a.filename]
    return any(_glob(p).match(name.lower()) for p in patterns for name in names)


def _headers_match(wanted: dict[str, str], headers: Sequence[tuple[str, str]]) -> bool:
    def one(name: str, pattern: str) -> bool:
        key = name.lower()
        regex = _regex(pattern)
        return any(n.lower() == key and regex.search(v) for n, v in headers)

    return all(one(name, pattern) for name, pattern in wanted.items())


class RuleThen(RuleModel):
    """Actions; an absent one takes the account's default. `quarantine` overrides the rest."""

    queue: str | None = Field(default=None, min_length=1)
    priority: int | None = None
    skills: Words | None = Field(default=None, description="replace the account's skills")
    auto_reply_template: str | None = Field(
        default=None, min_length=1, description=f'"{NO_TEMPLATE}": no automatic reply'
    )
    category: str | None = Field(default=None, min_length=1)
    quarantine: str | None = Field(default=None, min_length=1, description="the reason")
    extract: Patterns | None = Field(
        default=None, description="name -> regex: data added when this rule matches"
    )


class Rule(RuleModel):
    name: str = Field(default="", description='shown as the routing\'s rule; "rules[i]" if empty')
    when: RuleWhen = RuleWhen()
    then: RuleThen = RuleThen()


@dataclass(frozen=True)
class RoutingDefaults:
    """What an email gets when no rule says otherwise."""

    queue: str
    priority: int = 0
    skills: tuple[str, ...] = ()
    auto_reply_template: str | None = "default"


def template_choice(name: str | None) -> str | None:
    """A configured template name as a result: "none" means no automatic reply."""
    return None if name is None or name == NO_TEMPLATE else name


@dataclass(frozen=True)
class Decision:
    """What the rules made of one email: its routing, and the values the matched rule's
    `extract` patterns found (they replace the account's values of the same names)."""

    routing: Routing
    data: Mapping[str, str] = field(default_factory=dict)


def decide(
    rules: Sequence[Rule],
    defaults: RoutingDefaults,
    facts: MessageFacts,
    calendar: Calendar = UTC_CALENDAR,
) -> Decision:
    """The first matching rule's actions over the defaults, or the defaults as rule "default".

    A rule that sets no `category` (and the defaults) take the first keyword category the
    email is in, if any; a quarantine has none.
    """
    local = calendar.local(facts.received_at)
    analysis = facts.analysis
    category = analysis.categories[0] if analysis.categories else None
    for index, rule in enumerate(rules):
        if rule.when.matches(facts, local, calendar):
            routing = _apply(rule.name or f"rules[{index}]", rule.then, defaults, category)
            data = extract(rule.then.extract or {}, analysis.subject, facts.body)
            return Decision(routing, data)
    return Decision(
        Routing(
            rule=DEFAULT_RULE_NAME,
            queue=defaults.queue,
            priority=defaults.priority,
            skills=list(defaults.skills),
            category=category,
            auto_reply_template=defaults.auto_reply_template,
        )
    )


def evaluate(
    rules: Sequence[Rule],
    defaults: RoutingDefaults,
    facts: MessageFacts,
    calendar: Calendar = UTC_CALENDAR,
) -> Routing:
    """The routing `decide` chooses; its category is the rule's, else the first keyword
    category the email is in."""
    return decide(rules, defaults, facts, calendar).routing


def _apply(
    name: str, then: RuleThen, defaults: RoutingDefaults, category: str | None = None
) -> Routing:
    if then.quarantine is not None:
        return Routing(
            rule=name,
            queue=defaults.queue,
            priority=defaults.priority,
            skills=list(defaults.skills),
            auto_reply_template=None,
            quarantine_reason=then.quarantine,
        )
    return Routing(
        rule=name,
        queue=then.queue or defaults.queue,
        priority=defaults.priority if then.priority is None else then.priority,
        skills=list(defaults.skills if then.skills is None else then.skills),
        category=then.category or category,
        auto_reply_template=(
            defaults.auto_reply_template
            if then.auto_reply_template is None
            else template_choice(then.auto_reply_template)
        ),
    )


def rule_problems(
    rules: Sequence[Rule],
    *,
    queues: Sequence[str],
    templates: Sequence[str],
    office_hours: bool,
    data_names: Sequence[str] = (),
    categories: Sequence[str] = (),
) -> list[str]:
    """Faults that need the whole configuration, each as "rules[i].then.key: fault".

    `data_names` are the account's extract patterns (what `when.data` may ask for),
    `categories` the keyword categories' names.
    """
    problems: list[str] = []
    for index, rule in enumerate(rules):
        where = f"rules[{index}]"
        if rule.when.data is not None:
            problems += condition_problems(rule.when.data, f"{where}.when.data", data_names)
        for name in rule.when.category or []:
            if name not in categories:
                problems.append(f"{where}.when.category: {unknown('category', name, categories)}")
        if rule.then.extract is not None:
            problems += pattern_problems(rule.then.extract, f"{where}.then.extract")
        if rule.when.office_hours is not None and not office_hours:
            problems.append(
                f"{where}.when.office_hours: the account has no [accounts.office_hours]"
            )
        if rule.then.queue is not None and rule.then.queue not in queues:
            problems.append(f"{where}.then.queue: {unknown('queue', rule.then.queue, queues)}")
        template = rule.then.auto_reply_template
        if template is not None and template != NO_TEMPLATE and template not in templates:
            problems.append(
                f"{where}.then.auto_reply_template: {unknown('template', template, templates)}"
            )
    return problems


def unknown(kind: str, name: str, known: Sequence[str]) -> str:
    listed = ", ".join(sorted(set(known))) or "none configured"
    return f"unknown {kind} {name!r} (known: {listed})"
