"""AutoReplyLedgerWorkflow: one per account, the durable memory behind loop and flood limits.

Every automatic reply is reserved here first, through the `reserve` update: at most one per
sender per period, at most a capped number per hour for the account. Updates are handled one
at a time in arrival order, so twenty emails from one sender in the same second get one reply.
A grant is remembered by contact id, so a retried reservation gets the same answer. An address
that bounced hard is suppressed (`suppress`) for the account's `bounce_suppress_days`: no
automatic reply goes to it meanwhile. The state is small (entries expire after the period,
suppressions at their end) and travels through continue-as-new; a ledger with nothing left to
remember ends, and the next reservation or suppression starts it again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts.ledger import (
        LedgerEntry,
        LedgerInput,
        ReserveReplyAnswers,
        ReserveReplyBatch,
        ReserveReplyRequest,
        ReserveReplyResult,
        Suppression,
        SuppressRequest,
    )


@workflow.defn
class AutoReplyLedgerWorkflow:
    @workflow.init
    def __init__(self, ledger: LedgerInput) -> None:
        self._account = ledger.account
        self._entries: list[LedgerEntry] = list(ledger.entries)
        self._suppressed: dict[str, Suppression] = {s.address: s for s in ledger.suppressed}
        self._updates = 0
        self._updates_per_run = ledger.updates_per_run

    @workflow.run
    async def run(self, ledger: LedgerInput) -> None:
        while True:
            expiry = self._next_expiry()
            try:
                await workflow.wait_condition(
                    lambda: (
                        self._updates >= self._updates_per_run
                        or workflow.info().is_continue_as_new_suggested()
                    ),
                    timeout=expiry,
                )
            except TimeoutError:
                self._prune(workflow.now())
                if not self._remembers():
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    if not self._remembers():
                        return
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            self._prune(workflow.now())
            workflow.continue_as_new(
                LedgerInput(
                    account=self._account,
                    entries=self._entries,
                    suppressed=list(self._suppressed.values()),
                    updates_per_run=self._updates_per_run,
                )
            )

    @workflow.update
    def reserve(self, request: ReserveReplyRequest) -> ReserveReplyResult:
        """May this contact send its automatic reply? Answers the same for the same contact."""
        self._updates += 1
        return self._reserve(request)

    @workflow.update
    def reserve_many(self, batch: ReserveReplyBatch) -> ReserveReplyAnswers:
        """`reserve` for several contacts at once, in order: one update for a worker's burst."""
        self._updates += 1
        return ReserveReplyAnswers(results=[self._reserve(r) for r in batch.requests])

    @workflow.update
    def suppress(self, request: SuppressRequest) -> int:
        """Spare addresses that bounced hard automatic replies until each one's `until`; a
        later bounce extends it. Answers how many addresses are suppressed now."""
        self._updates += 1
        for suppression in request.suppressions:
            address = suppression.address.lower()
            known = self._suppressed.get(address)
            if known is None or known.until < suppression.until:
                self._suppressed[address] = suppression.model_copy(update={"address": address})
        self._prune(workflow.now())
        return len(self._suppressed)

    def _reserve(self, request: ReserveReplyRequest) -> ReserveReplyResult:
        now = workflow.now()
        for entry in self._entries:
            if entry.contact_id == request.contact_id:
                return ReserveReplyResult(allowed=True, reason="reserved")
        self._prune(now)
        sender = request.sender.lower()
        suppressed = self._suppressed.get(sender)
        if suppressed is not None:
            return ReserveReplyResult(
                allowed=False,
                reason=(
                    f"not sent: {sender} is undeliverable until {suppressed.until:%Y-%m-%d} "
                    f"({suppressed.reason})"
                ),
            )
        for entry in self._entries:
            if entry.sender == sender and now - entry.at < request.per_sender_period:
                return ReserveReplyResult(
                    allowed=False,
                    reason=(
                        f"not sent: {sender} got an automatic reply at "
                        f"{entry.at:%Y-%m-%d %H:%M} UTC (contact {entry.contact_id}); at most "
                        f"one per sender per {_span(request.per_sender_period)}"
                    ),
                )
        last_hour = [e for e in self._entries if now - e.at < timedelta(hours=1)]
        if len(last_hour) >= request.cap_per_hour:
            return ReserveReplyResult(
                allowed=False,
                reason=(
                    f"not sent: the account's cap of {request.cap_per_hour} automatic replies "
                    "per hour is reached"
                ),
            )
        self._entries.append(
            LedgerEntry(
                contact_id=request.contact_id,
                sender=sender,
                at=now,
                keep_for=max(request.per_sender_period, timedelta(hours=1)),
            )
        )
        return ReserveReplyResult(allowed=True, reason="reserved")

    @workflow.query
    def entries(self) -> list[LedgerEntry]:
        return self._entries

    @workflow.query
    def suppressed(self) -> list[Suppression]:
        return list(self._suppressed.values())

    def _remembers(self) -> bool:
        return bool(self._entries or self._suppressed)

    def _prune(self, now: datetime) -> None:
        self._entries = [e for e in self._entries if now - e.at < e.keep_for]
        if self._suppressed:
            self._suppressed = {a: s for a, s in self._suppressed.items() if s.until > now}

    def _next_expiry(self) -> timedelta:
        ends = [e.at + e.keep_for for e in self._entries]
        ends += [s.until for s in self._suppressed.values()]
        if not ends:
            return timedelta(minutes=10)
        return max(min(ends) - workflow.now(), timedelta(seconds=1))


def _span(period: timedelta) -> str:
    hours = period.total_seconds() / 3600
    return f"{hours:g} h" if hours >= 1 else f"{period.total_seconds() / 60:g} min"
