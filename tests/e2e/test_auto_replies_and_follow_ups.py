"""On real servers: one automatic reply per customer, never in a loop; follow-ups join their
contact; a rule routes by subject to a queue, a priority and a template in the email's language."""

from __future__ import annotations

import uuid
from email.message import Message

import pytest
from temporalio.client import Client

from ace_email.config.settings import Settings
from ace_email.contracts.contact import ContactState, ContactStatus
from ace_email.contracts.ids import ledger_workflow_id
from ace_email.contracts.ledger import LedgerInput, ReserveReplyRequest, ReserveReplyResult
from ace_email.operations.common import Refused, contact_state
from ace_email.operations.contacts import assign
from ace_email.operations.registry import sync
from tests.conftest import Pipeline
from tests.e2e.test_pipeline import contact_id_of
from tests.recording import record_history
from tests.support import (
    AGENT_EMAIL,
    CUSTOMER,
    MailStack,
    account_settings,
    eventually,
    make_message,
    wait_status,
)
from workflows.auto_reply_ledger import AutoReplyLedgerWorkflow

pytestmark = pytest.mark.e2e

BILLING_SV = "Hej! Vi har tagit emot din fråga om fakturan. Ärende {{ reference }}, kö {{ queue }}."
BILLING_EN = "Hello! We have your billing question. Case {{ reference }}, queue {{ queue }}."


@pytest.fixture
def settings(mail: MailStack, temporal_address: str) -> Settings:
    """The standard test account, plus a billing rule with its own template."""
    return account_settings(
        name=f"support-{uuid.uuid4().hex[:8]}",
        stack=mail,
        temporal_address=temporal_address,
        namespace="default",
        task_queue=f"ace-email-{uuid.uuid4().hex[:8]}",
        extra={
            "queues": [{"name": "billing", "description": "Invoices"}],
            "templates": {"billing": {"text": {"sv": BILLING_SV, "en": BILLING_EN}}},
        },
        account_extra={
            "rules": [
                {
                    "name": "Invoices",
                    "when": {"subject": "faktura|invoice"},
                    "then": {
                        "queue": "billing",
                        "priority": 5,
                        "skills": ["billing"],
                        "auto_reply_template": "billing",
                        "category": "invoice",
                    },
                }
            ]
        },
    )


async def replies_to_customer(mail: MailStack, count: int) -> list[Message]:
    async def check() -> list[Message]:
        replies = await mail.messages(CUSTOMER)
        assert len(replies) == count, [r["Subject"] for r in replies]
        return replies

    return await eventually(check)


async def auto_reply_outcome(client: Client, contact_id: str) -> str:
    async def decided() -> str:
        try:
            outcome = (await contact_state(client, contact_id)).auto_reply
        except Refused as exc:  # not started yet
            raise AssertionError(str(exc)) from exc
        assert outcome, "not decided yet"
        return outcome

    return await eventually(decided, timeout=120)


def answer_to(reply: Message, text: str, headers: dict[str, str] | None = None) -> bytes:
    """The customer answers an automatic reply, the way a mail client threads it."""
    return make_message(
        f"Re: {reply['Subject']}",
        text,
        headers={
            "In-Reply-To": str(reply["Message-ID"]),
            "References": str(reply["Message-ID"]),
            **(headers or {}),
        },
    )


async def written_and_acknowledged(pipeline: Pipeline) -> tuple[ContactState, Message]:
    await sync(pipeline.client, pipeline.settings)
    raw = make_message("Broken kettle", "It leaks.")
    await pipeline.mail.send(raw)
    state = await wait_status(pipeline.client, contact_id_of(pipeline, raw), ContactStatus.QUEUED)
    [reply] = await replies_to_customer(pipeline.mail, 1)
    return state, reply


async def test_answer_to_the_automatic_reply_joins_the_contact_without_a_second_reply(
    pipeline: Pipeline,
) -> None:
    client, mail = pipeline.client, pipeline.mail
    first, reply = await written_and_acknowledged(pipeline)
    assert f"[#{first.reference}]" in reply["Subject"]
    assert reply["Auto-Submitted"] == "auto-replied"

    answer = answer_to(reply, "Also, the lid is cracked.")
    await mail.send(answer)
    joined = await wait_status(client, contact_id_of(pipeline, answer), ContactStatus.JOINED)
    assert joined.joined_to == first.id

    async def recorded() -> ContactState:
        state = await contact_state(client, first.id)
        assert len(state.follow_ups) == 1, state.follow_ups
        return state

    state = await eventually(recorded)
    assert state.status is ContactStatus.QUEUED
    assert not state.follow_ups[0].automatic

    await assign(client, pipeline.settings, first.id, "alice")

    async def both_delivered() -> list[Message]:
        delivered = await mail.messages(AGENT_EMAIL)
        assert len(delivered) == 2, [m["Subject"] for m in delivered]
        return delivered

    delivered = await eventually(both_delivered)
    assert {m["X-Ace-Contact"] for m in delivered} == {first.id}
    assert len(await mail.messages(CUSTOMER)) == 1
    await record_history(client, first.id, "contact_with_follow_up_delivered")
    await record_history(client, joined.id, "contact_joined")


async def test_follow_up_after_delivery_goes_to_the_same_agent(pipeline: Pipeline) -> None:
    client, mail = pipeline.client, pipeline.mail
    first, reply = await written_and_acknowledged(pipeline)
    await assign(client, pipeline.settings, first.id, "alice")
    await wait_status(client, first.id, ContactStatus.DELIVERED)

    answer = answer_to(reply, "Any news?")
    await mail.send(answer)
    joined = await wait_status(client, contact_id_of(pipeline, answer), ContactStatus.JOINED)
    assert joined.joined_to == first.id
    assert joined.agent == "alice"

    async def both_delivered() -> list[Message]:
        delivered = await mail.messages(AGENT_EMAIL)
        assert len(delivered) == 2, [m["Subject"] for m in delivered]
        return delivered

    await eventually(both_delivered)
    assert len(await mail.messages(CUSTOMER)) == 1
    await record_history(client, first.id, "contact_follow_up_after_delivery")
    await record_history(client, ledger_workflow_id(pipeline.account), "auto_reply_ledger")


async def test_twenty_emails_from_one_sender_in_a_minute_get_one_automatic_reply(
    pipeline: Pipeline,
) -> None:
    await sync(pipeline.client, pipeline.settings)
    emails = [make_message(f"Question {n}", f"Question number {n}.") for n in range(20)]
    for raw in emails:
        await pipeline.mail.send(raw)
    outcomes = [
        await auto_reply_outcome(pipeline.client, contact_id_of(pipeline, raw)) for raw in emails
    ]
    sent = [o for o in outcomes if o.startswith("sent")]
    assert len(sent) == 1, outcomes
    suppressed = [o for o in outcomes if not o.startswith("sent")]
    assert all("at most one per sender" in o for o in suppressed), suppressed
    await replies_to_customer(pipeline.mail, 1)
    assert len(await pipeline.mail.messages(pipeline.mail.support, "Sent")) == 1


async def test_out_of_office_from_the_customer_gets_no_reply_and_changes_nothing(
    pipeline: Pipeline,
) -> None:
    client, mail = pipeline.client, pipeline.mail
    first, reply = await written_and_acknowledged(pipeline)
    absence = make_message(
        f"Automatic reply: {reply['Subject']}",
        "I am away until Monday.",
        headers={
            "Auto-Submitted": "auto-replied",
            "In-Reply-To": str(reply["Message-ID"]),
        },
    )
    await mail.send(absence)
    joined = await wait_status(client, contact_id_of(pipeline, absence), ContactStatus.JOINED)
    assert joined.joined_to == first.id
    assert joined.automatic

    async def recorded() -> ContactState:
        state = await contact_state(client, first.id)
        assert [n.automatic for n in state.follow_ups] == [True], state.follow_ups
        return state

    state = await eventually(recorded)
    assert state.status is ContactStatus.QUEUED
    assert joined.auto_reply == ""
    assert len(await mail.messages(CUSTOMER)) == 1
    assert len(await mail.messages(mail.support, "Archive")) == 1


async def test_our_own_automatic_reply_coming_back_gets_no_reply(pipeline: Pipeline) -> None:
    client, mail = pipeline.client, pipeline.mail
    first, reply = await written_and_acknowledged(pipeline)
    bounced_back = reply.as_bytes()
    mail.deliver(mail.support, bounced_back)
    echo = await wait_status(
        client, contact_id_of(pipeline, bounced_back), ContactStatus.JOINED, ContactStatus.QUEUED
    )
    assert echo.automatic
    assert any("ace-email" in r for r in echo.automatic_reasons), echo.automatic_reasons
    assert (await contact_state(client, first.id)).status is ContactStatus.QUEUED
    assert len(await mail.messages(CUSTOMER)) == 1
    assert len(await mail.messages(mail.support, "Sent")) == 1


async def test_rule_routes_by_subject_to_queue_priority_and_template_in_detected_language(
    pipeline: Pipeline,
) -> None:
    await sync(pipeline.client, pipeline.settings)
    raw = make_message(
        "Fråga om faktura 4711",
        "Hej, jag har fått en faktura som jag inte förstår. Kan ni hjälpa mig med den?",
    )
    await pipeline.mail.send(raw)
    state = await wait_status(pipeline.client, contact_id_of(pipeline, raw), ContactStatus.QUEUED)
    assert (state.queue, state.priority, state.skills) == ("billing", 5, ["billing"])
    assert (state.rule, state.category, state.language) == ("Invoices", "invoice", "sv")
    [reply] = await replies_to_customer(pipeline.mail, 1)
    body = reply.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    text = body.get_content()
    assert f"Ärende {state.reference}, kö billing." in text, text
    assert reply.get_body(preferencelist=("html",)) is not None  # type: ignore[attr-defined]

    async def listed_in_billing() -> bool:
        query = f'AceQueue="billing" AND AceAccount="{pipeline.account}" AND AcePriority=5'
        return bool([e async for e in pipeline.client.list_workflows(query)])

    assert await eventually(listed_in_billing)


async def test_reply_ledger_remembers_senders_through_continue_as_new(pipeline: Pipeline) -> None:
    client = pipeline.client
    handle = await client.start_workflow(
        AutoReplyLedgerWorkflow.run,
        LedgerInput(account=pipeline.account, updates_per_run=3),
        id=f"autoreply-ledger-test-{uuid.uuid4().hex[:8]}",
        task_queue=pipeline.settings.temporal.task_queue,
    )
    first_run = (await handle.describe()).run_id

    async def reserve(contact: str, sender: str) -> ReserveReplyResult:
        request = ReserveReplyRequest(account=pipeline.account, contact_id=contact, sender=sender)
        latest = client.get_workflow_handle(handle.id)
        return await latest.execute_update(AutoReplyLedgerWorkflow.reserve, request)

    assert (await reserve("c1", "ann@example.org")).allowed
    assert (await reserve("c2", "bo@example.org")).allowed
    assert (await reserve("c3", "cy@example.org")).allowed

    async def continued() -> bool:
        return (await handle.describe()).run_id != first_run

    assert await eventually(continued)
    denied = await eventually(lambda: reserve("c4", "ANN@example.org"))
    assert not denied.allowed and "at most one per sender" in denied.reason
    assert (await reserve("c1", "ann@example.org")).allowed, "a retry gets the same answer"


async def test_follow_up_of_a_contact_in_the_built_in_interface_is_archived_when_it_closes(
    pipeline: Pipeline,
) -> None:
    client, mail = pipeline.client, pipeline.mail
    first, reply = await written_and_acknowledged(pipeline)
    await assign(client, pipeline.settings, first.id, "bob")
    await wait_status(client, first.id, ContactStatus.ASSIGNED)
    answer = answer_to(reply, "Any news?")
    await mail.send(answer)
    await wait_status(client, contact_id_of(pipeline, answer), ContactStatus.JOINED)
    await client.get_workflow_handle(first.id).signal("close")
    closed = await client.get_workflow_handle(first.id, result_type=ContactState).result()
    assert closed.status is ContactStatus.CLOSED
    assert len(closed.follow_ups) == 1
    assert await mail.messages(mail.support, "Processing") == []
    assert len(await mail.messages(mail.support, "Archive")) == 2
