"""Where a routed contact is, and the commands its main loop carries out: one type per kind of
request, each with the places in which it still applies when its turn comes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts.contact import (
        AssignRequest,
        BounceNote,
        CommandResult,
        ForwardRequest,
        OfferAnswer,
        OverflowNotice,
        ReplyRequest,
        RouteRequest,
        TransferRequest,
    )


class Phase(StrEnum):
    """Where a routed contact is; `MOVING` while it goes from one place to the next."""

    QUEUE = "queue"
    PERSONAL = "personal"
    MOVING = "moving"
    OFFERED = "offered"
    WITH_AGENT = "with-agent"
    CLOSED = "closed"


WAITING = (Phase.QUEUE, Phase.PERSONAL)
ASSIGNABLE = (*WAITING, Phase.OFFERED)
NOT_IN_QUEUE = (Phase.PERSONAL, Phase.OFFERED, Phase.WITH_AGENT)
OPEN = (*ASSIGNABLE, Phase.WITH_AGENT, Phase.MOVING)


@dataclass(frozen=True)
class Agent:
    """The agent a contact is offered to or with."""

    id: str
    name: str = ""
    email: str | None = None


@dataclass
class Command:
    """A request carried out by the contact's main loop, one at a time, in arrival order, if
    the contact is still in one of `phases` when its turn comes; `done` once answered."""

    phases: ClassVar[tuple[Phase, ...]] = OPEN
    result: CommandResult | None = field(default=None, init=False)
    refusal: str | None = field(default=None, init=False)
    done: bool = field(default=False, init=False)


@dataclass
class Route(Command):
    """A queue or an agent's personal waiting list gives the contact to an agent."""

    phases: ClassVar[tuple[Phase, ...]] = WAITING
    request: RouteRequest


@dataclass
class Assign(Command):
    """An operator gives the contact to an agent, bypassing the queue's order."""

    phases: ClassVar[tuple[Phase, ...]] = ASSIGNABLE
    request: AssignRequest


@dataclass
class Accept(Command):
    """A built-in agent takes the contact offered to them."""

    phases: ClassVar[tuple[Phase, ...]] = (Phase.OFFERED,)
    answer: OfferAnswer


@dataclass
class Decline(Command):
    """A built-in agent gives the contact offered to them back to its queue."""

    phases: ClassVar[tuple[Phase, ...]] = (Phase.OFFERED,)
    answer: OfferAnswer


@dataclass
class Transfer(Command):
    """To another queue, or to one agent's personal waiting list."""

    request: TransferRequest


@dataclass
class Requeue(Command):
    """Back to its queue, in its old place."""

    phases: ClassVar[tuple[Phase, ...]] = NOT_IN_QUEUE


@dataclass
class Overflow(Command):
    """The queue let the contact wait long enough: on to the overflow queue."""

    phases: ClassVar[tuple[Phase, ...]] = (Phase.QUEUE,)
    notice: OverflowNotice


@dataclass
class Reply(Command):
    """Send a reply written in the built-in interface."""

    phases: ClassVar[tuple[Phase, ...]] = (Phase.WITH_AGENT,)
    request: ReplyRequest


@dataclass
class Forward(Command):
    """Send the email on to an outside address: forwarded with a note, or redirected."""

    request: ForwardRequest


@dataclass
class DeliveryBounced(Command):
    """The delivery to the agent's own mailbox bounced: back to the queue, the agent alarmed."""

    phases: ClassVar[tuple[Phase, ...]] = (Phase.WITH_AGENT,)
    note: BounceNote


@dataclass
class Close(Command):
    """Done: the agent's place is freed, the message and its follow-ups archived."""
