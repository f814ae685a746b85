"""Queues and agents: their snapshots, who waits where, reservations of an agent's places,
the router's decisions, and what queues and agents show."""

from __future__ import annotations

import base64
import zlib
from datetime import date, datetime
from enum import StrEnum

from pydantic import Field, TypeAdapter

from ace_email.contracts.base import Channel, Model


class Presence(StrEnum):
    """An agent's presence; also its `AceStatus` search attribute."""

    OFFLINE = "offline"
    READY = "ready"
    NOT_READY = "not-ready"


# Routing: queues, agents and the messages between them and their contacts.


class Hours(Model):
    """Opening hours as configured: weekly windows ("mon-fri 08:00-17:00"), their time zone,
    and the dates the entrance stays closed."""

    windows: list[str] = []
    timezone: str = "UTC"
    closed_dates: list[date] = []


class QueuePolicy(Model):
    """A queue's routing rules: escalation, overflow, and when it is open."""

    name: str
    escalate_after_seconds: float | None = Field(
        default=None, description="every this long waiting, the priority rises by the step"
    )
    escalate_step: int = 1
    escalate_max: int | None = Field(default=None, description="escalation stops here")
    overflow_after_seconds: float | None = None
    overflow_to: str | None = None
    hours: Hours | None = Field(
        default=None, description="while closed, nothing is offered from the queue"
    )


class AgentPolicy(Model):
    """An agent as routing sees it: what they can take, how much, from where."""

    id: str
    name: str = ""
    email: str | None = Field(default=None, description="none: works in the built-in interface")
    capacity: int = 1
    channel_capacity: dict[Channel, int] = Field(
        default={}, description="at most this many contacts of a channel at once"
    )
    skills: list[str] = []
    queues: list[str] = []


class Waiting(Model):
    """One contact waiting in a queue: enough to order it and to match it to an agent."""

    contact_id: str
    round: int
    priority: int = 0
    waiting_since: datetime = Field(description="orders it within a priority: the oldest first")
    entered_at: datetime = Field(description="in this queue; escalation and overflow count from it")
    skills: list[str] = []
    channel: Channel = Channel.EMAIL
    excluded: list[str] = Field(default=[], description="agents it is not offered to again")


class WaitingBatch(Model):
    """Contacts that enter one queue together (one signal for many)."""

    entries: list[Waiting]


class Withdrawal(Model):
    """A contact leaves the waiting place it entered in `round`."""

    contact_id: str
    round: int


class AgentView(Model):
    """What a queue knows of an agent; `seq` orders the views one agent sends."""

    agent_id: str
    seq: int = 0
    ready: bool = False
    free: int = 0
    free_by_channel: dict[Channel, int] = Field(
        default={}, description="free places of the channels with their own limit"
    )
    skills: list[str] = []
    queues: list[str] = []
    idle_since: datetime | None = None


class QueueInput(Model):
    policy: QueuePolicy
    waiting: list[Waiting] = []
    waiting_packed: str = Field(
        default="",
        description="more waiting contacts, packed (see pack_waiting): a queue carries tens "
        "of thousands through continue-as-new within one payload",
    )
    agents: list[AgentView] = []
    agents_known: bool = False
    routed: int = 0
    decided: int = Field(default=0, description="routing decisions made: their running number")
    overflowed: int = 0
    events_per_run: int = Field(
        default=0, description="continue-as-new after this many history events; 0: when suggested"
    )


_WAITING_LIST = TypeAdapter(list[Waiting])


def pack_waiting(entries: list[Waiting]) -> str:
    """Waiting contacts as compressed JSON in base64: about a quarter of their plain size."""
    return base64.b64encode(zlib.compress(_WAITING_LIST.dump_json(entries), 6)).decode()


def unpack_waiting(packed: str) -> list[Waiting]:
    if not packed:
        return []
    return _WAITING_LIST.validate_json(zlib.decompress(base64.b64decode(packed)))


class QueuedContact(Model):
    contact_id: str
    priority: int
    effective_priority: int
    waiting_since: datetime
    entered_at: datetime
    skills: list[str] = []
    channel: Channel = Channel.EMAIL


class QueueStatus(Model):
    """What `starter.py queues` and the Web UI show of a queue."""

    queue: str
    waiting: int = 0
    oldest_waiting_since: datetime | None = None
    routed: int = Field(default=0, description="contacts given to agents since the queue began")
    overflowed: int = 0
    agents_ready: int = 0
    agents_free: int = Field(default=0, description="ready agents with a free place")
    open: bool = Field(default=True, description="false while its opening hours say closed")
    next_change: datetime | None = Field(default=None, description="when it opens or closes next")
    head: list[QueuedContact] = Field(default=[], description="the first waiting, in order")


class RouteOrder(Model):
    """One routing decision: give `contact_id` (waiting in `round`) to `agent_id`."""

    contact_id: str
    agent_id: str
    round: int
    channel: Channel = Channel.EMAIL
    skills: list[str] = []
    queue: str
    sequence: int = 0
    reserve: bool = Field(
        default=True, description="reserve a place with the agent first; False: it is reserved"
    )


class DispatchBatch(Model):
    source: str
    orders: list[RouteOrder]


class DispatchOutcome(StrEnum):
    ROUTED = "routed"
    AGENT_BUSY = "agent-busy"
    STALE = "stale"


class DispatchResult(Model):
    contact_id: str
    agent_id: str
    outcome: DispatchOutcome
    view: AgentView | None = None
    detail: str = ""


class Reservation(Model):
    """A place with an agent for one contact. `force`: an operator's direct assignment, taken
    whatever the agent's presence and load."""

    contact_id: str
    channel: Channel = Channel.EMAIL
    queue: str = ""
    skills: list[str] = []
    force: bool = False


class ReservationAnswer(Model):
    granted: bool
    reason: str = ""
    view: AgentView


class Release(Model):
    contact_id: str


class PersonalWait(Model):
    """A contact waiting in one agent's personal waiting list."""

    contact_id: str
    round: int
    channel: Channel = Channel.EMAIL
    queue: str = ""
    skills: list[str] = []
    since: datetime
    until: datetime


class Held(Model):
    """A contact that occupies a place of an agent's capacity, from reservation to close."""

    contact_id: str
    channel: Channel = Channel.EMAIL
    queue: str = ""
    since: datetime
    forced: bool = False


class AgentInput(Model):
    policy: AgentPolicy
    presence: Presence = Presence.OFFLINE
    presence_since: datetime | None = None
    idle_since: datetime | None = None
    held: list[Held] = []
    personal: list[PersonalWait] = []
    seq: int = 0
    max_load: int = 0
    contacts_taken: int = 0
    reconcile_every_seconds: float = Field(
        default=300.0, description="how often it checks that the contacts it holds are open"
    )
    alarm: str | None = None


class PresenceRequest(Model):
    presence: Presence


class MailAlarm(Model):
    """To an agent: mail delivered to your own address bounced; you are set not-ready."""

    contact_id: str
    address: str
    detail: str = Field(description="the report's status and reason")


class AgentStatus(Model):
    """What `starter.py agents` and the Web UI show of an agent."""

    id: str
    name: str = ""
    email: str | None = None
    presence: Presence = Presence.OFFLINE
    presence_since: datetime | None = None
    idle_since: datetime | None = None
    capacity: int = 1
    channel_capacity: dict[Channel, int] = {}
    load: int = 0
    load_by_channel: dict[Channel, int] = {}
    max_load: int = Field(default=0, description="the most contacts held at once")
    contacts_taken: int = 0
    skills: list[str] = []
    queues: list[str] = []
    held: list[Held] = []
    personal: list[PersonalWait] = []
    alarm: str | None = Field(
        default=None, description="why the agent was set not-ready by ace-email, until ready again"
    )


class HeldCheck(Model):
    agent_id: str
    contact_ids: list[str]
