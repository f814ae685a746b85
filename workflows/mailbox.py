"""MailboxWorkflow: the poll loop of one account. It never holds a message body."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    WorkflowAlreadyStartedError,
)
from temporalio.exceptions import TimeoutError as ActivityTimeout
from temporalio.workflow import ActivityCancellationType, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts import ids
    from ace_email.contracts import search_attributes as sa
    from ace_email.contracts.base import format_duration, policy_digest
    from ace_email.contracts.contact import ContactInput
    from ace_email.contracts.mail_work import SettleDuplicateRequest
    from ace_email.contracts.mailbox import (
        AccountPolicy,
        MailboxHealth,
        MailboxInput,
        MailboxStatus,
        PollRequest,
        RecentEmail,
        WaitingCount,
        WatchRequest,
    )
    from ace_email.contracts.message import MessageHeadline
    from ace_email.decisions import intake_limits
    from activities.intake_guard import IntakeGuardActivities
    from activities.mailbox import MailboxActivities
    from activities.mailbox_watch import WatchActivities
    from workflows import activity_options
    from workflows.contact import ContactWorkflow

MAX_POLLS_PER_RUN = 500
# Health in the Web UI: the AceMailboxHealth search attribute and one-line current details.
HEALTH_PATCH = "mailbox-health"
# The endpoints the polling worker uses, in the memo: `starter.py sync` compares them.
CONNECTION_PATCH = "connection-in-memo"
# The poll analyses what it reads, and each contact starts with its analysis: the claim only
# moves the message (each message downloaded once on its way to a contact).
ANALYSED_AT_POLL_PATCH = "analysed-at-poll"
# Push: the inbox watched by IMAP IDLE beside the loop, which polls when told of new mail.
IDLE_PATCH = "imap-idle-push"
# Overload protection: intake pauses while `max_waiting` contacts wait, and a flood from one
# sender or domain goes to the account's flood queue.
OVERLOAD_PATCH = "overload-protection"


@workflow.defn
class MailboxWorkflow:
    """Polls one mailbox: a timer or a `poll_now` signal; continue-as-new carries the cursor."""

    @workflow.init
    def __init__(self, mailbox: MailboxInput) -> None:
        self._policy: AccountPolicy = mailbox.policy
        self._status = MailboxStatus(
            account=mailbox.policy.name,
            cursor=mailbox.cursor,
            polls=mailbox.polls,
            contacts_started=mailbox.contacts_started,
        )
        self._poll_requested = False
        self._stop = False
        self._failures = 0
        self._published_health: MailboxHealth | None = None
        self._watch: asyncio.Task[None] | None = None
        self._watched_folder: str | None = None
        self._watch_gave_up = False
        self._recent: list[RecentEmail] = list(mailbox.recent)

    @workflow.run
    async def run(self, mailbox: MailboxInput) -> MailboxStatus:
        polls_this_run = 0
        while not self._stop:
            self._keep_watch()
            more = await self._poll_once()
            polls_this_run += 1
            if self._stop:
                break
            if (
                workflow.info().is_continue_as_new_suggested()
                or polls_this_run >= MAX_POLLS_PER_RUN
            ):
                await self._end_watch()
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    MailboxInput(
                        policy=self._policy,
                        cursor=self._status.cursor,
                        polls=self._status.polls,
                        contacts_started=self._status.contacts_started,
                        recent=self._recent,
                    )
                )
            if not more:
                await self._wait_for_next_poll()
        await self._end_watch()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status

    def _keep_watch(self) -> None:
        """Watch the inbox by IDLE while the account wants it: started once per run, ended
        when IDLE is switched off, started again when the inbox folder changes."""
        policy = self._policy
        if self._watch is not None and (
            not policy.idle or policy.inbox_folder != self._watched_folder
        ):
            self._watch.cancel()
            self._watch = None
            self._watch_gave_up = False
            self._status = self._status.model_copy(update={"push": None})
        wanted = policy.idle and not self._stop and not self._watch_gave_up
        if self._watch is None and wanted and workflow.patched(IDLE_PATCH):
            self._watched_folder = policy.inbox_folder
            self._watch = asyncio.create_task(self._watch_inbox(policy.inbox_folder))

    async def _watch_inbox(self, folder: str) -> None:
        """One IDLE watch after another (each ends after a while, to be renewed)."""
        self._status = self._status.model_copy(update={"push": "IMAP IDLE"})
        while True:
            try:
                result = await workflow.execute_activity_method(
                    WatchActivities.watch_mailbox,
                    WatchRequest(account=self._policy.name, folder=folder),
                    start_to_close_timeout=activity_options.IDLE_WATCH_TIMEOUT,
                    heartbeat_timeout=activity_options.IDLE_HEARTBEAT,
                    retry_policy=activity_options.IDLE_RETRY,
                    cancellation_type=ActivityCancellationType.TRY_CANCEL,
                    summary="watch the inbox (IMAP IDLE)",
                )
            except ActivityError as err:
                if not isinstance(err.cause, CancelledError):  # else ended by this loop
                    self._give_up_watch(f"stopped: {_cause(err)}")
                return
            if not result.offered:
                self._give_up_watch("not offered by the IMAP server; polling only")
                return

    def _give_up_watch(self, why: str) -> None:
        self._watch_gave_up = True
        self._status = self._status.model_copy(update={"push": why})
        workflow.logger.warning("mailbox %s: push %s", self._policy.name, why)

    async def _end_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with suppress(asyncio.CancelledError, ActivityError):
                await watch

    @workflow.signal
    def poll_now(self) -> None:
        self._poll_requested = True

    @workflow.signal
    def stop(self) -> None:
        """The account left the configuration: finish the current poll and end."""
        self._stop = True
        self._status = self._status.model_copy(update={"stopping": True})

    @workflow.signal
    def reconfigure(self, policy: AccountPolicy) -> None:
        """Apply a changed account configuration from the next poll on.

        A signal, not an update, so the registry can reconfigure while no worker runs.
        """
        if policy.name != self._policy.name:
            workflow.logger.warning("ignoring configuration for account %s", policy.name)
            return
        if policy != self._policy:
            self._policy = policy
            self._poll_requested = True
            workflow.upsert_memo({"policy": policy_digest(policy)})

    @workflow.query
    def policy(self) -> AccountPolicy:
        return self._policy

    @workflow.query
    def status(self) -> MailboxStatus:
        return self._status

    def _next_wait(self) -> timedelta:
        return activity_options.poll_backoff(
            timedelta(seconds=self._policy.poll_interval_seconds), self._failures
        )

    async def _wait_for_next_poll(self) -> None:
        interval = self._next_wait()
        self._status = self._status.model_copy(update={"next_poll_at": workflow.now() + interval})
        with suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._poll_requested or self._stop,
                timeout=interval,
                timeout_summary="next poll",
            )
        self._poll_requested = False

    async def _room(self) -> int | None:
        """How many new emails this poll may take (None: no limit). With `max_waiting`, while
        that many of the account's contacts wait, none: the loop says it is throttled, and new
        mail stays in the inbox until fewer wait."""
        if self._policy.max_waiting is None or not workflow.patched(OVERLOAD_PATCH):
            return None
        try:
            waiting = await workflow.execute_local_activity_method(
                IntakeGuardActivities.count_waiting,
                WaitingCount(account=self._policy.name),
                start_to_close_timeout=activity_options.ROUTING_TIMEOUT,
                retry_policy=activity_options.GUARD_RETRY,
                summary="count the contacts that wait",
            )
        except ActivityError as err:  # visibility unanswered: intake is not held up by it
            workflow.logger.warning(
                "mailbox %s: cannot count waiting contacts: %s", self._policy.name, _cause(err)
            )
            return None
        room = intake_limits.room_for(waiting, self._policy)
        throttled = intake_limits.throttle_reason(waiting, self._policy) if room == 0 else None
        if throttled != self._status.throttled:
            self._status = self._status.model_copy(update={"throttled": throttled})
            if throttled:
                workflow.logger.warning("mailbox %s: throttled: %s", self._policy.name, throttled)
            self._publish_health()
        return room

    async def _poll_once(self) -> bool:
        room = await self._room()
        if room == 0:
            return False
        now = workflow.now()
        self._status = self._status.model_copy(
            update={"last_poll_at": now, "polls": self._status.polls + 1}
        )
        request = PollRequest(
            account=self._policy.name,
            folder=self._policy.inbox_folder,
            cursor=self._status.cursor,
            analyse=workflow.patched(ANALYSED_AT_POLL_PATCH),
        )
        if room is not None:
            request = request.model_copy(update={"max_messages": min(request.max_messages, room)})
        try:
            result = await workflow.execute_activity_method(
                MailboxActivities.poll_mailbox,
                request,
                start_to_close_timeout=activity_options.imap_timeout(self._policy),
                retry_policy=activity_options.POLL_RETRY,
                summary="poll",
            )
        except ActivityError as err:
            self._failures += 1
            message = self._poll_error(err)
            self._status = self._status.model_copy(
                update={
                    "last_error": message,
                    "failures": self._failures,
                    "failing_since": self._status.failing_since or now,
                }
            )
            if workflow.patched(HEALTH_PATCH):
                self._publish_health()
            else:
                workflow.set_current_details(
                    f"**failing** since {now:%Y-%m-%d %H:%M:%S} UTC: {message}"
                )
            workflow.logger.warning("mailbox %s: poll failed: %s", self._policy.name, message)
            return False
        self._failures = 0
        if result.connection and result.connection != self._status.connection:
            self._status = self._status.model_copy(update={"connection": result.connection})
            if workflow.patched(CONNECTION_PATCH):
                workflow.upsert_memo({"connection": result.connection})
        await asyncio.gather(*(self._start_contact(m) for m in result.messages))
        self._status = self._status.model_copy(
            update={
                "cursor": result.cursor,
                "waiting": result.waiting,
                "oldest_waiting_at": result.oldest_waiting_at,
                "last_success_at": now,
                "last_error": None,
                "failures": 0,
                "failing_since": None,
            }
        )
        if workflow.patched(HEALTH_PATCH):
            self._publish_health()
        else:
            workflow.set_current_details(
                f"**polling** every {self._policy.poll_interval_seconds:g} s · "
                f"{self._status.contacts_started} contacts started · {result.waiting} waiting in "
                f"{self._policy.inbox_folder} · last poll {now:%H:%M:%S} UTC"
            )
        if room is not None and len(result.messages) >= room:
            return False  # up to the mark: count again at the next poll, not at once
        return result.more

    def _poll_error(self, err: ActivityError) -> str:
        if isinstance(err.cause, ActivityTimeout):
            timeout = activity_options.imap_timeout(self._policy).total_seconds()
            return (
                f"{self._policy.name}: the poll did not finish within {timeout:g} s "
                "(IMAP server not answering, or no worker running the poll)"
            )
        return _cause(err)

    def _publish_health(self) -> None:
        """Health as one line in the Web UI, and as a search attribute when it changes."""
        status = self._status
        health = status.health
        if health is not None and health != self._published_health:
            workflow.upsert_search_attributes([sa.MAILBOX_HEALTH.value_set(health.value)])
            self._published_health = health
        workflow.set_current_details(health_line(status, self._policy, workflow.now()))

    def _divert_flood(self, headline: MessageHeadline) -> MessageHeadline:
        """An email of a flood from one sender or domain goes to the account's flood queue,
        with the reason as its rule; others keep their route. Only emails the poll analysed
        and routed are counted."""
        analysis, routing = headline.analysis, headline.routing
        if (
            not intake_limits.limits_floods(self._policy)
            or analysis is None
            or analysis.sender is None
            or not analysis.sender.addr
            or routing is None
            or routing.quarantine_reason is not None
            or not workflow.patched(OVERLOAD_PATCH)
        ):
            return headline
        sender = analysis.sender.addr
        self._recent = intake_limits.remember(self._recent, sender, workflow.now())
        reason = intake_limits.flood_reason(self._recent, sender, self._policy)
        if reason is None:
            return headline
        self._status = self._status.model_copy(update={"diverted": self._status.diverted + 1})
        return headline.model_copy(
            update={
                "analysis": analysis.model_copy(update={"rule": reason}),
                "routing": routing.model_copy(
                    update={"queue": self._policy.flood_queue, "rule": reason}
                ),
            }
        )

    async def _start_contact(self, headline: MessageHeadline) -> None:
        headline = self._divert_flood(headline)
        ref = headline.ref
        contact_id = ids.contact_workflow_id(self._policy.name, ref.key)
        try:
            await workflow.start_child_workflow(
                ContactWorkflow.run,
                ContactInput(
                    ref=ref,
                    policy=self._policy,
                    arrived_at=headline.arrived_at,
                    analysis=headline.analysis,
                    routing=headline.routing,
                ),
                id=contact_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=_summary(headline),
                memo={"from": headline.sender, "subject": headline.subject},
                search_attributes=sa.new_contact(
                    self._policy.name, self._policy.queue, ref, headline.analysis, headline.routing
                ),
            )
        except WorkflowAlreadyStartedError:
            await self._hand_over_duplicate(headline, contact_id)
            return
        self._status = self._status.model_copy(
            update={"contacts_started": self._status.contacts_started + 1}
        )

    async def _hand_over_duplicate(self, headline: MessageHeadline, contact_id: str) -> None:
        """The same email again: its contact settles the copy, or we do if it has ended."""
        self._status = self._status.model_copy(
            update={"duplicates_seen": self._status.duplicates_seen + 1}
        )
        try:
            await workflow.get_external_workflow_handle(contact_id).signal(
                ContactWorkflow.duplicate_seen, headline.ref
            )
        except Exception:  # the contact has ended: its own copy is long out of the inbox
            await workflow.execute_activity_method(
                MailboxActivities.settle_duplicate,
                SettleDuplicateRequest(
                    duplicate=headline.ref, archive_folder=self._policy.archive_folder
                ),
                start_to_close_timeout=activity_options.imap_timeout(self._policy),
                retry_policy=activity_options.IMAP_RETRY,
                summary="archive a duplicate copy",
            )


def _cause(err: ActivityError) -> str:
    if isinstance(err.cause, ApplicationError):
        return err.cause.message
    return str(err.cause) if err.cause else str(err)


def health_line(status: MailboxStatus, policy: AccountPolicy, now: datetime) -> str:
    """A mailbox's health in one line, as the Web UI shows it."""
    waiting = f"{status.waiting} waiting in {policy.inbox_folder}"
    lag = status.lag(now)
    if lag is not None:
        waiting += f", lag {format_duration(lag)}"
    if status.last_error is not None:
        since = status.failing_since or now
        retry = activity_options.poll_backoff(
            timedelta(seconds=policy.poll_interval_seconds), status.failures
        )
        last = (
            f"{status.last_success_at:%Y-%m-%d %H:%M:%S} UTC" if status.last_success_at else "never"
        )
        return (
            f"**failing** since {since:%Y-%m-%d %H:%M:%S} UTC ({status.failures} polls), "
            f"next try in {format_duration(retry)} · last success {last} · {waiting} · "
            f"{status.last_error}"
        )
    if status.throttled is not None:
        return f"**throttled** · {status.throttled} · {waiting}"
    return (
        f"**ok** · polling every {policy.poll_interval_seconds:g} s · {waiting} · "
        f"{status.contacts_started} contacts started · last poll {now:%H:%M:%S} UTC"
    )


def _summary(headline: MessageHeadline) -> str:
    """The Web UI's one line for a contact: "From X: subject"."""
    return f"From {headline.sender or '(unknown sender)'}: {headline.subject or '(no subject)'}"
