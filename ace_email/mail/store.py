"""The message store on IMAP: a message found by its claim check wherever it lies now, moved
between folders, and the folders that are the records of what left (Sent, Archive, Outbox).

A claim check is a reference (account, folder, UIDVALIDITY, UID, content key, size); a
message keeps its content key wherever it is moved, so it is found by UID while that holds
and by content after that.
"""

from __future__ import annotations

from collections.abc import Collection

from ace_email.analysis import mime
from ace_email.contracts.mail_work import AutoReplyRequest, DeliverRequest, SendReplyRequest
from ace_email.contracts.message import MessageRef
from ace_email.mail.errors import ImapError, MailError
from ace_email.mail.imap import Fetched, ImapSession, quote_string


def fetched_prefix(batch: list[int], fetched: Collection[int]) -> list[int]:
    """The UIDs of the batch up to the first one the server listed but did not return.

    The cursor moves past these only: a message listed by SEARCH can be missing from the FETCH
    that follows (a server still storing it, a session not yet synced), and a cursor past it
    would leave it in the inbox for good. Polled again, it comes back, or is gone from the list.
    """
    for n, uid in enumerate(batch):
        if uid not in fetched:
            return batch[:n]
    return batch


def locate(
    session: ImapSession, ref: MessageRef, folders: list[str]
) -> tuple[MessageRef, bytes] | None:
    """Find the message a reference names, with its bytes: by UID while that is still valid,
    else by content.

    The content search narrows candidates by exact size (a message keeps its size when it
    is moved within a server) and Message-ID, then compares content keys. A folder this
    session already has selected is asked for news first: a server such as Dovecot does not
    show a session mail that arrived since its last sync, not even to UID FETCH.
    """
    if session.select(ref.folder, refresh=True) == ref.uidvalidity:
        fetched = _fetch_whole(session, ref, ref.folder, ref.uid)
        if fetched is not None:
            return ref, fetched.raw
    for folder in dict.fromkeys(folders):
        validity = session.select(folder, refresh=folder != ref.folder)
        criteria = f"LARGER {max(ref.size - 1, 0)} SMALLER {ref.size + 1}" if ref.size else "ALL"
        quoted_id = quote_string(ref.message_id) if ref.message_id else None
        if quoted_id:
            criteria += f" HEADER Message-ID {quoted_id}"
        for uid in session.search(criteria):
            fetched = _fetch_whole(session, ref, folder, uid)
            if fetched is not None and mime.message_key(fetched.raw) == ref.key:
                found = ref.model_copy(
                    update={"folder": folder, "uidvalidity": validity, "uid": uid}
                )
                return found, fetched.raw
    return None


def _fetch_whole(session: ImapSession, ref: MessageRef, folder: str, uid: int) -> Fetched | None:
    """One message with all its bytes, or None where the folder has no such UID.

    A server may answer with an empty body for a message of some size: one expunged or
    moved by another session a moment ago, or a stale view of the folder. That is no
    empty message; the folder is selected afresh and asked once more, then the activity
    fails, to be retried, rather than take a truncated read for the email.
    """
    fetched = session.fetch_one(uid)
    if fetched is None or fetched.raw or not (fetched.size or ref.size):
        return fetched
    session.selected = None
    session.select(folder)
    fetched = session.fetch_one(uid)
    if fetched is None or fetched.raw:
        return fetched
    raise ImapError(
        f"{ref.account}: uid {uid} in {folder!r} came back empty "
        f"({fetched.size or ref.size} bytes expected); will try again"
    )


def move(session: ImapSession, ref: MessageRef, folder: str) -> MessageRef:
    """Move a located message (its folder selected) and return its new reference."""
    target = session.move(ref.uid, folder)
    moved = ref.model_copy(update={"folder": folder, "uidvalidity": 0, "uid": 0})
    if target is not None:
        return moved.model_copy(update={"uidvalidity": target[0], "uid": target[1]})
    found = locate(session, moved, [folder])
    return found[0] if found else moved


def in_folder(
    session: ImapSession, folder: str, message_id: str, field: str = "Message-ID"
) -> bool:
    """Whether `folder` holds a message whose `field` (Message-ID, Resent-Message-ID) is
    `message_id`: the record of a send."""
    quoted = quote_string(message_id)
    session.select(folder)
    return bool(quoted and session.search(f"HEADER {field} {quoted}"))


def outbox_draft(session: ImapSession, folder: str, request: SendReplyRequest) -> tuple[int, bytes]:
    """The reply waiting in the outbox (its folder selected), by its Message-ID."""
    quoted = quote_string(request.message_id)
    session.select(folder, refresh=True)
    for uid in session.search(f"HEADER Message-ID {quoted}") if quoted else []:
        fetched = session.fetch_one(uid)
        if fetched is not None and fetched.raw:
            return uid, fetched.raw
    raise MailError(
        f"{request.policy.name}: the reply {request.message_id} of contact {request.contact_id} "
        f"is in neither {folder!r} nor the Sent folder",
        kind="MessageMissing",
        permanent=True,
    )


def find_for_delivery(
    session: ImapSession, request: DeliverRequest
) -> tuple[MessageRef, bytes] | None:
    """The message in processing with its bytes; None if it is already archived (delivered)."""
    policy = request.policy
    found = locate(session, request.ref, [request.ref.folder, policy.processing_folder])
    if found is not None:
        session.select(found[0].folder)
        return found
    if locate(session, request.ref, [policy.archive_folder]) is not None:
        return None
    raise MailError(
        f"{policy.name}: message {request.ref.uid} of contact {request.contact_id} "
        "is in neither the processing nor the archive folder",
        kind="MessageMissing",
        permanent=True,
    )


def original_text(session: ImapSession, request: AutoReplyRequest) -> str | None:
    """The customer's text, for a template that quotes it; None if the message is gone."""
    policy = request.policy
    folders = [request.ref.folder, policy.processing_folder, policy.archive_folder]
    found = locate(session, request.ref, folders)
    return mime.body_text(found[1]) if found else None
