"""End to end on real servers: email in by SMTP → contact → automatic reply → assign → delivered."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import os
from email.message import Message
from email.policy import default as default_policy

import pytest
from imap_tools import MailBoxUnencrypted
from temporalio.client import Client, WorkflowHandle

from ace_email.analysis import mime
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactState, ContactStatus
from ace_email.contracts.mailbox import MailboxCursor, MailboxInput
from ace_email.operations.common import contact_state
from ace_email.operations.contacts import assign, list_contacts
from ace_email.operations.registry import sync
from tests.conftest import Pipeline
from tests.recording import record_history
from tests.support import (
    AGENT_EMAIL,
    CUSTOMER,
    PASSWORD,
    eventually,
    make_message,
    wait_status,
)
from workflows.contact import ContactWorkflow
from workflows.mailbox import MailboxWorkflow

pytestmark = pytest.mark.e2e


def contact_id_of(pipeline: Pipeline, raw: bytes) -> str:
    return ids.contact_workflow_id(pipeline.account, mime.message_key(raw))


async def account_contacts(pipeline: Pipeline) -> list[dict[str, object]]:
    rows = await list_contacts(pipeline.client, None, 1000, pipeline.account)
    assert all(r["account"] == pipeline.account for r in rows)
    return rows


def body_and_attachments(message: Message) -> tuple[bytes, list[tuple[str | None, bytes]]]:
    body = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    text = body.get_payload(decode=True) if body is not None else b""
    attachments = [
        (part.get_filename(), part.get_payload(decode=True))
        for part in message.iter_attachments()  # type: ignore[attr-defined]
    ]
    return text, attachments


async def test_email_becomes_contact_is_acknowledged_assigned_and_delivered(
    pipeline: Pipeline,
) -> None:
    mail = pipeline.mail
    await sync(pipeline.client, pipeline.settings)
    attachment = ("invoice.pdf", os.urandom(50_000))
    raw = make_message("Broken kettle", "It leaks.\nPlease help.", attachment=attachment)
    await mail.send(raw)
    contact_id = contact_id_of(pipeline, raw)

    state = await wait_status(pipeline.client, contact_id, ContactStatus.QUEUED)
    assert state.sender.endswith(f"<{CUSTOMER}>")
    assert state.subject == "Broken kettle"

    async def one_reply() -> list[Message]:
        replies = await mail.messages(CUSTOMER)
        assert len(replies) == 1, replies
        return replies

    (reply,) = await eventually(one_reply)
    original = email.message_from_bytes(raw, policy=default_policy)
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == original["Message-ID"]
    assert original["Message-ID"] in reply["References"]
    assert "Broken kettle" in reply["Subject"] and f"[#{state.reference}]" in reply["Subject"]
    assert reply["From"] == mail.support
    sent = await mail.messages(mail.support, "Sent")
    assert [m["Message-ID"] for m in sent] == [reply["Message-ID"]]

    outcome = await assign(pipeline.client, pipeline.settings, contact_id, "alice")
    assert "delivered" in outcome
    state = await wait_status(pipeline.client, contact_id, ContactStatus.DELIVERED)
    assert state.agent == "alice"

    (delivered,) = await mail.messages(AGENT_EMAIL)
    assert delivered["Resent-To"] == AGENT_EMAIL
    assert delivered["X-Ace-Contact"] == contact_id
    assert delivered["Message-ID"] == original["Message-ID"]
    assert body_and_attachments(delivered) == body_and_attachments(original)
    assert await mail.messages(mail.support) == []
    assert await mail.messages(mail.support, "Processing") == []
    assert len(await mail.messages(mail.support, "Archive")) == 1

    await record_history(pipeline.client, contact_id, "contact_delivered")

    rows = await eventually(lambda: _rows_with_status(pipeline, "delivered"))
    assert rows[0]["id"] == contact_id and rows[0]["agent"] == "alice"
    assert rows[0]["from"] and rows[0]["subject"] == "Broken kettle"


async def _rows_with_status(pipeline: Pipeline, status: str) -> list[dict[str, object]]:
    return [r for r in await account_contacts(pipeline) if r["status"] == status]


async def test_same_email_twice_is_one_contact_and_shared_message_id_is_two(
    pipeline: Pipeline,
) -> None:
    """With no per-sender limit, each distinct email is answered once, the copy not at all."""
    mail = pipeline.mail
    account = pipeline.settings.accounts[0].model_copy(update={"auto_reply_period_hours": 0.0})
    pipeline.settings.accounts[0] = account
    await sync(pipeline.client, pipeline.settings)
    twice = make_message("Same twice")
    shared_id = "<shared-id@example.org>"
    first_sharing = make_message("First of two", "one", message_id=shared_id)
    second_sharing = make_message("Second of two", "two", message_id=shared_id)
    no_id = make_message("No id").replace(b"Message-ID:", b"X-No-Message-ID:")
    for raw in (twice, twice, first_sharing, second_sharing, no_id):
        await mail.send(raw)

    for raw in (twice, first_sharing, second_sharing, no_id):
        await wait_status(pipeline.client, contact_id_of(pipeline, raw), ContactStatus.QUEUED)
    assert contact_id_of(pipeline, first_sharing) != contact_id_of(pipeline, second_sharing)

    async def settled() -> bool:
        assert await mail.messages(mail.support) == []
        assert len(await mail.messages(mail.support, "Archive")) == 1  # the second copy, kept
        return True

    await eventually(settled)
    await pipeline.client.get_workflow_handle(ids.mailbox_workflow_id(pipeline.account)).signal(
        "poll_now"
    )
    rows = await eventually(lambda: _rows_with_status(pipeline, "queued"))
    assert len(rows) == 4
    state = await contact_state(pipeline.client, contact_id_of(pipeline, twice))
    assert state.duplicates_settled == 1
    assert len(await mail.messages(CUSTOMER)) == 4


async def test_no_automatic_reply_to_automatic_mail_or_our_own_address(pipeline: Pipeline) -> None:
    mail = pipeline.mail
    await sync(pipeline.client, pipeline.settings)
    bounce = make_message("Undelivered Mail Returned to Sender", sender="MAILER-DAEMON@example.org")
    out_of_office = make_message("Out of office", headers={"Auto-Submitted": "auto-replied"})
    list_mail = make_message(
        "Weekly digest", headers={"List-Id": "<news.example.org>", "Precedence": "list"}
    )
    own = make_message("From ourselves", sender=mail.support)
    for raw in (bounce, out_of_office, list_mail, own):
        await mail.send(raw)
    reasons = []
    for raw in (bounce, out_of_office, list_mail, own):
        state = await wait_status(
            pipeline.client, contact_id_of(pipeline, raw), ContactStatus.QUEUED
        )
        await eventually(lambda: _auto_reply_decided(pipeline.client, state.id))  # noqa: B023
        reasons.append((await contact_state(pipeline.client, state.id)).auto_reply)
    assert all(r.startswith("not sent") for r in reasons), reasons
    assert "own addresses" in reasons[3] or "automatic" in reasons[3]
    assert await mail.messages(CUSTOMER) == []
    assert await mail.messages(mail.support, "Sent") == []


async def test_automatic_reply_to_an_international_address_ends_with_a_clear_answer(
    pipeline: Pipeline,
) -> None:
    """A non-ASCII sender address is sent with SMTPUTF8; the refusal is final, not retried."""
    await sync(pipeline.client, pipeline.settings)
    raw = make_message("Hej", sender="jörg@example.org")
    await pipeline.mail.send(raw, sender="jorg@example.org")
    state = await wait_status(pipeline.client, contact_id_of(pipeline, raw), ContactStatus.QUEUED)
    await eventually(lambda: _auto_reply_decided(pipeline.client, state.id))
    outcome = (await contact_state(pipeline.client, state.id)).auto_reply
    assert outcome.startswith("failed:"), outcome
    if pipeline.mail.kind == "company":  # Postfix before Dovecot's LMTP offers no SMTPUTF8
        assert "needs SMTPUTF8 (RFC 6531), which the server does not offer" in outcome, outcome
    else:
        assert "550" in outcome, outcome


async def _auto_reply_decided(client: Client, contact_id: str) -> bool:
    return bool((await contact_state(client, contact_id)).auto_reply)


async def test_large_email_flows_through_with_small_history(pipeline: Pipeline) -> None:
    mail = pipeline.mail
    await sync(pipeline.client, pipeline.settings)
    big = ("big.bin", os.urandom(10 * 1024 * 1024))
    raw = make_message("Ten megabytes", attachment=big)
    await mail.send(raw)
    contact_id = contact_id_of(pipeline, raw)
    await wait_status(pipeline.client, contact_id, ContactStatus.QUEUED, timeout=60)
    await assign(pipeline.client, pipeline.settings, contact_id, "alice")
    await wait_status(pipeline.client, contact_id, ContactStatus.DELIVERED, timeout=60)
    (delivered,) = await mail.messages(AGENT_EMAIL)
    original = email.message_from_bytes(raw, policy=default_policy)
    assert body_and_attachments(delivered) == body_and_attachments(original)

    handle: WorkflowHandle[ContactWorkflow, ContactState] = pipeline.client.get_workflow_handle_for(
        ContactWorkflow.run, contact_id
    )
    history = await handle.fetch_history()
    size = len(json.dumps(history.to_json_dict()))
    print(f"history of a contact for a {len(raw):,} byte email: {size:,} bytes")
    assert size < 64 * 1024


async def test_message_flagged_deleted_by_someone_else_stays(pipeline: Pipeline) -> None:
    mail = pipeline.mail
    doomed = make_message("Someone deleted me")
    mail.deliver(mail.support, doomed)
    await _flag_deleted(pipeline, "Someone deleted me")
    await sync(pipeline.client, pipeline.settings)
    others = [make_message(f"Around the deleted one {i}") for i in range(3)]
    for raw in others:
        await mail.send(raw)
    for raw in others:
        await wait_status(pipeline.client, contact_id_of(pipeline, raw), ContactStatus.QUEUED)
    assert await _inbox_subjects(pipeline) == [("Someone deleted me", True)]
    await assign(pipeline.client, pipeline.settings, contact_id_of(pipeline, others[0]), "alice")
    await wait_status(pipeline.client, contact_id_of(pipeline, others[0]), ContactStatus.DELIVERED)
    assert await _inbox_subjects(pipeline) == [("Someone deleted me", True)]


async def _inbox_subjects(pipeline: Pipeline) -> list[tuple[str, bool]]:
    """Every message in the inbox, \\Deleted ones included: (subject, flagged deleted)."""
    rows = await asyncio.to_thread(pipeline.mail.raw_folder, pipeline.mail.support)
    return [
        (str(email.message_from_bytes(raw, policy=default_policy)["Subject"]), "\\Deleted" in flags)
        for _, raw, flags in rows
    ]


async def _flag_deleted(pipeline: Pipeline, subject: str) -> None:
    def flag() -> None:
        mail = pipeline.mail
        with MailBoxUnencrypted("127.0.0.1", mail.imap_port).login(mail.support, PASSWORD) as box:
            status, found = box.client.uid("SEARCH", f'SUBJECT "{subject}"')
            assert status == "OK" and found[0], found
            status, _ = box.client.uid("STORE", found[0].decode(), "+FLAGS", "(\\Deleted)")
            assert status == "OK"

    await asyncio.to_thread(flag)


async def test_assign_refuses_unknown_agent_and_contact_not_waiting(pipeline: Pipeline) -> None:
    from ace_email.operations.common import Refused

    mail = pipeline.mail
    await sync(pipeline.client, pipeline.settings)
    raw = make_message("Assign me twice")
    await mail.send(raw)
    contact_id = contact_id_of(pipeline, raw)
    await wait_status(pipeline.client, contact_id, ContactStatus.QUEUED)
    with pytest.raises(Refused, match="unknown agent 'mallory'"):
        await assign(pipeline.client, pipeline.settings, contact_id, "mallory")
    with pytest.raises(Refused, match="no contact"):
        await assign(pipeline.client, pipeline.settings, "contact-nope-0000", "alice")
    result = await assign(pipeline.client, pipeline.settings, contact_id, "bob")
    assert "assigned" in result and "built-in" in result
    with pytest.raises(Refused, match="only a queued contact can be assigned"):
        await assign(pipeline.client, pipeline.settings, contact_id, "alice")
    assert await mail.messages(AGENT_EMAIL) == []


async def test_sync_twice_changes_nothing(pipeline: Pipeline) -> None:
    first = await sync(pipeline.client, pipeline.settings)
    second = await sync(pipeline.client, pipeline.settings)
    assert any("started" in line for line in first)
    assert second == [f"{pipeline.account}: unchanged"]


async def test_uidvalidity_change_neither_loses_nor_recreates_contacts(pipeline: Pipeline) -> None:
    """A cursor from another UIDVALIDITY is dropped (nothing skipped); re-reading the folder
    from the start finds contacts by content, so none is made twice."""
    mail, client = pipeline.mail, pipeline.client
    emails = [make_message(f"Validity {i}") for i in range(3)]
    for raw in emails:
        mail.deliver(mail.support, raw)
    policy = pipeline.settings.policy(pipeline.settings.accounts[0])
    stale = MailboxCursor(uidvalidity=1, last_uid=10**6)
    handle = await client.start_workflow(
        MailboxWorkflow.run,
        MailboxInput(policy=policy, cursor=stale),
        id=ids.mailbox_workflow_id(pipeline.account),
        task_queue=pipeline.settings.temporal.task_queue,
    )
    for raw in emails:
        await wait_status(client, contact_id_of(pipeline, raw), ContactStatus.QUEUED)
    await handle.terminate("simulate a restart that lost the cursor")
    again = make_message("After the restart")
    for raw in [*emails, again]:
        mail.deliver(mail.support, raw)
    await client.start_workflow(
        MailboxWorkflow.run,
        MailboxInput(policy=policy),
        id=ids.mailbox_workflow_id(pipeline.account),
        task_queue=pipeline.settings.temporal.task_queue,
    )
    await wait_status(client, contact_id_of(pipeline, again), ContactStatus.QUEUED)

    async def four_queued() -> bool:
        assert len(await _rows_with_status(pipeline, "queued")) == 4
        return True

    await eventually(four_queued)

    async def copies_archived() -> bool:
        left = await mail.messages(mail.support)
        states = [await contact_state(client, contact_id_of(pipeline, raw)) for raw in emails]
        assert not left, (
            [m["Subject"] for m in left],
            [(s.subject, s.duplicates_settled) for s in states],
        )
        return await mail.count(mail.support, "Archive") == 3

    await eventually(copies_archived)


async def test_histories_hold_neither_message_bodies_nor_passwords(pipeline: Pipeline) -> None:
    body = "Body-marker-7f3a: my card number is 4111 1111 1111 1111"
    await sync(pipeline.client, pipeline.settings)
    raw = make_message(
        "Private matter", body, attachment=("id.pdf", b"attachment-marker-91c2" * 100)
    )
    await pipeline.mail.send(raw)
    contact_id = contact_id_of(pipeline, raw)
    await wait_status(pipeline.client, contact_id, ContactStatus.QUEUED)
    await assign(pipeline.client, pipeline.settings, contact_id, "alice")
    await wait_status(pipeline.client, contact_id, ContactStatus.DELIVERED)
    for workflow_id in (contact_id, ids.mailbox_workflow_id(pipeline.account)):
        history = await pipeline.client.get_workflow_handle(workflow_id).fetch_history()
        text = _readable(history.to_json_dict())
        if pipeline.client.data_converter.payload_codec is None:  # else all is ciphertext
            assert "Private matter" in text  # the summary is there: the search is real
        for secret in (PASSWORD, "Body-marker-7f3a", "4111 1111", "attachment-marker-91c2"):
            assert secret not in text, f"{secret!r} in the history of {workflow_id}"


def _readable(node: object) -> str:
    """A history as text with every payload decoded (payload data is base64 in JSON)."""
    if isinstance(node, dict):
        return "\n".join(
            base64.b64decode(value).decode(errors="replace")
            if key == "data" and isinstance(value, str)
            else _readable(value)
            for key, value in node.items()
        )
    if isinstance(node, list):
        return "\n".join(_readable(item) for item in node)
    return str(node)
