"""One mailbox account: its addresses, its servers, its automatic replies, the patterns that
extract contact data from its mail, and the rules that route it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import (
    Field,
)

from ace_email.compose.auto_reply import ReplySender
from ace_email.config.base import EmailAddress, Section
from ace_email.config.mail_servers import ImapSettings, SmtpSettings
from ace_email.contracts.message import Routing
from ace_email.contracts.queues import Hours
from ace_email.decisions.extraction import Patterns
from ace_email.decisions.opening_hours import OpeningHours, OpeningWindows
from ace_email.decisions.rules import (
    NO_TEMPLATE,
    Calendar,
    Decision,
    MessageFacts,
    OfficeHours,
    RoutingDefaults,
    Rule,
    TimeZoneName,
    decide,
    template_choice,
)


class AccountSettings(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    address: EmailAddress
    return_address: EmailAddress | None = None
    queue: str = Field(default="default", min_length=1)
    priority: int = 0
    skills: list[Annotated[str, Field(min_length=1)]] = []
    auto_reply: bool = True
    auto_reply_template: str = Field(
        default="default", min_length=1, description=f'"{NO_TEMPLATE}": no automatic reply'
    )
    timezone: TimeZoneName = "UTC"
    office_hours: OfficeHours | None = None
    opening_hours: OpeningWindows = Field(
        default=[],
        description='the entrance\'s hours, e.g. ["mon-fri 08:00-17:00", "sat 10:00-14:00"]: '
        "its queues offer nothing while closed; none: always open",
    )
    closed_dates: list[date] = Field(default=[], description="closed all day, e.g. 2026-12-24")
    closed_template: str | None = Field(
        default=None,
        min_length=1,
        description="the automatic reply's template while closed; none: the usual one, whose "
        "`closed` and `next_opening` say so",
    )
    extract: Patterns = Field(
        default={},
        description="name -> regex over the subject, else the text, of every email: its first "
        "group (or whole match) becomes the contact's data[name], before the rules",
    )
    rules: list[Rule] = []
    response_time: str = Field(
        default="", max_length=200, description='told in automatic replies, e.g. "one working day"'
    )
    auto_reply_period_hours: float = Field(
        default=24.0,
        ge=0,
        description="at most one automatic reply per sender in this period; 0: no such limit",
    )
    auto_reply_cap_per_hour: int = Field(
        default=100, ge=0, description="at most this many automatic replies per hour"
    )
    follow_up_days: float = Field(
        default=30.0, ge=0, description="a contact delivered to an agent takes follow-ups this long"
    )
    bounce_suppress_days: float = Field(
        default=30.0,
        ge=0,
        description="an address that bounced hard gets no automatic reply this long; 0: never "
        "suppressed",
    )
    max_waiting: int | None = Field(
        default=None,
        ge=1,
        description="while this many of the account's contacts wait, new mail stays in the "
        "inbox (intake resumes by itself below the mark)",
    )
    max_per_sender_per_hour: int | None = Field(
        default=None,
        ge=1,
        description="beyond this many emails an hour, a sender's go to flood_queue",
    )
    max_per_domain_per_hour: int | None = Field(
        default=None,
        ge=1,
        description="beyond this many emails an hour, a sender domain's go to flood_queue",
    )
    flood_queue: str | None = Field(
        default=None, min_length=1, description="the low-priority queue a flood goes to"
    )
    max_message_mb: float = Field(default=40.0, gt=0)
    imap: ImapSettings
    smtp: SmtpSettings

    def reply_sender(self, now: datetime | None = None) -> ReplySender:
        """Whom the account's automatic replies speak for, as templates name it; at `now`,
        whether the entrance is closed and when it opens next."""
        office_hours = self.office_hours.describe(self.timezone) if self.office_hours else ""
        closed, next_opening = False, ""
        hours = self.hours
        if hours is not None and now is not None:
            opening = OpeningHours.of_hours(hours)
            closed = not opening.is_open(now)
            opens = opening.next_change(now) if closed else None
            if opens is not None:
                local = opens.astimezone(ZoneInfo(self.timezone))
                next_opening = f"{local:%a %Y-%m-%d %H:%M} ({self.timezone})"
        return ReplySender(
            account=self.name,
            address=self.reply_from,
            office_hours=office_hours,
            response_time=self.response_time,
            closed=closed,
            next_opening=next_opening,
        )

    def template_at(self, template: str, now: datetime) -> str:
        """The automatic reply's template: `closed_template` while the entrance is closed."""
        hours = self.hours
        if self.closed_template is None or hours is None:
            return template
        return template if OpeningHours.of_hours(hours).is_open(now) else self.closed_template

    def endpoints(self) -> dict[str, str]:
        """Where and how a worker connects for this account, without any secret: what a
        worker reads at its start, and only a restart changes."""
        found: dict[str, str] = {}
        for protocol, credentials in (("imap", self.imap), ("smtp", self.smtp)):
            settings = credentials.model_dump(
                include={"host", "port", "security", "username", "auth", "tls_verify", "ca_file"}
            )
            found |= {
                f"{protocol}.{k}": str(v) for k, v in sorted(settings.items()) if v is not None
            }
        return found

    @property
    def reply_from(self) -> str:
        return self.return_address or self.address

    @property
    def hours(self) -> Hours | None:
        """The entrance's opening hours, for its queues; None: always open."""
        if not self.opening_hours:
            return None
        return Hours(
            windows=self.opening_hours, timezone=self.timezone, closed_dates=self.closed_dates
        )

    @property
    def calendar(self) -> Calendar:
        return Calendar(zone=ZoneInfo(self.timezone), office_hours=self.office_hours)

    @property
    def routing_defaults(self) -> RoutingDefaults:
        return RoutingDefaults(
            queue=self.queue,
            priority=self.priority,
            skills=tuple(self.skills),
            auto_reply_template=template_choice(self.auto_reply_template),
        )

    def decide(self, facts: MessageFacts) -> Decision:
        """Where this account's rules send one email, and the data its matched rule extracts.

        With `auto_reply = false` no email gets an automatic reply, whatever the rules say.
        """
        decision = decide(self.rules, self.routing_defaults, facts, self.calendar)
        routing = decision.routing
        if not self.auto_reply and routing.auto_reply_template is not None:
            routing = routing.model_copy(update={"auto_reply_template": None})
            return Decision(routing, decision.data)
        return decision

    def routing(self, facts: MessageFacts) -> Routing:
        """Where this account's rules send one email (see `decide`)."""
        return self.decide(facts).routing
