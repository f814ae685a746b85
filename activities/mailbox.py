"""IMAP activities: list new mail, claim a message, settle duplicate copies.

They are synchronous (imap-tools blocks) and run on the worker's thread pool. Each is
idempotent: a retry after a crash finds the message where the previous try left it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from ace_email.analysis import mime
from ace_email.config.accounts import AccountSettings
from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.mail_work import (
    ArchiveRequest,
    ClaimRequest,
    ClaimResult,
    MoveRequest,
    SettleDuplicateRequest,
)
from ace_email.contracts.mailbox import AccountPolicy, MailboxCursor, PollRequest, PollResult
from ace_email.contracts.message import Analysis, MessageHeadline, MessageRef, Routing
from ace_email.decisions.rules import MessageFacts
from activities.imap_session import (
    Fetched,
    ImapError,
    ImapLoginError,
    ImapPool,
    ImapSession,
    quote_string,
)

log = logging.getLogger(__name__)


def as_activity_error(exc: Exception, *, benign: bool = False) -> ApplicationError:
    """Map an I/O fault to a typed Temporal error; permanent faults are non-retryable. A
    benign one is logged by the worker at DEBUG only: its workflow reports it."""
    category = ApplicationErrorCategory.BENIGN if benign else ApplicationErrorCategory.UNSPECIFIED
    if isinstance(exc, ConfigError):
        kind, message, permanent = "ConfigError", str(exc), True
    elif isinstance(exc, ImapLoginError):
        kind, message, permanent = "ImapLoginFailed", str(exc), False
    elif isinstance(exc, ImapError):
        kind, message, permanent = "ImapError", str(exc), not exc.transient
    else:
        kind, message, permanent = "ImapConnectionError", f"{type(exc).__name__}: {exc}", False
    return ApplicationError(message, type=kind, non_retryable=permanent, category=category)


class MailboxActivities:
    """IMAP work for the mailbox and contact workflows."""

    def __init__(self, pool: ImapPool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    @activity.defn
    def poll_mailbox(self, request: PollRequest) -> PollResult:
        """New messages since the cursor, as references; never moves or changes anything."""
        try:
            endpoints = self._settings.account(request.account).endpoints()
            with self._pool.session(request.account) as session:
                return _poll(session, request).model_copy(update={"connection": endpoints})
        except (ImapError, ConfigError, OSError, EOFError) as exc:  # the mailbox logs it once
            raise as_activity_error(exc, benign=True) from None

    @activity.defn
    def claim_message(self, request: ClaimRequest) -> ClaimResult:
        """Analyse the message and move it out of the inbox: to processing, or quarantine."""
        try:
            account = self._settings.account(request.ref.account)
            with self._pool.session(request.ref.account) as session:
                return _claim(session, request, account, self._settings.analysis.languages)
        except (ImapError, ConfigError, OSError, EOFError) as exc:
            raise as_activity_error(exc) from None

    @activity.defn
    def archive_message(self, request: ArchiveRequest) -> MessageRef | None:
        """Move a claimed message to the archive (once: a retry finds it there already)."""
        return self._move(request.ref, request.archive_folder, "to archive")

    @activity.defn
    def move_message(self, request: MoveRequest) -> MessageRef | None:
        """Move a message to another folder of its account, e.g. a delivered one back to
        processing to be delivered to another agent (a retry finds it there already)."""
        return self._move(request.ref, request.folder, f"to move to {request.folder}")

    def _move(self, ref: MessageRef, folder: str, purpose: str) -> MessageRef | None:
        try:
            with self._pool.session(ref.account) as session:
                found = locate(session, ref, [ref.folder, folder])
                if found is None:
                    _gone_for_sure(ref, purpose)
                    log.warning("%s: message uid %s %s is gone", ref.account, ref.uid, purpose)
                    return None
                where = found[0]
                if where.folder == folder:
                    return where
                session.select(where.folder)
                return move(session, where, folder)
        except (ImapError, ConfigError, OSError, EOFError) as exc:
            raise as_activity_error(exc) from None

    @activity.defn
    def settle_duplicate(self, request: SettleDuplicateRequest) -> bool:
        """Move a second copy of an email that already has its contact out of the inbox.

        Only called once the contact holds its own copy elsewhere, so any inbox message with
        the same content key is a true duplicate. It is kept (archived), never deleted. Found
        by UID, else by content: a session's view of the inbox can lag behind other sessions'.
        """
        ref = request.duplicate
        try:
            with self._pool.session(ref.account) as session:
                found = locate(session, ref, [ref.folder])
                if found is None:
                    log.info("%s: duplicate copy uid %s is gone already", ref.account, ref.uid)
                    return False
                session.select(found[0].folder)
                session.move(found[0].uid, request.archive_folder)
                return True
        except (ImapError, ConfigError, OSError, EOFError) as exc:
            raise as_activity_error(exc) from None


def _poll(session: ImapSession, request: PollRequest) -> PollResult:
    uidvalidity = session.select(request.folder, readonly=True, refresh=True)
    cursor = request.cursor
    if cursor.uidvalidity != uidvalidity:
        if cursor.uidvalidity:
            log.warning(
                "%s: UIDVALIDITY of %s changed %s -> %s; re-reading the folder (contacts are "
                "keyed by content, so none is created twice)",
                request.account,
                request.folder,
                cursor.uidvalidity,
                uidvalidity,
            )
        cursor = MailboxCursor(uidvalidity=uidvalidity, last_uid=0)
    waiting = session.search("UNDELETED")
    new_uids = [uid for uid in waiting if uid > cursor.last_uid]
    sizes = session.fetch(new_uids[: request.max_messages], "(UID RFC822.SIZE)")
    batch: list[int] = []
    total = 0
    for uid in new_uids[: request.max_messages]:
        size = sizes[uid].size if uid in sizes else 0
        if batch and total + size > request.max_bytes:
            break
        batch.append(uid)
        total += size
    contents = session.fetch(batch, "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[])")
    for fetched in contents.values():
        if fetched.size and not fetched.raw:  # a truncated read would key the wrong contact
            raise ImapError(
                f"{request.account}: uid {fetched.uid} in {request.folder!r} came back empty "
                f"({fetched.size} bytes expected); will try again"
            )
    ready = fetched_prefix(batch, contents)
    if len(ready) < len(batch):
        log.warning(
            "%s: uid %s in %r is listed but did not come back; polling it again",
            request.account,
            batch[len(ready)],
            request.folder,
        )
    headlines = [
        _headline(request.account, request.folder, uidvalidity, contents[uid]) for uid in ready
    ]
    last_uid = ready[-1] if ready else cursor.last_uid
    return PollResult(
        cursor=MailboxCursor(uidvalidity=uidvalidity, last_uid=max(last_uid, cursor.last_uid)),
        messages=headlines,
        more=len(ready) == len(batch) < len(new_uids),
        waiting=len(waiting),
        oldest_waiting_at=_arrived_at(session, waiting[0]) if waiting else None,
    )


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


def _arrived_at(session: ImapSession, uid: int) -> datetime | None:
    """When the server received a message (its INTERNALDATE), for the mailbox's lag."""
    found = session.fetch([uid], "(UID INTERNALDATE)").get(uid)
    return found.arrived_at if found else None


def _headline(account: str, folder: str, uidvalidity: int, fetched: Fetched) -> MessageHeadline:
    sender, subject, message_id = mime.headline(fetched.raw)
    ref = fetched.ref(account, folder, uidvalidity, message_id)
    return MessageHeadline(ref=ref, sender=sender, subject=subject, arrived_at=fetched.arrived_at)


MISSING_AFTER_ATTEMPTS = 3


def _gone_for_sure(ref: MessageRef, purpose: str) -> None:
    """A message not found is declared gone only when later tries, on other sessions, did
    not find it either: one session's view of a folder can lag behind another's moves, and
    "missing" is final for a contact."""
    attempt = activity.info().attempt if activity.in_activity() else MISSING_AFTER_ATTEMPTS
    if attempt < MISSING_AFTER_ATTEMPTS:
        raise ImapError(
            f"{ref.account}: message uid {ref.uid} {purpose} not found in {ref.folder!r} "
            f"(try {attempt} of {MISSING_AFTER_ATTEMPTS} before it counts as gone)"
        )


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


def _claim(
    session: ImapSession, request: ClaimRequest, account: AccountSettings, languages: list[str]
) -> ClaimResult:
    ref, policy = request.ref, request.policy
    found = locate(session, ref, [ref.folder, policy.processing_folder, policy.quarantine_folder])
    if found is None:
        _gone_for_sure(ref, "to claim")
        return ClaimResult(ref=None)
    where, raw = found
    analysis = _analyse(raw, where, policy, languages)
    if request.released:  # an operator's word overrides analysis and rules
        analysis = analysis.model_copy(update={"quarantine_reason": None})
    routing: Routing | None = None
    if analysis.quarantine_reason is None:
        routing = _route(raw, analysis, account, request.received_at)
        by_rule = routing.quarantine_reason if not request.released else None
        analysis = analysis.model_copy(
            update={
                "rule": routing.rule,
                "category": routing.category,
                "quarantine_reason": f"rule '{routing.rule}': {by_rule}" if by_rule else None,
            }
        )
    claimable = {policy.inbox_folder}
    if request.released:
        claimable.add(policy.quarantine_folder)
    if where.folder not in claimable:  # claimed already, by an earlier try
        return ClaimResult(ref=where, analysis=analysis, routing=routing)
    session.select(where.folder)
    target = policy.quarantine_folder if analysis.quarantine_reason else policy.processing_folder
    moved = move(session, where, target)
    if analysis.quarantine_reason:
        log.warning(
            "%s: %s (uid %s, %s bytes) moved to %s: %s",
            ref.account,
            ids.contact_workflow_id(ref.account, ref.key),
            where.uid,
            analysis.size,
            target,
            analysis.quarantine_reason,
        )
    return ClaimResult(ref=moved, analysis=analysis, routing=routing)


def _route(
    raw: bytes, analysis: Analysis, account: AccountSettings, received_at: datetime | None
) -> Routing:
    """The account's rules applied; a rule that cannot be evaluated routes to the default."""
    facts = MessageFacts(
        analysis=analysis,
        received_at=received_at or datetime.now(UTC),
        body=mime.body_text(raw),
        headers=mime.decoded_header_fields(raw),
        to=mime.header_addresses(raw, "To"),
        cc=mime.header_addresses(raw, "Cc"),
    )
    try:
        return account.routing(facts)
    except Exception as exc:  # a rule bug must not wedge the contact: route by default
        log.exception("%s: rules failed on %s", account.name, analysis.message_id)
        defaults = account.routing_defaults
        return Routing(
            rule=f"default (rules failed: {type(exc).__name__})",
            queue=defaults.queue,
            priority=defaults.priority,
            skills=list(defaults.skills),
            auto_reply_template=defaults.auto_reply_template if account.auto_reply else None,
        )


def _analyse(raw: bytes, ref: MessageRef, policy: AccountPolicy, languages: list[str]) -> Analysis:
    try:
        return mime.analyse(
            raw,
            own_addresses=policy.own_addresses,
            max_bytes=policy.max_message_bytes,
            languages=languages,
        )
    except Exception as exc:  # a parser bug must not wedge the contact: keep the mail safe
        log.exception("%s: analysis of uid %s failed", ref.account, ref.uid)
        return Analysis(size=len(raw), quarantine_reason=f"analysis failed: {type(exc).__name__}")
