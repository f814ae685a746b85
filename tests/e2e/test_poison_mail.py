"""Poison mail: each hostile message becomes one contact or is quarantined with a reason,
quickly, with a small summary, and never holds up the other mail of its mailbox."""

from __future__ import annotations

import asyncio
import json
import time
import tomllib
from datetime import UTC, datetime

import pytest

from ace_email.analysis import mime
from ace_email.analysis.mime.text import MAX_MIME_DEPTH
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.base import LIST_LIMIT, SUMMARY_TEXT_LIMIT
from ace_email.contracts.contact import ContactState, ContactStatus
from ace_email.contracts.mail_work import ClaimResult
from ace_email.contracts.message import Address, Analysis, MessageRef
from ace_email.decisions.rules import MessageFacts
from ace_email.mail.imap import connect
from ace_email.mail.store import locate
from ace_email.operations.common import contact_state
from ace_email.operations.preview import preview
from ace_email.operations.registry import sync
from devtools.companymail.stack import CompanyMailError
from tests.conftest import Pipeline
from tests.poison import ATTACHMENT_BYTES, POISON, RECIPIENTS
from tests.support import AGENT_EMAIL, MailStack, account_settings, eventually, make_message

ORDINARY_TIMEOUT = 180.0
DEFAULT_MAX_BYTES = 40 * 1024 * 1024
LANGUAGES = ["en", "sv", "de", "fr", "es"]
RECEIVED = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)

CONFIG = """
[temporal]
address = "127.0.0.1:1"

[[queues]]
name = "mass-mail"

[[accounts]]
name = "support"
address = "support@example.com"
queue = "support"

[[accounts.rules]]
name = "Mail to us among many"
when = { to = "support@example.com", cc = "cc1999@example.net" }
then = { queue = "mass-mail", category = "mass" }

[accounts.imap]
host = "imap.example.com"
username = "support@example.com"
password_env = "ACE_TEST_UNSET_PASSWORD"

[accounts.smtp]
host = "smtp.example.com"
"""

# What each poison message is meant to become with the default max_message_mb (40).
OUTCOMES: dict[str, str | None] = {
    "huge-attachment": None,
    "many-recipients": None,
    "megabyte-header": None,
    "nul-bytes": None,
    "invalid-utf8": None,
    "nested-50": None,
    "zero-bytes": "empty message",
    "not-mime": "not an email message: no headers",
}


@pytest.fixture(scope="module")
def poison() -> dict[str, bytes]:
    return {name: make() for name, make in POISON.items()}


@pytest.fixture(scope="module")
def rule_settings() -> Settings:
    """An account of its own for the pure-logic tests (the `settings` fixture is the pipeline's)."""
    return Settings.model_validate(tomllib.loads(CONFIG))


def texts(value: object) -> list[str]:
    """Every string inside a JSON-like value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*texts(k), *texts(v))]
    if isinstance(value, list):
        return [t for item in value for t in texts(item)]
    return []


def assert_history_safe(analysis: Analysis) -> None:
    """Small, and nothing in it Temporal or a search attribute would refuse."""
    dumped = analysis.model_dump_json(by_alias=True).encode("utf-8")
    assert len(dumped) <= mime.JSON_BUDGET
    for text in texts(json.loads(dumped)):
        text.encode("utf-8")  # no lone surrogates
        assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in text), text
    assert len(analysis.subject) <= SUMMARY_TEXT_LIMIT
    assert len(analysis.to) <= LIST_LIMIT and len(analysis.cc) <= LIST_LIMIT
    assert len(analysis.attachments) <= LIST_LIMIT and len(analysis.references) <= LIST_LIMIT


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(POISON))
def test_poison_analysis_is_bounded_and_precise(name: str, poison: dict[str, bytes]) -> None:
    raw = poison[name]
    analysis = mime.analyse(raw, max_bytes=DEFAULT_MAX_BYTES, languages=LANGUAGES)
    assert analysis.quarantine_reason == OUTCOMES[name]
    assert analysis.size == len(raw)
    assert_history_safe(analysis)
    sender, subject, message_id = mime.headline(raw)
    for text in (sender, subject, message_id or ""):
        assert len(text) <= SUMMARY_TEXT_LIMIT
        assert not any(ord(c) < 32 for c in text)
    ref = MessageRef(
        account="support",
        folder="INBOX",
        uidvalidity=1,
        uid=1,
        key=mime.message_key(raw),
        message_id=message_id,
        size=len(raw),
    )
    claim = ClaimResult(ref=ref, analysis=analysis)
    assert len(claim.model_dump_json(by_alias=True)) < 16 * 1024


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(POISON))
def test_poison_rules_and_preview(
    name: str, poison: dict[str, bytes], rule_settings: Settings
) -> None:
    raw = poison[name]
    result = preview(rule_settings, "support", raw, received_at=RECEIVED)
    assert result.analysis.quarantine_reason == OUTCOMES[name]
    assert (result.routing is None) == (OUTCOMES[name] is not None)
    assert result.contact_id == ids.contact_workflow_id("support", mime.message_key(raw))
    assert_history_safe(result.analysis)
    if result.auto_reply_message is not None:
        assert len(result.auto_reply_message) < 200_000
    facts = MessageFacts(
        analysis=result.analysis,
        received_at=RECEIVED,
        body=mime.body_text(raw),
        headers=mime.decoded_header_fields(raw),
        to=mime.header_addresses(raw, "To"),
        cc=mime.header_addresses(raw, "Cc"),
    )
    assert len(facts.body) <= mime.BODY_TEXT_LIMIT and len(facts.headers) <= 200
    rule_settings.account("support").routing(facts)


def test_huge_attachment_is_a_contact_under_the_default_limit_and_quarantined_above_a_lower(
    poison: dict[str, bytes],
) -> None:
    raw = poison["huge-attachment"]
    analysis = mime.analyse(raw, max_bytes=DEFAULT_MAX_BYTES)
    assert analysis.quarantine_reason is None
    assert [(a.filename, a.size) for a in analysis.attachments] == [
        ("archive.zip", ATTACHMENT_BYTES)
    ]
    limit = 20 * 1024 * 1024
    small = mime.analyse(raw, max_bytes=limit)
    assert small.quarantine_reason == f"too large: {len(raw)} bytes > limit {limit}"
    assert small.subject == "Poison: the whole archive attached"
    assert small.attachments == []  # the body of a message over the limit is not read


def test_five_thousand_recipients_are_summarised_with_a_count(poison: dict[str, bytes]) -> None:
    analysis = mime.analyse(poison["many-recipients"])
    assert analysis.recipients_total == RECIPIENTS
    assert len(analysis.to) == len(analysis.cc) == LIST_LIMIT
    assert analysis.to[0] == Address(name="Customer 0", addr="customer0@example.org")
    assert analysis.to[-1] == Address(name=f"… and {3000 - LIST_LIMIT + 1:,} more")
    assert analysis.cc[-1] == Address(name=f"… and {2000 - LIST_LIMIT + 1:,} more")
    assert mime.omitted(analysis.to[-1].name) == 3000 - LIST_LIMIT + 1


def test_rules_see_every_recipient_not_only_the_summarised_ones(
    poison: dict[str, bytes], rule_settings: Settings
) -> None:
    """Our address is the 2,501st in To, the Cc condition the 2,000th: past the summary."""
    result = preview(rule_settings, "support", poison["many-recipients"], received_at=RECEIVED)
    assert result.routing is not None
    assert (result.routing.rule, result.routing.queue) == ("Mail to us among many", "mass-mail")
    to = mime.header_addresses(poison["many-recipients"], "To")
    assert len(to) == 3000 and to[2500] == "support@example.com"


def test_trimming_to_the_budget_keeps_the_count_of_what_was_left_out() -> None:
    names = ", ".join(f'"{"N" * 190}{i}" <{"a" * 150}{i}@example.org>' for i in range(120))
    raw = f"From: a@example.org\nTo: {names}\nCc: {names}\n\nx\n".encode()
    analysis = mime.analyse(raw)
    assert len(analysis.model_dump_json(by_alias=True).encode()) <= mime.JSON_BUDGET
    for addresses in (analysis.to, analysis.cc):
        listed = [a for a in addresses if a.addr]
        assert addresses[-1].addr == "" and mime.omitted(addresses[-1].name) == 120 - len(listed)


def test_a_megabyte_subject_is_cut_and_says_so(poison: dict[str, bytes]) -> None:
    raw = poison["megabyte-header"]
    analysis = mime.analyse(raw)
    assert len(analysis.subject) == SUMMARY_TEXT_LIMIT
    assert analysis.subject.startswith("poison poison") and analysis.subject.endswith("…")
    assert any("characters long; cut" in problem for problem in analysis.problems)
    assert mime.headline(raw)[1] == analysis.subject


def test_nul_bytes_never_reach_the_summary(poison: dict[str, bytes]) -> None:
    raw = poison["nul-bytes"]
    analysis = mime.analyse(raw)
    assert "\\u0000" not in analysis.model_dump_json()
    assert analysis.subject == "Poison with NUL bytes"
    assert analysis.sender is not None and analysis.sender.addr == "pat@example.org"
    assert "\x00" not in "".join(str(part) for part in mime.headline(raw))
    assert mime.body_text(raw) == "BodywithNULs"


def test_invalid_utf8_in_headers_is_decoded_leniently(poison: dict[str, bytes]) -> None:
    analysis = mime.analyse(poison["invalid-utf8"])
    assert analysis.subject.startswith("Poison: café")
    assert analysis.sender == Address(name="Jörg Pöison", addr="joerg@example.org")
    assert any("not UTF-8" in problem for problem in analysis.problems)


def test_nesting_fifty_deep_is_read_to_a_bounded_depth(poison: dict[str, bytes]) -> None:
    analysis = mime.analyse(poison["nested-50"])
    assert analysis.subject == "Poison: forwarded fifty times"
    assert 0 < len(analysis.attachments) <= MAX_MIME_DEPTH
    assert {a.content_type for a in analysis.attachments} == {"message/rfc822"}
    assert f"MIME nesting deeper than {MAX_MIME_DEPTH} levels: not read" in analysis.problems


def test_a_zero_byte_message_has_one_stable_key(poison: dict[str, bytes]) -> None:
    keys = {mime.message_key(poison["zero-bytes"]) for _ in range(3)}
    assert keys == {mime.message_key(b"")}
    assert keys != {mime.message_key(poison["not-mime"])}


def stored_form(mail: MailStack, raw: bytes) -> bytes:
    """The message as the server stores it, which its contact is keyed by: Dovecot turns NUL
    bytes into 0x80 and bare line feeds into CRLF, the embedded server keeps every byte."""
    if mail.kind == "embedded":
        return raw
    mail.deliver(AGENT_EMAIL, raw)
    return mail.raw_folder(AGENT_EMAIL)[-1][1]


def contact_id_of(pipeline: Pipeline, raw: bytes) -> str:
    return ids.contact_workflow_id(pipeline.account, mime.message_key(raw))


async def settled_state(pipeline: Pipeline, raw: bytes, timeout: float) -> ContactState:
    """The contact of `raw` once it is queued or quarantined."""
    contact_id = contact_id_of(pipeline, raw)

    async def check() -> ContactState:
        try:
            state = await contact_state(pipeline.client, contact_id)
        except Exception as exc:  # not started yet
            raise AssertionError(f"{contact_id}: {exc}") from exc
        assert state.status in (ContactStatus.QUEUED, ContactStatus.QUARANTINED), state.status
        return state

    return await eventually(check, timeout=timeout, interval=0.1)


async def all_queued(pipeline: Pipeline, messages: list[bytes]) -> float:
    """Seconds until every message in `messages` is a queued contact."""
    started = time.monotonic()
    await asyncio.gather(*(settled_state(pipeline, raw, ORDINARY_TIMEOUT) for raw in messages))
    return time.monotonic() - started


async def history_bytes(pipeline: Pipeline, workflow_id: str) -> int:
    history = await pipeline.client.get_workflow_handle(workflow_id).fetch_history()
    return len(history.to_json().encode())


FOLDERS = ("INBOX", "Processing", "Quarantine", "Archive")


@pytest.mark.e2e
@pytest.mark.timeout(900)
async def test_poison_mail_is_contact_or_quarantined_and_blocks_nothing(
    pipeline: Pipeline,
) -> None:
    mail = pipeline.mail
    await sync(pipeline.client, pipeline.settings)

    baseline = [make_message(f"Ordinary before {i}", f"Plain mail number {i}.") for i in range(4)]
    for raw in baseline:
        mail.deliver(mail.support, raw)
    without_poison = await all_queued(pipeline, baseline)

    poison = {name: make() for name, make in POISON.items()}
    if mail.kind == "company":
        # Dovecot refuses to store an empty message: on that server it can never arrive.
        with pytest.raises(CompanyMailError, match="zero byte"):
            mail.deliver(mail.support, poison.pop("zero-bytes"))
    ordinary = [
        make_message(f"Ordinary among poison {i}", "Still here?") for i in range(len(poison))
    ]
    stored = {name: stored_form(mail, raw) for name, raw in poison.items()}
    for raw, plain in zip(poison.values(), ordinary, strict=True):
        mail.deliver(mail.support, raw)
        mail.deliver(mail.support, plain)
    with_poison = await all_queued(pipeline, ordinary)

    outcomes: dict[str, ContactState] = {}
    for name, raw in stored.items():
        outcomes[name] = await settled_state(pipeline, raw, ORDINARY_TIMEOUT)
    later = make_message("Ordinary after the poison", "And the worker still works.")
    mail.deliver(mail.support, later)
    after_poison = await all_queued(pipeline, [later])

    print(
        f"\nordinary mail queued: {without_poison:.2f} s for 4 without poison, "
        f"{with_poison:.2f} s for 8 among the poison, {after_poison:.2f} s for one after"
    )
    for name, state in outcomes.items():
        history = await history_bytes(pipeline, state.id)
        print(
            f"{name}: {state.status.value} ({state.quarantine_reason or state.rule}) "
            f"history {history} bytes"
        )

    quarantined = {"zero-bytes", "not-mime"} & poison.keys()
    expected = {
        name: ContactStatus.QUARANTINED if name in quarantined else ContactStatus.QUEUED
        for name in poison
    }
    assert {name: state.status for name, state in outcomes.items()} == expected
    if "zero-bytes" in outcomes:
        assert outcomes["zero-bytes"].quarantine_reason == "empty message"
    assert outcomes["not-mime"].quarantine_reason == "not an email message: no headers"
    for name, state in outcomes.items():
        assert state.account == pipeline.account, name
        assert state.message is not None, name
        folder = "Quarantine" if state.status is ContactStatus.QUARANTINED else "Processing"
        assert state.message.folder == folder, name
        assert await history_bytes(pipeline, state.id) < 64 * 1024, name

    delivered = len(baseline) + len(poison) + len(ordinary) + 1
    counts = {folder: await mail.count(mail.support, folder) for folder in FOLDERS}
    assert counts == {
        "INBOX": 0,
        "Processing": delivered - len(quarantined),
        "Quarantine": len(quarantined),
        "Archive": 0,
    }
    mailbox_history = await history_bytes(pipeline, ids.mailbox_workflow_id(pipeline.account))
    assert mailbox_history < 512 * 1024


@pytest.mark.e2e
@pytest.mark.embedded_only
async def test_a_stale_empty_read_is_never_taken_for_an_empty_message(mail: MailStack) -> None:
    """A session whose view of the inbox is stale gets an empty body for a message another
    session has just moved; the claim looks further and finds the whole message."""
    settings = account_settings(
        name="support",
        stack=mail,
        temporal_address="127.0.0.1:1",
        namespace="default",
        task_queue="unused",
    )
    account = settings.accounts[0]
    raw = make_message("Moved under our feet")
    mail.deliver(mail.support, raw)

    def claim_after_a_move() -> tuple[MessageRef, bytes] | None:
        stale, other = connect(account), connect(account)
        try:
            for session in (stale, other):  # as the pool does on connecting
                session.ensure_folders(["Processing"])
            validity = stale.select("INBOX")
            fetched = stale.fetch_one(1, "(UID RFC822.SIZE)")
            assert fetched is not None and fetched.size == len(raw)
            other.select("INBOX")
            other.move(1, "Processing")
            ref = MessageRef(
                account="support",
                folder="INBOX",
                uidvalidity=validity,
                uid=1,
                key=mime.message_key(raw),
                size=len(raw),
            )
            return locate(stale, ref, ["INBOX", "Processing"])
        finally:
            stale.client.shutdown()
            other.client.shutdown()

    found = await asyncio.to_thread(claim_after_a_move)
    assert found is not None
    where, content = found
    assert where.folder == "Processing" and content == raw
