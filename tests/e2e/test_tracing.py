"""Traces: with `[tracing]` on, a contact's spans link up from the poll that found its email to
its delivery into the agent's mailbox, in one trace, and carry no content of the email."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.config.observability import TracingSettings
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactStatus
from ace_email.operations.registry import sync
from ace_email.telemetry.tracing import tracing
from ace_email.temporal.client import connect
from tests.routing_support import new_tag, reach, ready, routed_settings, routing_worker
from tests.support import AGENT_EMAIL, MailStack, make_message

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only]

SUBJECT = "Tracing: my order 4711 has not arrived"


async def test_a_contacts_spans_link_up_from_poll_to_delivery(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": f"support-{tag}"}],
        agents=[{"id": f"alice-{tag}", "email": AGENT_EMAIL}],
    )
    exporter = InMemorySpanExporter()
    traced = tracing(TracingSettings(), exporter)
    traced_client = await connect(settings.temporal, interceptors=traced.interceptors)
    async with routing_worker(traced_client, mail, settings) as pipeline:
        await sync(traced_client, settings)
        await ready(pipeline, f"alice-{tag}")
        raw = make_message(SUBJECT, "Where is it?")
        await mail.send(raw)
        contact_id = ids.contact_workflow_id(pipeline.account, mime.message_key(raw))
        await reach(traced_client, contact_id, ContactStatus.DELIVERED, timeout=60)
    assert traced.provider is not None
    traced.provider.force_flush()
    spans = exporter.get_finished_spans()
    traced.shutdown()

    def of_contact(name: str) -> ReadableSpan:
        (span,) = [
            s
            for s in spans
            if s.name == name and (s.attributes or {}).get("temporalWorkflowID") == contact_id
        ]
        return span

    by_id = {span.context.span_id: span for span in spans}

    def ancestors(span: ReadableSpan) -> list[str]:
        names = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            names.append(span.name)
        return names

    delivered = of_contact("RunActivity:deliver_to_agent")
    trace = {s.name for s in spans if s.context.trace_id == delivered.context.trace_id}
    assert {
        "StartWorkflow:MailboxWorkflow",
        "RunActivity:poll_mailbox",
        "StartChildWorkflow:ContactWorkflow",
        "RunWorkflow:ContactWorkflow",
        "RunActivity:claim_analysed",
        "RunActivity:send_auto_reply",
        "RunActivity:deliver_to_agent",
    } <= trace
    chain = ancestors(delivered)
    assert chain.index("StartChildWorkflow:ContactWorkflow") < chain.index(
        "StartWorkflow:MailboxWorkflow"
    )
    assert "StartChildWorkflow:ContactWorkflow" in ancestors(
        of_contact("RunActivity:claim_analysed")
    )
    # Ids and types only: nothing of the email.
    for span in spans:
        for value in (span.attributes or {}).values():
            assert "4711" not in str(value) and "customer" not in str(value), (span.name, value)
