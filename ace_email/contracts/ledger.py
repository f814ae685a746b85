"""An account's automatic-reply ledger: its entries and a reservation's request and answer."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from ace_email.contracts.base import Model


class LedgerEntry(Model):
    """One automatic reply reserved: for the per-sender and per-hour limits."""

    contact_id: str
    sender: str
    at: datetime
    keep_for: timedelta


class Suppression(Model):
    """An address that bounced hard: no automatic reply goes to it until `until`."""

    address: str
    until: datetime
    reason: str = Field(description="the bounce: status, reason and the contact it came to")


class LedgerInput(Model):
    account: str
    entries: list[LedgerEntry] = []
    suppressed: list[Suppression] = []
    updates_per_run: int = Field(default=1000, description="continue-as-new after this many")


class ReserveReplyRequest(Model):
    account: str
    contact_id: str
    sender: str
    per_sender_period: timedelta = timedelta(hours=24)
    cap_per_hour: int = 100


class SuppressRequest(Model):
    """Addresses that bounced hard, to be spared automatic replies for a while."""

    account: str
    suppressions: list[Suppression]


class ReserveReplyResult(Model):
    allowed: bool
    reason: str


class ReserveReplyBatch(Model):
    """Several contacts' reservations, answered in order, each as `reserve` would."""

    requests: list[ReserveReplyRequest]


class ReserveReplyAnswers(Model):
    results: list[ReserveReplyResult]
