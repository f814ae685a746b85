"""Mail coming in: the new messages of an inbox since a cursor, as claim checks, analysed and
routed by the account's rules as they are read; and a message claimed: moved out of the inbox
to processing, or to quarantine with its reason.

Each message is downloaded once on its way to a contact: the poll reads it, analyses it and
hands the analysis to the contact, whose claim then only moves it (`claim_analysed`). A
contact begun without an analysis (released from quarantine, begun before) has its message
read and analysed by `claim`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ace_email.analysis import mime
from ace_email.analysis.keywords import Category
from ace_email.config.accounts import AccountSettings
from ace_email.contracts import ids
from ace_email.contracts.mail_work import ClaimAnalysedRequest, ClaimRequest, ClaimResult
from ace_email.contracts.mailbox import AccountPolicy, MailboxCursor, PollRequest, PollResult
from ace_email.contracts.message import Analysis, MessageHeadline, MessageRef, Routing
from ace_email.decisions.enrichment import enrich, routed
from ace_email.decisions.rules import Decision, MessageFacts
from ace_email.mail.errors import ImapError, MailError
from ace_email.mail.imap import Fetched, ImapSession
from ace_email.mail.store import fetched_prefix, locate, move

log = logging.getLogger(__name__)


class MessageNotFound(MailError):
    """The message a claim check names is in none of the folders it may be in."""

    kind = "MessageNotFound"


# What the poll makes of one message's bytes: its analysis and routing (see `assess`).
Assessor = Callable[[bytes, MessageRef], tuple[Analysis, Routing | None]]


def poll(session: ImapSession, request: PollRequest, assess: Assessor | None = None) -> PollResult:
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
        _headline(request.account, request.folder, uidvalidity, contents[uid], assess)
        for uid in ready
    ]
    last_uid = ready[-1] if ready else cursor.last_uid
    return PollResult(
        cursor=MailboxCursor(uidvalidity=uidvalidity, last_uid=max(last_uid, cursor.last_uid)),
        messages=headlines,
        more=len(ready) == len(batch) < len(new_uids),
        waiting=len(waiting),
        oldest_waiting_at=_arrived_at(session, waiting[0]) if waiting else None,
    )


def _arrived_at(session: ImapSession, uid: int) -> datetime | None:
    """When the server received a message (its INTERNALDATE), for the mailbox's lag."""
    found = session.fetch([uid], "(UID INTERNALDATE)").get(uid)
    return found.arrived_at if found else None


def _headline(
    account: str, folder: str, uidvalidity: int, fetched: Fetched, assess: Assessor | None
) -> MessageHeadline:
    sender, subject, message_id = mime.headline(fetched.raw)
    ref = fetched.ref(account, folder, uidvalidity, message_id)
    headline = MessageHeadline(
        ref=ref, sender=sender, subject=subject, arrived_at=fetched.arrived_at
    )
    if assess is None:
        return headline
    try:
        analysis, routing = assess(fetched.raw, ref)
    except Exception as exc:  # one odd message must not stop the poll: its claim analyses it
        log.warning(
            "%s: uid %s in %r could not be analysed at the poll (%s); its contact will",
            account,
            fetched.uid,
            folder,
            type(exc).__name__,
        )
        return headline
    return headline.model_copy(update={"analysis": analysis, "routing": routing})


def assess(
    raw: bytes,
    ref: MessageRef,
    policy: AccountPolicy,
    account: AccountSettings,
    languages: list[str],
    *,
    categories: Sequence[Category] = (),
    received_at: datetime | None = None,
    released: bool = False,
) -> tuple[Analysis, Routing | None]:
    """One email analysed, enriched (the account's extracted data, the keyword `categories`
    it is in) and routed by the account's rules; a quarantine reason where analysis or a rule
    says so (never where an operator released it)."""
    analysis = _analyse(raw, ref, policy, languages)
    if released:  # an operator's word overrides analysis and rules
        analysis = analysis.model_copy(update={"quarantine_reason": None})
    if analysis.quarantine_reason is not None:
        return analysis, None
    text = mime.body_text(raw)
    analysis = _enrich(analysis, text, account, categories, languages)
    decision = _route(raw, text, analysis, account, received_at)
    return routed(analysis, decision, released=released), decision.routing


def claim(
    session: ImapSession,
    request: ClaimRequest,
    account: AccountSettings,
    languages: list[str],
    categories: Sequence[Category] = (),
) -> ClaimResult:
    ref, policy = request.ref, request.policy
    found = locate(session, ref, [ref.folder, policy.processing_folder, policy.quarantine_folder])
    if found is None:
        raise MessageNotFound(
            f"{ref.account}: message uid {ref.uid} to claim is not in {ref.folder!r}"
        )
    where, raw = found
    analysis, routing = assess(
        raw,
        where,
        policy,
        account,
        languages,
        categories=categories,
        received_at=request.received_at,
        released=request.released,
    )
    claimable = {policy.inbox_folder}
    if request.released:
        claimable.add(policy.quarantine_folder)
    if where.folder not in claimable:  # claimed already, by an earlier try
        return ClaimResult(ref=where, analysis=analysis, routing=routing)
    session.select(where.folder)
    target = policy.quarantine_folder if analysis.quarantine_reason else policy.processing_folder
    moved = move(session, where, target)
    _log_quarantined(ref, where.uid, analysis.quarantine_reason, target)
    return ClaimResult(ref=moved, analysis=analysis, routing=routing)


def claim_analysed(session: ImapSession, request: ClaimAnalysedRequest) -> MessageRef:
    """Move a message the poll analysed out of the inbox, by UID, without reading it again.

    Idempotent: a message no longer under its UID (an earlier try moved it) is looked for by
    content in the target folder and the inbox.
    """
    ref, target = request.ref, request.target_folder
    if session.select(ref.folder, refresh=True) == ref.uidvalidity:
        moved_to = session.move(ref.uid, target)
        if moved_to is not None:
            moved = ref.model_copy(
                update={"folder": target, "uidvalidity": moved_to[0], "uid": moved_to[1]}
            )
            _log_quarantined(ref, ref.uid, request.quarantine_reason, target)
            return moved
    found = locate(session, ref, [target, ref.folder])
    if found is None:
        raise MessageNotFound(
            f"{ref.account}: message uid {ref.uid} to claim is not in {ref.folder!r}"
        )
    where = found[0]
    if where.folder == target:
        return where
    session.select(where.folder)
    moved = move(session, where, target)
    _log_quarantined(ref, where.uid, request.quarantine_reason, target)
    return moved


def _log_quarantined(ref: MessageRef, uid: int, reason: str | None, target: str) -> None:
    if reason:
        log.warning(
            "%s: %s (uid %s, %s bytes) moved to %s: %s",
            ref.account,
            ids.contact_workflow_id(ref.account, ref.key),
            uid,
            ref.size,
            target,
            reason,
        )


def _enrich(
    analysis: Analysis,
    text: str,
    account: AccountSettings,
    categories: Sequence[Category],
    languages: list[str],
) -> Analysis:
    """Extracted data and keyword categories; without them where they fail, never stuck."""
    try:
        return enrich(
            analysis, text, patterns=account.extract, categories=categories, languages=languages
        )
    except Exception as exc:
        log.exception("%s: data and categories of %s failed", account.name, analysis.message_id)
        problems = [*analysis.problems, f"data and categories failed: {type(exc).__name__}"]
        return analysis.model_copy(update={"problems": problems})


def _route(
    raw: bytes,
    text: str,
    analysis: Analysis,
    account: AccountSettings,
    received_at: datetime | None,
) -> Decision:
    """The account's rules applied; a rule that cannot be evaluated routes to the default."""
    facts = MessageFacts(
        analysis=analysis,
        received_at=received_at or datetime.now(UTC),
        body=text,
        headers=mime.decoded_header_fields(raw),
        to=mime.header_addresses(raw, "To"),
        cc=mime.header_addresses(raw, "Cc"),
    )
    try:
        return account.decide(facts)
    except Exception as exc:  # a rule bug must not wedge the contact: route by default
        log.exception("%s: rules failed on %s", account.name, analysis.message_id)
        defaults = account.routing_defaults
        return Decision(
            Routing(
                rule=f"default (rules failed: {type(exc).__name__})",
                queue=defaults.queue,
                priority=defaults.priority,
                skills=list(defaults.skills),
                auto_reply_template=defaults.auto_reply_template if account.auto_reply else None,
            )
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
