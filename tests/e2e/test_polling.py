"""The poll loop's cursor never passes an email it has not handed over, on real servers."""

from __future__ import annotations

from typing import Any

from ace_email.config.settings import Settings
from ace_email.contracts.mailbox import MailboxCursor, PollRequest
from ace_email.contracts.message import Analysis, MessageRef, Routing
from ace_email.mail.imap import Fetched, ImapSession
from ace_email.mail.imap_pool import ImapPool
from ace_email.mail.intake import poll
from ace_email.mail.store import fetched_prefix
from tests.support import MailStack, make_message


class LosesOneBody:
    """A real session whose first body fetch leaves one listed UID out, as a server still
    storing that message (or a session not yet synced) answers."""

    def __init__(self, session: ImapSession, lost: int) -> None:
        self._session = session
        self._lost: int | None = lost

    def fetch(self, uids: list[int], items: str) -> dict[int, Fetched]:
        found = self._session.fetch(uids, items)
        if "BODY" in items and self._lost in found:
            del found[self._lost]
            self._lost = None
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def test_the_cursor_stops_before_the_first_uid_that_did_not_come_back() -> None:
    assert fetched_prefix([4, 5, 6, 7], {4, 5, 7}) == [4, 5]
    assert fetched_prefix([4, 5], {4, 5}) == [4, 5]
    assert fetched_prefix([4, 5], {5}) == []
    assert fetched_prefix([], set()) == []


async def test_an_email_listed_but_not_fetched_is_handed_over_on_the_next_poll(
    mail: MailStack, settings: Settings
) -> None:
    for n in range(3):
        await mail.send(make_message(f"Question {n}", f"Email {n}."))
    account = settings.accounts[0]
    request = PollRequest(account=account.name, folder=account.imap.folder, cursor=MailboxCursor())
    pool = ImapPool(settings)
    try:
        with pool.session(account.name) as session:
            session.select(request.folder, readonly=True, refresh=True)
            uids = session.search("ALL")
            assert len(uids) == 3
            first = poll(LosesOneBody(session, uids[1]), request)  # type: ignore[arg-type]
            assert [m.ref.uid for m in first.messages] == uids[:1]
            assert first.cursor.last_uid == uids[0]
            assert not first.more, "a server that keeps failing is not polled in a hot loop"

            second = poll(session, request.model_copy(update={"cursor": first.cursor}))
            assert [m.ref.uid for m in second.messages] == uids[1:]
            assert second.cursor.last_uid == uids[2]
    finally:
        pool.close_all()


async def test_a_message_the_poll_cannot_analyse_is_handed_over_for_its_claim_to_analyse(
    mail: MailStack, settings: Settings
) -> None:
    for n in range(2):
        await mail.send(make_message(f"Question {n}", f"Email {n}."))
    account = settings.accounts[0]
    request = PollRequest(
        account=account.name, folder=account.imap.folder, cursor=MailboxCursor(), analyse=True
    )

    def breaks_on_the_first(raw: bytes, ref: MessageRef) -> tuple[Analysis, Routing | None]:
        if b"Question 0" in raw:
            raise RuntimeError("analysis bug")
        return Analysis(size=len(raw)), None

    pool = ImapPool(settings)
    try:
        with pool.session(account.name) as session:
            result = poll(session, request, breaks_on_the_first)
    finally:
        pool.close_all()
    assert len(result.messages) == 2
    # Postfix may deliver the two in either order: one of them, whichever, broke.
    assert sorted(m.analysis is None for m in result.messages) == [False, True]
    assert result.cursor.last_uid == result.messages[-1].ref.uid
