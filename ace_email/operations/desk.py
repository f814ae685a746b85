"""The built-in agent interface, on the command line: an agent's inbox, a contact's message
(fetched from the mail server by its reference), and replies from the account's return
address.

A reply is written to the account's outbox folder first, under a Message-ID made from the
contact and the text; the contact then sends it and files it in the Sent folder. So the
text never enters workflow history, an SMTP outage delays it without losing it, and sending
the same reply twice sends it once.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.compose.messages import build_reply
from ace_email.config.accounts import AccountSettings
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.base import Channel
from ace_email.contracts.contact import CommandResult, ContactState, ContactStatus, ReplyRequest
from ace_email.contracts.message import Attachment, MessageRef
from ace_email.mail.errors import ImapError
from ace_email.mail.imap import quote_string
from ace_email.mail.imap_pool import ImapPool
from ace_email.mail.store import locate
from ace_email.operations import desk
from ace_email.operations.agents_queues import agent_status
from ace_email.operations.common import Refused, contact_state, contact_update, known_agent

SHOWN_HEADERS = ("From", "Reply-To", "To", "Cc", "Date", "Subject", "Message-ID")


class ShownMessage(BaseModel):
    """A contact's message as an agent reads it."""

    contact: ContactState
    headers: list[tuple[str, str]]
    text: str
    attachments: list[Attachment]
    problems: list[str] = []


async def inbox(client: Client, settings: Settings, agent_id: str) -> list[dict[str, Any]]:
    """The contacts an agent holds (offered, assigned, delivered), then those waiting for the
    agent in person."""
    agent = known_agent(settings, agent_id)
    status = await agent_status(client, settings, agent)
    held = [h.contact_id for h in status.held]
    waiting = [p.contact_id for p in status.personal]
    states = await asyncio.gather(*(_state_or_none(client, c) for c in [*held, *waiting]))
    rows: list[dict[str, Any]] = []
    for contact_id, state in zip([*held, *waiting], states, strict=True):
        row: dict[str, Any] = {"id": contact_id, "held": contact_id in held}
        if state is not None:
            row |= {
                "status": state.status.value,
                "channel": state.channel.value,
                "queue": state.queue,
                "from": state.sender,
                "subject": state.subject,
                "reference": state.reference,
                "since": state.assigned_at.isoformat() if state.assigned_at else None,
                "offer_expires_at": (
                    state.offer_expires_at.isoformat() if state.offer_expires_at else None
                ),
                "waiting_for_you": state.waiting_for == agent.id,
            }
        rows.append(row)
    return rows


async def _state_or_none(client: Client, contact_id: str) -> ContactState | None:
    try:
        return await contact_state(client, contact_id)
    except Refused:
        return None


async def show(client: Client, settings: Settings, contact_id: str) -> ShownMessage:
    state, raw = await message(client, settings, contact_id)
    analysis = mime.analyse(raw, languages=None)
    fields = mime.decoded_header_fields(raw, limit=500)
    wanted = {name.lower() for name in SHOWN_HEADERS}
    return ShownMessage(
        contact=state,
        headers=[(name, value) for name, value in fields if name.lower() in wanted],
        text=mime.body_text(raw),
        attachments=analysis.attachments,
        problems=analysis.problems,
    )


async def message(
    client: Client, settings: Settings, contact_id: str
) -> tuple[ContactState, bytes]:
    """A contact's state and its message's raw bytes, fetched from the mail server."""
    state = await contact_state(client, contact_id)
    if state.message is None:
        raise Refused(f"contact {contact_id} has no message")
    raw = await fetch_message(settings, account_of(settings, state), state.message, contact_id)
    return state, raw


async def reply(
    client: Client, settings: Settings, contact_id: str, text: str, *, close: bool
) -> CommandResult:
    """Send `text` to the customer from the account's return address, threaded to the email."""
    state = await contact_state(client, contact_id)
    if state.status is not ContactStatus.ASSIGNED:
        raise Refused(
            f"contact {contact_id} is {state.status.value}; replies are sent for contacts "
            "an agent works on in the built-in interface (assigned)"
        )
    if not state.reply_to:
        what = "work item" if state.channel is not Channel.EMAIL else "contact"
        raise Refused(
            f"contact {contact_id} is a {what} without a reply address; it cannot be replied to"
        )
    if not text.strip():
        raise Refused("the reply is empty")
    if state.message is None:
        raise Refused(f"contact {contact_id} has no message to reply to")
    account = account_of(settings, state)
    raw_original = await fetch_message(settings, account, state.message, contact_id)
    original = mime.analyse(raw_original, languages=None)
    threaded = state.channel is Channel.EMAIL
    key = ids.contact_key(contact_id, account.name)
    digest = hashlib.sha256(text.encode()).hexdigest()
    message_id = ids.reply_message_id(account.name, key, digest, account.reply_from)
    try:
        raw = build_reply(
            from_address=account.reply_from,
            to_address=state.reply_to,
            subject=state.subject,
            reference=state.reference,
            message_id=message_id,
            date=datetime.now(UTC),
            in_reply_to=original.message_id if threaded else None,
            references=original.references if threaded else [],
            text=text,
        )
    except ValueError as exc:
        raise Refused(f"the reply cannot be written: {exc}") from None
    await asyncio.to_thread(to_outbox, settings, account, raw, message_id)
    request = ReplyRequest(message_id=message_id, to=state.reply_to, close=close)
    result: CommandResult = await contact_update(
        client, contact_id, "reply", request, CommandResult
    )
    return result


def account_of(settings: Settings, state: ContactState) -> AccountSettings:
    try:
        return settings.account(state.account)
    except Exception as exc:
        raise Refused(str(exc)) from None


async def fetch_message(
    settings: Settings, account: AccountSettings, ref: MessageRef, contact_id: str
) -> bytes:
    imap = account.imap
    folders = [
        ref.folder,
        imap.processing_folder,
        imap.archive_folder,
        imap.workitem_folder,
        imap.quarantine_folder,
    ]

    def fetch() -> bytes | None:
        pool = ImapPool(settings)
        try:
            with pool.session(account.name) as session:
                found = locate(session, ref, folders)
                return found[1] if found else None
        finally:
            pool.close_all()

    try:
        raw = await asyncio.to_thread(fetch)
    except ImapError as exc:
        raise Refused(str(exc)) from None
    if raw is None:
        raise Refused(f"the message of contact {contact_id} is no longer on the mail server")
    return raw


def to_outbox(settings: Settings, account: AccountSettings, raw: bytes, message_id: str) -> None:
    """A reply or forward in the outbox, once: a second run with the same text finds it there
    (or in the Sent folder, already sent)."""
    quoted = quote_string(message_id)
    pool = ImapPool(settings)
    try:
        with pool.session(account.name) as session:
            for folder in (account.imap.outbox_folder, account.imap.sent_folder):
                session.select(folder, refresh=True)
                if session.search(f"HEADER Message-ID {quoted}"):
                    return
            session.append(account.imap.outbox_folder, raw)
    except ImapError as exc:
        raise Refused(f"the message could not be stored in the outbox: {exc}") from None
    finally:
        pool.close_all()


def describe_inbox_row(row: dict[str, Any]) -> str:
    if "status" not in row:
        return f"{row['id']}  (does not answer)"
    status = "waiting for you" if row["waiting_for_you"] else row["status"]
    until = f" until {row['offer_expires_at']}" if row.get("offer_expires_at") else ""
    return (
        f"{row['id']}  {status}{until}  [{row['channel']}] [#{row['reference']}] "
        f"{row['from']}: {row['subject']}"
    )


def describe_shown(shown: desk.ShownMessage) -> str:
    state = shown.contact
    lines = [f"{state.id}  {state.status.value}  [{state.channel.value}] [#{state.reference}]"]
    lines += [f"{name}: {value}" for name, value in shown.headers]
    lines += ["", shown.text.rstrip() or "(no text)", ""]
    if shown.attachments:
        lines.append("Attachments:")
        lines += [
            f"  {a.filename or '(unnamed)'}  {a.content_type}  {a.size} bytes"
            for a in shown.attachments
        ]
    if state.follow_ups:
        lines.append(
            f"Follow-ups: {len(state.follow_ups)} (newest: {state.follow_ups[-1].subject})"
        )
    return "\n".join(lines)
