"""SMTP activities: the automatic reply, delivery to an agent's own address, a reply from the
built-in interface, and a redirect to an outside address. Thin wrappers over ace_email.mail
and ace_email.compose.

They are async (aiosmtplib); the IMAP bookkeeping around each send (the Sent folder and the
archive folder are the records of what left) runs on a thread, on the pooled sessions. Each
send has a deterministic Message-ID, so a retry first looks for its own record.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ace_email.compose.auto_reply import ReplyParts, compose_auto_reply
from ace_email.compose.messages import build_resent
from ace_email.compose.templates import template_named
from ace_email.config.accounts import AccountSettings
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.base import Channel
from ace_email.contracts.mail_work import (
    AutoReplyRequest,
    AutoReplyResult,
    DeliverRequest,
    DeliverResult,
    RedirectRequest,
    ReplyResult,
    SendReplyRequest,
)
from ace_email.mail.imap_pool import ImapPool
from ace_email.mail.smtp import send, smtp_connection
from ace_email.mail.store import (
    find_for_delivery,
    in_folder,
    locate,
    move,
    original_text,
    outbox_draft,
)
from activities.auto_reply_ledger import ReplyLedger
from activities.mail_faults import mail_faults


class OutboundActivities:
    """Outgoing mail for the contact workflow."""

    def __init__(self, settings: Settings, pool: ImapPool, ledger: ReplyLedger) -> None:
        self._settings = settings
        self._pool = pool
        self._ledger = ledger

    @activity.defn
    @mail_faults()
    async def send_auto_reply(self, request: AutoReplyRequest) -> AutoReplyResult:
        """Send the acknowledgement once: the Sent folder is the record, checked first; then
        the account's ledger is asked, where the request carries a reservation."""
        policy = request.policy
        message_id = ids.auto_reply_message_id(policy.name, request.ref.key, policy.return_address)
        try:
            account = self._settings.account(policy.name)
            now = datetime.now(UTC)
            template_name = account.template_at(request.template, now)
            template = template_named(template_name, self._settings.templates)
            refused = await self._reserve(request)
            async with (
                _one_try_at_a_time(message_id),
                self._pool.lease(policy.name) as session,
            ):
                if await asyncio.to_thread(in_folder, session, policy.sent_folder, message_id):
                    return AutoReplyResult(message_id=message_id, sent=False)
                if refused is not None:
                    return AutoReplyResult(message_id=message_id, sent=False, refused=refused)
                original = None
                if template.quote != "none":
                    original = await asyncio.to_thread(original_text, session, request)
                raw = compose_auto_reply(
                    account.reply_sender(now),
                    self._settings.templates,
                    template_name,
                    ReplyParts(
                        to=request.to,
                        sender_name=request.sender_name,
                        subject=request.subject,
                        reference=request.contact_ref,
                        queue=request.queue,
                        language=request.language,
                        message_id=message_id,
                        in_reply_to=request.original_message_id,
                        references=request.original_references,
                        data=request.data,
                    ),
                    date=datetime.now(UTC),
                    original_text=original,
                )
                _still_in_time(account)
                async with smtp_connection(account) as smtp:
                    await send(
                        smtp, account, sender=policy.return_address, recipient=request.to, raw=raw
                    )
                await asyncio.to_thread(session.append, policy.sent_folder, raw)
        except ValueError as exc:  # a template that cannot render, an unusable address
            raise ApplicationError(
                f"{policy.name}: automatic reply with template {request.template!r}: {exc}",
                type="TemplateError",
                non_retryable=True,
            ) from None
        return AutoReplyResult(message_id=message_id, sent=True)

    async def _reserve(self, request: AutoReplyRequest) -> str | None:
        """Why the account's ledger refuses this reply, if the request asks it; asked before
        an IMAP session is taken, so a busy ledger keeps no session from other work. A reply
        refused is still looked for in Sent: an earlier try may have sent it long ago."""
        if request.reservation is None:
            return None
        reserved = await self._ledger.reserve(request.reservation)
        return None if reserved.allowed else reserved.reason

    @activity.defn
    @mail_faults()
    async def deliver_to_agent(self, request: DeliverRequest) -> DeliverResult:
        """Resend the original to the agent's address, then archive it: the archive is the record.

        If the message is no longer in processing but in the archive, an earlier try got
        through and archived it: nothing is sent twice.
        """
        policy = request.policy
        _email_only(request, "only email is ever sent to an agent's own mailbox")
        resent_id = ids.resent_message_id(
            policy.name, request.ref.key, request.agent_id, policy.return_address
        )
        account = self._settings.account(policy.name)
        async with (
            _one_try_at_a_time(resent_id),
            smtp_connection(account) as smtp,
            self._pool.lease(policy.name) as session,
        ):
            found = await asyncio.to_thread(find_for_delivery, session, request)
            if found is None:
                return DeliverResult(resent_message_id=resent_id, already_delivered=True)
            where, original = found
            raw = build_resent(
                original,
                resent_from=policy.return_address,
                resent_to=request.agent_email,
                resent_message_id=resent_id,
                contact_id=request.contact_id,
                date=datetime.now(UTC),
            )
            _still_in_time(account)
            await send(
                smtp,
                account,
                sender=policy.return_address,
                recipient=request.agent_email,
                raw=raw,
            )
            archived = await asyncio.to_thread(move, session, where, policy.archive_folder)
        return DeliverResult(resent_message_id=resent_id, archived=archived)

    @activity.defn
    @mail_faults()
    async def send_reply(self, request: SendReplyRequest) -> ReplyResult:
        """Send a reply written in the built-in interface: from the outbox to the customer,
        then into the Sent folder, which is the record (checked first, so a retry never sends
        it twice)."""
        policy = request.policy
        account = self._settings.account(policy.name)
        async with (
            _one_try_at_a_time(request.message_id),
            smtp_connection(account) as smtp,
            self._pool.lease(policy.name) as session,
        ):
            if await asyncio.to_thread(in_folder, session, policy.sent_folder, request.message_id):
                return ReplyResult(message_id=request.message_id, sent=False)
            draft = await asyncio.to_thread(outbox_draft, session, policy.outbox_folder, request)
            _still_in_time(account)
            await send(
                smtp, account, sender=policy.return_address, recipient=request.to, raw=draft[1]
            )
            await asyncio.to_thread(session.move, draft[0], policy.sent_folder)
        return ReplyResult(message_id=request.message_id, sent=True)

    @activity.defn
    @mail_faults()
    async def redirect_message(self, request: RedirectRequest) -> ReplyResult:
        """Resend the contact's email unchanged to an outside address, under Resent-* fields,
        and file that copy in the Sent folder: the record, checked first, so it goes once."""
        policy = request.policy
        _email_only(request, "it never leaves the built-in interface")
        resent_id = request.resent_message_id
        account = self._settings.account(policy.name)
        async with (
            _one_try_at_a_time(resent_id),
            smtp_connection(account) as smtp,
            self._pool.lease(policy.name) as session,
        ):
            sent = policy.sent_folder
            if await asyncio.to_thread(in_folder, session, sent, resent_id, "Resent-Message-ID"):
                return ReplyResult(message_id=resent_id, sent=False)
            folders = [request.ref.folder, policy.processing_folder, policy.archive_folder]
            found = await asyncio.to_thread(locate, session, request.ref, folders)
            if found is None:
                raise ApplicationError(
                    f"{policy.name}: the email of contact {request.contact_id} is no longer on "
                    "the mail server; it cannot be redirected",
                    type="MessageMissing",
                    non_retryable=True,
                )
            raw = build_resent(
                found[1],
                resent_from=policy.return_address,
                resent_to=request.to,
                resent_message_id=resent_id,
                contact_id=request.contact_id,
                date=datetime.now(UTC),
            )
            _still_in_time(account)
            await send(smtp, account, sender=policy.return_address, recipient=request.to, raw=raw)
            await asyncio.to_thread(session.append, sent, raw)
        return ReplyResult(message_id=resent_id, sent=True)


_send_locks: dict[str, asyncio.Lock] = {}


_send_tries: Counter[str] = Counter()


@asynccontextmanager
async def _one_try_at_a_time(message_id: str) -> AsyncIterator[None]:
    """Tries of one send take turns in this worker. A try past its time limit keeps running
    (nothing cancels it without heartbeats) while the server starts the next one; in turns,
    the later try finds the earlier one's record instead of sending too."""
    lock = _send_locks.setdefault(message_id, asyncio.Lock())
    _send_tries[message_id] += 1
    try:
        async with lock:
            yield
    finally:
        _send_tries[message_id] -= 1
        if not _send_tries[message_id]:
            del _send_tries[message_id], _send_locks[message_id]


def _email_only(request: DeliverRequest | RedirectRequest, why: str) -> None:
    """Refuse for good to send a work item or social contact out by SMTP."""
    if request.channel is not Channel.EMAIL:
        raise ApplicationError(
            f"{request.policy.name}: contact {request.contact_id} is a "
            f"{request.channel.value} contact; {why}",
            type="NotDeliverable",
            non_retryable=True,
        )


def _still_in_time(account: AccountSettings) -> None:
    """Refuse to start a send this try cannot finish within its time limit: past it, the
    server has given the work to a new try, possibly on another worker."""
    info = activity.info()
    if info.start_to_close_timeout is None:
        return
    deadline = info.started_time + info.start_to_close_timeout
    if datetime.now(UTC) + timedelta(seconds=account.smtp.timeout_seconds) > deadline:
        raise ApplicationError(
            f"{account.name}: too little of this try's time is left to send; a new try will",
            type="TryExpired",
        )
