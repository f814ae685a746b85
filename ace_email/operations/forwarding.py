"""Forward or redirect a contact's email to an outside address (`starter.py forward`,
`starter.py redirect`, the desk's "Send on" form).

A forward is a new message from the account's return address: the note as its text, the
original attached unchanged. It is written to the outbox first under a Message-ID made from
the contact, the address and the note, as a reply is; the contact then sends it and files it
in the Sent folder. A redirect resends the original itself under Resent-* fields (RFC 5322
section 3.6.6); its Resent-Message-ID is made from the contact and the address. Either way the
same request twice sends once, and nothing of the email enters workflow history.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Literal

from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.compose.forward import build_forward
from ace_email.compose.messages import mailbox
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.base import Channel
from ace_email.contracts.contact import CommandResult, ContactStatus, ForwardRequest
from ace_email.operations.common import Refused, contact_state, contact_update
from ace_email.operations.desk import account_of, fetch_message, to_outbox

Mode = Literal["forward", "redirect"]
OPEN = (
    ContactStatus.QUEUED,
    ContactStatus.OFFERED,
    ContactStatus.ASSIGNED,
    ContactStatus.DELIVERED,
)


async def send_on(
    client: Client,
    settings: Settings,
    contact_id: str,
    to: str,
    *,
    mode: Mode,
    note: str = "",
    by: str = "",
) -> CommandResult:
    """Forward (with `note`) or redirect the contact's email to `to`, once."""
    state = await contact_state(client, contact_id)
    if state.channel is not Channel.EMAIL:
        raise Refused(
            f"contact {contact_id} is a {state.channel.value} contact; it never leaves the "
            "built-in interface, so it is neither delivered nor forwarded"
        )
    if state.status not in OPEN:
        raise Refused(
            f"contact {contact_id} is {state.status.value}; only an open contact "
            f"({', '.join(s.value for s in OPEN)}) can be forwarded or redirected"
        )
    if state.message is None:
        raise Refused(f"contact {contact_id} has no email to send on")
    address = to.strip()
    try:
        mailbox(address, "", "forward-to")
    except ValueError as exc:
        raise Refused(str(exc)) from None
    account = account_of(settings, state)
    key = ids.contact_key(contact_id, account.name)
    if mode == "redirect":
        digest = hashlib.sha256(f"redirect\n{address.lower()}".encode()).hexdigest()
        message_id = ids.forward_message_id(account.name, key, mode, digest, account.reply_from)
    else:
        digest = hashlib.sha256(f"forward\n{address.lower()}\n{note}".encode()).hexdigest()
        message_id = ids.forward_message_id(account.name, key, mode, digest, account.reply_from)
        original = await fetch_message(settings, account, state.message, contact_id)
        analysis = mime.analyse(original, languages=None)
        try:
            raw = build_forward(
                from_address=account.reply_from,
                to_address=address,
                subject=state.subject,
                reference=state.reference,
                message_id=message_id,
                contact_id=contact_id,
                date=datetime.now(UTC),
                note=note,
                original=original,
                original_from=str(analysis.sender) if analysis.sender else "",
                original_date=f"{analysis.date:%a, %d %b %Y %H:%M %z}" if analysis.date else "",
            )
        except ValueError as exc:
            raise Refused(f"the forward cannot be written: {exc}") from None
        await asyncio.to_thread(to_outbox, settings, account, raw, message_id)
    request = ForwardRequest(mode=mode, to=address, message_id=message_id, by=by)
    result: CommandResult = await contact_update(
        client, contact_id, "forward", request, CommandResult
    )
    return result
