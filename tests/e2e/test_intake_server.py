"""The HTTP intake endpoint on real servers: a JSON work item in, a contact id out; the same
external id twice, one contact; precise errors for everything else."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client

from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings
from ace_email.contracts.contact import ContactStatus
from ace_email.services.intake import IntakeServer, intake_server
from tests.conftest import Pipeline
from tests.routing_support import new_tag, reach, routed_settings, routing_worker
from tests.support import MailStack, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only]

TOKEN_ENV = "ACE_TEST_INTAKE_TOKEN"
TOKEN = "intake-test-token-4711"


@pytest.fixture
async def endpoint(
    client: Client, mail: MailStack, temporal_address: str
) -> AsyncIterator[tuple[Pipeline, IntakeServer]]:
    tag = new_tag()
    os.environ[TOKEN_ENV] = TOKEN
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": f"web-{tag}"}, {"name": f"mail-{tag}", "channels": ["email"]}],
        agents=[{"id": f"ann-{tag}"}],
    )
    settings = settings.model_copy(
        update={
            "intake": settings.intake.model_copy(
                update={"token_env": TOKEN_ENV, "port": free_port(), "max_body_kb": 4}
            )
        }
    )
    async with routing_worker(client, mail, settings) as pipeline:
        server = intake_server(settings, client)
        server.start_in_thread()
        try:
            yield pipeline, server
        finally:
            await asyncio.to_thread(server.stop)


async def post(
    server: IntakeServer,
    document: Any,
    *,
    token: str | None = TOKEN,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    request = urllib.request.Request(f"{server.url}/workitems", data=body, method="POST")
    request.add_header("Content-Type", content_type)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")

    def send() -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    return await asyncio.to_thread(send)


def form(pipeline: Pipeline, **fields: Any) -> dict[str, Any]:
    queue = next(q.name for q in pipeline.settings.queues if q.name.startswith("web-"))
    return {
        "queue": queue,
        "subject": "Contact form: broken lid",
        "body": "The lid of my kettle broke.",
        "reply_to": "customer@example.org",
        "external_id": "form-4711",
    } | fields


async def test_a_work_item_posted_twice_is_one_contact(
    endpoint: tuple[Pipeline, IntakeServer],
) -> None:
    pipeline, server = endpoint
    status, created = await post(server, form(pipeline))
    assert status == 201 and created["created"] is True
    contact_id = created["contact_id"]
    state = await reach(pipeline.client, contact_id, ContactStatus.QUEUED)
    assert state.channel.value == "workitem" and state.reply_to == "customer@example.org"
    assert state.reference == created["reference"]

    status, again = await post(server, form(pipeline, subject="Contact form: broken lid (resent)"))
    assert status == 200 and again == created | {"created": False}
    both = await asyncio.gather(
        post(server, form(pipeline, external_id="post-1", channel="social")),
        post(server, form(pipeline, external_id="post-1", channel="social")),
    )
    assert sorted(s for s, _ in both) == [200, 201]
    assert both[0][1]["contact_id"] == both[1][1]["contact_id"]

    query = f'WorkflowType="ContactWorkflow" AND AceAccount="{pipeline.account}"'
    contacts = [e.id async for e in pipeline.client.list_workflows(query)]
    assert sorted(contacts) == sorted({contact_id, both[0][1]["contact_id"]})
    assert len(await pipeline.mail.messages(pipeline.mail.support, "WorkItems")) == 2


async def test_the_endpoint_names_every_fault(endpoint: tuple[Pipeline, IntakeServer]) -> None:
    pipeline, server = endpoint
    assert (await post(server, form(pipeline), token=None))[0] == 401
    assert (await post(server, form(pipeline), token="wrong"))[0] == 401
    assert (await post(server, form(pipeline), content_type="text/plain"))[0] == 415
    status, answer = await post(server, b"{not json")
    assert status == 400 and "not JSON" in answer["error"]

    status, answer = await post(
        server, form(pipeline, subject="", reply_to="not an address", priority="high", colour=1)
    )
    assert status == 400
    fields = {p["field"] for p in answer["problems"]}
    assert fields == {"subject", "reply_to", "priority", "colour"}, answer

    mail_queue = next(q.name for q in pipeline.settings.queues if q.name.startswith("mail-"))
    status, answer = await post(server, form(pipeline, queue=mail_queue))
    assert status == 400 and answer["problems"][0]["field"] == "channel"
    assert f"queue {mail_queue!r} takes email" in answer["error"]
    status, answer = await post(server, form(pipeline, queue="nowhere"))
    assert status == 400 and "unknown queue 'nowhere'" in answer["error"]
    status, answer = await post(
        server, form(pipeline, queue="nowhere", subject="", priority="high")
    )
    assert status == 400, answer
    problems = {p["field"]: p["message"] for p in answer["problems"]}
    assert problems.keys() == {"queue", "subject", "priority"}, "every fault at once"
    assert problems["queue"].startswith("unknown queue 'nowhere' (known: ")
    status, answer = await post(server, form(pipeline, body="x" * 5000))
    assert status == 400 and answer["problems"][0]["field"] == "body"
    assert (await post(server, form(pipeline, body="x" * 20000)))[0] == 413


def test_the_endpoint_does_not_start_without_a_token(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="needs a token"):
        settings.intake.token()
