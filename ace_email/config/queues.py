"""Queues, agents and the router's timings."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Self

from pydantic import (
    Field,
    model_validator,
)

from ace_email.config.base import EmailAddress, Section
from ace_email.config.desk import SignIn
from ace_email.contracts.base import Channel
from ace_email.contracts.queues import Hours, QueuePolicy
from ace_email.decisions.opening_hours import OpeningWindows
from ace_email.decisions.rules import TimeZoneName


class QueueSettings(Section):
    """A queue: where contacts wait for an agent, with its escalation and overflow."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\s\"'\\]+$")
    description: str = ""
    channels: list[Channel] = Field(
        default=[Channel.EMAIL], min_length=1, description="what may be created in this queue"
    )
    account: str | None = Field(
        default=None,
        description="whose return address and mail store serve its work items and social "
        "contacts; default: the account whose queue this is, or the only account",
    )
    escalate_after_minutes: float | None = Field(default=None, gt=0)
    escalate_step: int = Field(default=1, ge=1)
    escalate_max: int | None = None
    overflow_after_minutes: float | None = Field(default=None, gt=0)
    answer_within_minutes: float | None = Field(
        default=None,
        gt=0,
        description="the longest wait the queue promises: alerts fire when the oldest waits "
        "longer (default: overflow_after_minutes)",
    )
    overflow_to: str | None = None
    opening_hours: OpeningWindows = Field(
        default=[], description='e.g. ["mon-fri 08:00-17:00"]; default: its account\'s'
    )
    timezone: TimeZoneName | None = Field(default=None, description="default: its account's")
    closed_dates: list[date] = []

    @model_validator(mode="after")
    def _overflow_whole(self) -> Self:
        if (self.overflow_after_minutes is None) != (self.overflow_to is None):
            raise ValueError("give both overflow_after_minutes and overflow_to, or neither")
        if self.overflow_to == self.name:
            raise ValueError(f"overflow_to: queue {self.name!r} cannot overflow to itself")
        return self

    def policy(self, hours: Hours | None = None) -> QueuePolicy:
        """Its routing rules; `hours` where it has none of its own (its account's)."""
        minutes = 60.0
        if self.opening_hours:
            hours = Hours(
                windows=self.opening_hours,
                timezone=self.timezone or (hours.timezone if hours else "UTC"),
                closed_dates=self.closed_dates,
            )
        return QueuePolicy(
            hours=hours,
            name=self.name,
            escalate_after_seconds=(
                self.escalate_after_minutes * minutes if self.escalate_after_minutes else None
            ),
            escalate_step=self.escalate_step,
            escalate_max=self.escalate_max,
            overflow_after_seconds=(
                self.overflow_after_minutes * minutes if self.overflow_after_minutes else None
            ),
            overflow_to=self.overflow_to,
        )

    def answer_within_seconds(self) -> float | None:
        minutes = self.answer_within_minutes or self.overflow_after_minutes
        return minutes * 60 if minutes is not None else None


class AgentSettings(SignIn):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$")
    name: str = ""
    email: EmailAddress | None = None
    capacity: int = Field(default=1, ge=1, le=1000, description="contacts at once")
    channel_capacity: dict[Channel, Annotated[int, Field(ge=0)]] = Field(
        default={}, description="at most this many contacts of a channel at once"
    )
    skills: list[Annotated[str, Field(min_length=1)]] = []
    queues: list[Annotated[str, Field(min_length=1)]] = Field(
        default=[], description="the queues the agent serves; empty: every queue"
    )

    @model_validator(mode="after")
    def _channel_limits_within_capacity(self) -> Self:
        for channel, limit in self.channel_capacity.items():
            if limit > self.capacity:
                raise ValueError(
                    f"channel_capacity.{channel.value}: {limit} is more than capacity "
                    f"{self.capacity}"
                )
        return self


class RoutingSettings(Section):
    """How contacts reach agents: offers, personal waiting lists, bookkeeping."""

    offer_timeout_seconds: float = Field(
        default=60.0, gt=0, description="a built-in agent accepts an offer within this time"
    )
    personal_wait_minutes: float = Field(
        default=10.0, gt=0, description="a contact waits this long for one agent, then queues"
    )
    reconcile_minutes: float = Field(
        default=5.0, gt=0, description="an agent checks this often that its contacts are open"
    )
