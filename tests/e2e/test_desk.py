"""The built-in agent interface on the command line, against real servers: inbox, show, reply."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactStatus
from ace_email.operations.common import Refused, contact_state
from ace_email.operations.registry import sync
from starter import main
from tests.conftest import Pipeline
from tests.recording import record_history
from tests.routing_support import (
    accept,
    close,
    new_tag,
    reach,
    ready,
    routed_settings,
    routing_worker,
    work_item,
)
from tests.support import CUSTOMER, MailStack, eventually, make_message

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only]


async def test_a_built_in_agent_reads_the_email_and_replies_threaded_from_the_return_address(
    client: Client,
    mail: MailStack,
    temporal_address: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    bob = f"bob-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[{"id": bob, "capacity": 2}],
        account_extra={"auto_reply": False},
    )
    from tests.support import write_config

    config = str(write_config(tmp_path / "ace-email.toml", settings))
    async with routing_worker(client, mail, settings) as pipeline:
        await sync(client, settings)
        raw = make_message(
            "Kettle leaks",
            "Hello,\nthe kettle leaks.\nCarla",
            attachment=("photo.jpg", b"\xff\xd8\xff" + bytes(500)),
        )
        await mail.send(raw)
        contact = ids.contact_workflow_id(pipeline.account, mime.message_key(raw))
        await reach(client, contact, ContactStatus.QUEUED)
        await ready(pipeline, bob)
        await reach(client, contact, ContactStatus.OFFERED)

        assert await main(["--config", config, "inbox", bob], client) == 0
        assert contact in capsys.readouterr().out
        assert await main(["--config", config, "accept", contact, bob], client) == 0
        capsys.readouterr()
        assert await main(["--config", config, "show", contact], client) == 0
        shown = capsys.readouterr().out
        assert "Subject: Kettle leaks" in shown and "the kettle leaks." in shown
        assert "photo.jpg" in shown

        answer = tmp_path / "answer.txt"
        answer.write_text("Dear Carla,\nwe send a new kettle.\nBob\n", encoding="utf-8")
        args = ["--config", config, "reply", contact, "--body-file", str(answer), "--close"]
        assert await main(args, client) == 0
        await reach(client, contact, ContactStatus.CLOSED)
        assert await main(args, client) == 1, "a closed contact takes no reply"

        (sent_reply,) = await eventually(lambda: _messages(mail, CUSTOMER, 1))
        original = mime.analyse(raw)
        assert sent_reply["From"] == mail.support
        assert sent_reply["In-Reply-To"] == original.message_id
        assert "Kettle leaks" in sent_reply["Subject"] and "[#" in sent_reply["Subject"]
        text = sent_reply.get_body(preferencelist=("plain",))
        assert text is not None and "new kettle" in text.get_content()
        assert sent_reply["Auto-Submitted"] is None
        sent = await mail.messages(mail.support, "Sent")
        assert [m["Message-ID"] for m in sent] == [sent_reply["Message-ID"]]
        assert await mail.messages(mail.support, "Outbox") == []
        await record_history(client, contact, "contact_replied_closed")


async def _messages(mail: MailStack, user: str, count: int) -> list[EmailMessage]:
    found = await mail.messages(user)
    assert len(found) == count, found
    return [m for m in found if isinstance(m, EmailMessage)]


async def test_a_work_item_without_a_reply_address_cannot_be_replied_to(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    bob = f"bob-{tag}"
    settings = routed_settings(
        mail, temporal_address, tag, queues=[{"name": queue}], agents=[{"id": bob, "capacity": 2}]
    )
    async with routing_worker(client, mail, settings) as pipeline:
        from ace_email.operations import desk

        silent = await work_item(pipeline, "Call the supplier", body="Ask about order 4711.")
        await ready(pipeline, bob)
        await reach(client, silent, ContactStatus.OFFERED)
        await accept(pipeline, silent, bob)
        shown = await desk.show(client, pipeline.settings, silent)
        assert "order 4711" in shown.text
        with pytest.raises(Refused, match="work item without a reply address"):
            await desk.reply(client, pipeline.settings, silent, "Done.", close=True)

        answered = await work_item(pipeline, "Form: broken lid", reply_to=CUSTOMER)
        await accept_when_offered(pipeline, answered, bob)
        result = await desk.reply(client, pipeline.settings, answered, "We are on it.", close=False)
        assert result.status is ContactStatus.ASSIGNED
        again = await desk.reply(client, pipeline.settings, answered, "We are on it.", close=False)
        assert again.status is ContactStatus.ASSIGNED
        (reply,) = await eventually(lambda: _messages(mail, CUSTOMER, 1))
        assert reply["To"] == CUSTOMER and reply["In-Reply-To"] is None
        (note,) = (await contact_state(client, answered)).replies  # one email left: one note
        assert note.message_id == reply["Message-ID"].strip()

        await close(pipeline, silent)
        nowhere = await work_item(pipeline, "Form: typo", reply_to="nobody@example.org")
        await accept_when_offered(pipeline, nowhere, bob)
        with pytest.raises(Refused, match=r"the reply was not sent: SmtpRejected: .* 550"):
            await desk.reply(client, pipeline.settings, nowhere, "Thanks!", close=True)
        state = await reach(client, nowhere, ContactStatus.ASSIGNED)
        assert state.replies == [] and "550" in (state.last_error or "")


async def accept_when_offered(pipeline: Pipeline, contact: str, agent_id: str) -> None:
    await reach(pipeline.client, contact, ContactStatus.OFFERED)
    await accept(pipeline, contact, agent_id)
