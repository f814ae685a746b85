"""The worker's Prometheus endpoint after real traffic: Temporal's SDK metrics and ace-email's
own, with the numbers the traffic must give, each email counted once although an IMAP outage
made activities retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactState, ContactStatus
from ace_email.contracts.metrics import suppressed_label
from ace_email.contracts.queues import Presence
from ace_email.operations.agents_queues import set_presence
from ace_email.operations.common import contact_state
from ace_email.operations.registry import sync
from tests.faults import TcpProxy, WorkerSupervisor
from tests.metrics_support import (
    SDK_METRICS,
    Samples,
    ace_metric_names,
    present,
    scrape,
    scrape_text,
    total,
)
from tests.poison import JUNK
from tests.recording import record_history
from tests.routing_support import new_tag, routed_settings
from tests.support import (
    AGENT_EMAIL,
    MailStack,
    delivery_status_notification,
    embedded_mail,
    eventually,
    free_port,
    make_message,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SETTLED = {ContactStatus.QUEUED, ContactStatus.DELIVERED, ContactStatus.QUARANTINED}


CUSTOMERS = [f"c{i}@example.org" for i in range(4)]


@pytest.fixture
async def mail(tmp_path: Path) -> AsyncIterator[MailStack]:
    async with embedded_mail(tmp_path / "mail", [*CUSTOMERS, "away@example.org"]) as stack:
        yield stack


async def test_metrics_after_real_traffic_count_each_email_once(
    client: Client, mail: MailStack, temporal_address: str, tmp_path: Path
) -> None:
    tag = new_tag()
    queue, alice = f"support-{tag}", f"alice-{tag}"
    proxy = TcpProxy("imap", free_port(), mail.imap_port)
    await proxy.start()
    proxied = MailStack(mail.server, proxy.port, mail.smtp_port, mail.support)
    settings = routed_settings(
        proxied,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[{"id": alice, "email": AGENT_EMAIL, "capacity": 1}],
    )
    metrics_port = free_port()
    config = write_config(
        tmp_path / "ace-email.toml",
        settings,
        extra_toml=f'[metrics]\nprometheus_listen = "127.0.0.1:{metrics_port}"\n'
        "sample_seconds = 1\n",
    )
    worker = WorkerSupervisor(config, tmp_path / "worker.log")
    worker.start()
    try:
        await sync(client, settings)
        await set_presence(client, settings, alice, Presence.READY)
        contacts = await send_traffic(mail, settings, proxy)
        states = await eventually(lambda: all_settled(client, contacts), timeout=120)
        samples = await eventually(lambda: sampled(metrics_port, queue, 5), timeout=30)
        check_counters(samples, settings.accounts[0].name, states)
        await bounce_back(client, mail, states)
        samples = await eventually(lambda: reports_counted(metrics_port), timeout=60)
        scraped = scrape_text(metrics_port)
        (tmp_path / "metrics.txt").write_text(scraped)
        print(scraped)
        # Every metric ace-email defines, and the SDK's that deploy/ uses, from one endpoint.
        for name in [*ace_metric_names(), *SDK_METRICS]:
            assert present(samples, name), name
    finally:
        await worker.stop()
        await proxy.stop()
    assert worker.unexpected_exits == []


async def send_traffic(mail: MailStack, settings: Settings, proxy: TcpProxy) -> list[str]:
    """Seven emails: four customers, one of them twice (the second gets no automatic reply),
    an absence notice, and bytes that are no email. IMAP goes away for 3 s in the middle."""
    account = settings.accounts[0].name
    raws = [make_message(f"Question {i}", sender=f"c{i}@example.org") for i in range(4)] + [
        make_message("Another question", sender="c0@example.org"),
        make_message(
            "Out of office", sender="away@example.org", headers={"Auto-Submitted": "auto-replied"}
        ),
    ]
    contacts = []
    for index, raw in enumerate(raws):
        sender = f"c{index}@example.org" if index < 4 else "c0@example.org"
        if index == 5:
            sender = "away@example.org"
        await mail.send(raw, sender=sender)
        contacts.append(ids.contact_workflow_id(account, mime.message_key(raw)))
        if index == 2:
            await proxy.outage(3.0)
    junk = JUNK["binary-lines"]()
    mail.deliver(mail.support, junk)
    contacts.append(ids.contact_workflow_id(account, mime.message_key(junk)))
    await asyncio.sleep(0)
    return contacts


async def all_settled(client: Client, contacts: list[str]) -> list[ContactState]:
    states = [await contact_state(client, c) for c in contacts]
    assert all(s.status in SETTLED for s in states), [s.status for s in states]
    assert all(s.auto_reply for s in states if s.status is not ContactStatus.QUARANTINED)
    return states


async def sampled(port: int, queue: str, waiting: int) -> Samples:
    samples = await asyncio.to_thread(scrape, port)
    assert total(samples, "ace_contacts_waiting", queue=queue) == waiting
    # One sample asks queues and agents at once; a later one sees the agent's place taken.
    assert total(samples, "ace_agents_busy") == 1
    return samples


def check_counters(samples: Samples, account: str, states: list[ContactState]) -> None:
    sent = [s for s in states if (s.auto_reply or "").startswith("sent to ")]
    suppressed = [s for s in states if s.auto_reply and s not in sent]
    assert total(samples, "ace_emails_taken_in_total", account=account) == 7
    assert total(samples, "ace_emails_quarantined_total", account=account) == 1
    assert total(samples, "ace_emails_quarantined_total", reason="not_email") == 1
    assert len(sent) == 4 and len(suppressed) == 2, [s.auto_reply for s in states]
    assert total(samples, "ace_auto_replies_sent_total", account=account) == 4
    for reason in ("per_sender", "automatic_mail"):
        expected = sum(1 for s in suppressed if suppressed_label(s.auto_reply or "") == reason)
        assert expected == 1, [s.auto_reply for s in suppressed]
        assert total(samples, "ace_auto_replies_suppressed_total", reason=reason) == 1
    assert total(samples, "ace_deliveries_total", mode="external") == 1
    assert total(samples, "ace_agents_ready") == 1
    assert total(samples, "ace_agents_busy") == 1
    assert total(samples, "ace_mailbox_healthy", account=account) == 1
    assert present(samples, "ace_mailbox_lag_seconds")
    assert total(samples, "ace_queue_oldest_wait_seconds") > 0
    # The outage: the poll (or a claim) failed and was retried, and counted as an error.
    assert total(samples, "ace_mail_errors_total", account=account, protocol="imap") >= 1
    assert total(samples, "temporal_workflow_task_execution_latency_seconds_count") > 0
    assert total(samples, "temporal_activity_execution_latency_seconds_count") > 0


async def bounce_back(client: Client, mail: MailStack, states: list[ContactState]) -> None:
    """Two delivery reports: c1's automatic reply bounced, and so did the delivery to alice's
    own mailbox, which sends that contact back to its queue and alice to not-ready."""
    (reply,) = await mail.messages(CUSTOMERS[1])
    await mail.send(delivery_status_notification(reply, mail.support, CUSTOMERS[1]))
    (copy,) = await mail.messages(AGENT_EMAIL)
    await mail.send(delivery_status_notification(copy, mail.support, AGENT_EMAIL))
    (delivered,) = [s for s in states if s.status is ContactStatus.DELIVERED]

    async def back_in_queue() -> ContactState:
        state = await contact_state(client, delivered.id)
        assert state.status is ContactStatus.QUEUED and state.excluded_agents, state.status
        return state

    await eventually(back_in_queue, timeout=60)
    await record_history(client, delivered.id, "contact_delivery_bounced_requeued")
    await record_history(client, ids.agent_workflow_id(delivered.agent or ""), "agent_mail_bounced")


async def reports_counted(port: int) -> Samples:
    samples = await asyncio.to_thread(scrape, port)
    reports = "ace_delivery_reports_total"
    assert total(samples, reports, kind="bounce", sent_as="autoreply") == 1
    assert total(samples, reports, kind="bounce", sent_as="delivery") == 1
    assert total(samples, "ace_agent_mail_bounces_total") == 1
    return samples
