"""IMAP activities: list new mail, claim a message, move and archive messages, settle duplicate
copies. Thin wrappers over ace_email.mail, on the worker's thread pool (imap-tools blocks).

Each is idempotent: a retry finds the message where the previous try left it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from temporalio import activity

from ace_email.config.settings import Settings
from ace_email.contracts.mail_work import (
    ArchiveRequest,
    ClaimAnalysedRequest,
    ClaimRequest,
    ClaimResult,
    MoveRequest,
    SettleDuplicateRequest,
)
from ace_email.contracts.mailbox import PollRequest, PollResult
from ace_email.contracts.message import Analysis, MessageRef, Routing
from ace_email.mail import intake
from ace_email.mail.errors import ImapError
from ace_email.mail.imap_pool import ImapPool
from ace_email.mail.store import locate, move
from activities.mail_faults import mail_faults

log = logging.getLogger(__name__)

MISSING_AFTER_ATTEMPTS = 3


class MailboxActivities:
    """IMAP work for the mailbox and contact workflows."""

    def __init__(self, pool: ImapPool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    @activity.defn
    @mail_faults(benign=True)  # the mailbox workflow logs a failed poll once
    def poll_mailbox(self, request: PollRequest) -> PollResult:
        """New messages since the cursor, as references; never moves or changes anything."""
        account = self._settings.account(request.account)
        endpoints = account.endpoints()
        assess: intake.Assessor | None = None
        if request.analyse:
            policy = self._settings.policy(account)
            languages = self._settings.analysis.languages
            categories = self._settings.categories
            now = datetime.now(UTC)

            def assess(raw: bytes, ref: MessageRef) -> tuple[Analysis, Routing | None]:
                return intake.assess(
                    raw, ref, policy, account, languages, categories=categories, received_at=now
                )

        with self._pool.session(request.account) as session:
            result = intake.poll(session, request, assess)
        return result.model_copy(update={"connection": endpoints})

    @activity.defn
    @mail_faults()
    def claim_message(self, request: ClaimRequest) -> ClaimResult:
        """Analyse the message and move it out of the inbox: to processing, or quarantine."""
        account = self._settings.account(request.ref.account)
        try:
            with self._pool.session(request.ref.account) as session:
                return intake.claim(
                    session,
                    request,
                    account,
                    self._settings.analysis.languages,
                    self._settings.categories,
                )
        except intake.MessageNotFound:
            _gone_for_sure(request.ref, "to claim")
            return ClaimResult(ref=None)

    @activity.defn
    @mail_faults()
    def claim_analysed(self, request: ClaimAnalysedRequest) -> MessageRef | None:
        """Move a message the poll analysed out of the inbox: to processing, or quarantine."""
        try:
            with self._pool.session(request.ref.account) as session:
                return intake.claim_analysed(session, request)
        except intake.MessageNotFound:
            _gone_for_sure(request.ref, "to claim")
            return None

    @activity.defn
    @mail_faults()
    def archive_message(self, request: ArchiveRequest) -> MessageRef | None:
        """Move a claimed message to the archive (once: a retry finds it there already)."""
        return self._move(request.ref, request.archive_folder, "to archive")

    @activity.defn
    @mail_faults()
    def move_message(self, request: MoveRequest) -> MessageRef | None:
        """Move a message to another folder of its account, e.g. a delivered one back to
        processing to be delivered to another agent (a retry finds it there already)."""
        return self._move(request.ref, request.folder, f"to move to {request.folder}")

    def _move(self, ref: MessageRef, folder: str, purpose: str) -> MessageRef | None:
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

    @activity.defn
    @mail_faults()
    def settle_duplicate(self, request: SettleDuplicateRequest) -> bool:
        """Move a second copy of an email that already has its contact out of the inbox.

        Only called once the contact holds its own copy elsewhere, so any inbox message with
        the same content key is a true duplicate. It is kept (archived), never deleted. Found
        by UID, else by content: a session's view of the inbox can lag behind other sessions'.
        """
        ref = request.duplicate
        with self._pool.session(ref.account) as session:
            found = locate(session, ref, [ref.folder])
            if found is None:
                log.info("%s: duplicate copy uid %s is gone already", ref.account, ref.uid)
                return False
            session.select(found[0].folder)
            session.move(found[0].uid, request.archive_folder)
            return True


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
