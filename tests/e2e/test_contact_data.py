"""On real servers: an account's patterns lift an order number into the contact's data, which
a rule routes on, the automatic reply quotes and `AceData` finds; keyword categories match on
word stems and route too."""

from __future__ import annotations

import uuid
from email.message import EmailMessage

import pytest

from ace_email.config.settings import Settings
from ace_email.contracts import search_attributes as sa
from ace_email.contracts.contact import ContactStatus
from ace_email.operations.registry import sync
from tests.conftest import Pipeline
from tests.e2e.test_auto_replies_and_follow_ups import replies_to_customer
from tests.e2e.test_pipeline import contact_id_of
from tests.support import MailStack, account_settings, eventually, make_message, wait_status

pytestmark = pytest.mark.e2e

ORDER_REPLY = "We have your question about order {{ data.order_id }}. Case {{ reference }}."


@pytest.fixture
def settings(mail: MailStack, temporal_address: str) -> Settings:
    return account_settings(
        name=f"support-{uuid.uuid4().hex[:8]}",
        stack=mail,
        temporal_address=temporal_address,
        namespace="default",
        task_queue=f"ace-email-{uuid.uuid4().hex[:8]}",
        extra={
            "queues": [{"name": "orders"}, {"name": "billing"}],
            "templates": {"orders": {"text": {"en": ORDER_REPLY}}},
            "categories": [
                {"name": "invoice", "keywords": ["invoice", "payment"], "prohibited": ["spam"]}
            ],
        },
        account_extra={
            "extract": {"order_id": r"(?i)order\s*#?\s*(\d{4,10})"},
            "rules": [
                {
                    "name": "Orders",
                    "when": {"data": {"order_id": "*"}},
                    "then": {"queue": "orders", "auto_reply_template": "orders"},
                },
                {"name": "Invoices", "when": {"category": "invoice"}, "then": {"queue": "billing"}},
            ],
        },
    )


async def test_an_order_number_becomes_contact_data_and_a_category_routes(
    pipeline: Pipeline,
) -> None:
    client, mail = pipeline.client, pipeline.mail
    await sync(client, pipeline.settings)
    order = f"{uuid.uuid4().int % 10**8:08d}"
    raw = make_message(f"Where is order #{order}?", "It has not arrived.")
    await mail.send(raw)
    contact = contact_id_of(pipeline, raw)
    state = await wait_status(client, contact, ContactStatus.QUEUED)
    assert state.data == {"order_id": order} and state.queue == "orders"
    (reply,) = await replies_to_customer(mail, 1)
    assert isinstance(reply, EmailMessage)
    text = reply.get_body(("plain",))
    assert text is not None and f"about order {order}." in text.get_content()

    query = f'WorkflowType="ContactWorkflow" AND {sa.DATA.name}="order_id={order}"'

    async def found() -> list[str]:
        ids = [w.id async for w in client.list_workflows(query)]
        assert ids == [contact], ids
        return ids

    await eventually(found, timeout=30)

    billing = make_message("Two payments for my invoices", "I was charged twice.")
    await mail.send(billing)
    invoice = await wait_status(client, contact_id_of(pipeline, billing), ContactStatus.QUEUED)
    assert invoice.queue == "billing" and invoice.categories == ["invoice"]
    assert invoice.category == "invoice" and invoice.data == {}
