"""A contact's email forwarded to an outside address: a new message from the account, the
agent's note as its text, and the original attached unchanged (message/rfc822)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from ace_email.compose.messages import body_text, mailbox, one_line, policy_for

_LINE_END = re.compile(rb"\r\n|\r|\n")


def forward_subject(original_subject: str, reference: str) -> str:
    """`Fwd: subject [#REF]`, once."""
    subject = one_line(original_subject) or "(no subject)"
    tag = f"[#{reference}]"
    if tag not in subject:
        subject = f"{subject} {tag}"
    return subject if subject.lower().startswith("fwd:") else f"Fwd: {subject}"


def build_forward(
    *,
    from_address: str,
    to_address: str,
    subject: str,
    reference: str,
    message_id: str,
    contact_id: str,
    date: datetime,
    note: str,
    original: bytes,
    original_from: str = "",
    original_date: str = "",
) -> bytes:
    """The forward as bytes. Raises ValueError for anything but exactly one address in
    `from_address` or `to_address`. The original's bytes are attached as they are (line ends
    made CRLF), so its headers, attachments and signatures reach the recipient intact."""
    message = EmailMessage(policy=policy_for(from_address, to_address))
    message["From"] = mailbox(from_address, "", "From")
    message["To"] = mailbox(to_address, "", "forward-to")
    message["Subject"] = forward_subject(subject, reference)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = one_line(message_id, 998)
    message["X-Ace-Contact"] = one_line(contact_id, 200)
    introduction = "\n".join(
        line
        for line in (
            "---------- Forwarded message ----------",
            f"From: {one_line(original_from, 300)}" if original_from else "",
            f"Date: {one_line(original_date, 100)}" if original_date else "",
            f"Subject: {one_line(subject, 300)}",
        )
        if line
    )
    text = f"{note.strip()}\n\n{introduction}\n" if note.strip() else f"{introduction}\n"
    message.set_content(body_text(text))
    message.make_mixed()
    crlf = _LINE_END.sub(b"\r\n", original)
    boundary = f"ace-forward-{uuid.uuid4().hex}"
    while boundary.encode() in crlf:  # a forward of a forward of ...
        boundary = f"ace-forward-{uuid.uuid4().hex}"
    message.set_boundary(boundary)
    attached = EmailMessage(policy=message.policy)
    attached["Content-Type"] = "message/rfc822"
    attached["Content-Disposition"] = 'attachment; filename="original.eml"'
    attached["Content-Transfer-Encoding"] = "7bit" if crlf.isascii() else "8bit"
    # The generator writes only ASCII: a placeholder stands in for the original's bytes.
    placeholder = f"ace-original-{uuid.uuid4().hex}"
    attached.set_payload(placeholder)
    message.attach(attached)
    return message.as_bytes().replace(placeholder.encode(), crlf.rstrip(b"\r\n"), 1)
