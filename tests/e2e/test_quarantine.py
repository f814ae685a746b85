"""Quarantine on real servers: junk that arrives by SMTP with nothing but the receiving
servers' trace is quarantined with its reason; an operator lists what is there and why, and
releases one into a contact, recorded as released."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from temporalio.client import WorkflowExecution

from ace_email.analysis import mime
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactStatus
from ace_email.operations.common import newest_first
from starter import main
from tests.conftest import Pipeline
from tests.poison import JUNK
from tests.recording import record_history
from tests.support import eventually, make_message, wait_status, write_config

TRACE_ONLY = "no sender and no header of its own, only the trace headers of the servers"


@pytest.mark.e2e
async def test_junk_is_quarantined_listed_with_its_reason_and_released_by_an_operator(
    pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path / "ace-email.toml", pipeline.settings))
    client, mail = pipeline.client, pipeline.mail
    assert await main(["--config", config, "sync"], client) == 0
    for make in JUNK.values():
        await mail.send(make())
    ordinary = make_message("An ordinary question")
    await mail.send(ordinary)
    ordinary_id = ids.contact_workflow_id(pipeline.account, mime.message_key(ordinary))
    await wait_status(client, ordinary_id, ContactStatus.QUEUED)

    async def listed() -> list[dict[str, object]]:
        capsys.readouterr()
        args = ["--config", config, "quarantine", "--account", pipeline.account, "--json"]
        assert await main(args, client) == 0
        rows: list[dict[str, object]] = json.loads(capsys.readouterr().out)
        assert len(rows) == len(JUNK), rows
        return rows

    rows = await eventually(listed)
    reasons = sorted(str(r["reason"]) for r in rows)
    assert reasons == [
        f"empty message: {TRACE_ONLY} that received it",
        f"not an email message: {TRACE_ONLY} that received it",
    ]
    assert {r["folder"] for r in rows} == {"Quarantine"}
    assert {r["account"] for r in rows} == {pipeline.account}
    mail.settle()
    assert await mail.count(mail.support, "Quarantine") == len(JUNK)
    assert await mail.count(mail.support, "INBOX") == 0

    assert await main(["--config", config, "quarantine"], client) == 0
    shown = capsys.readouterr().out
    assert all(str(r["id"]) in shown for r in rows) and "empty message" in shown

    released = str(rows[0]["id"])
    releasing = ["--config", config, "quarantine", "release", released, "--by", "olga"]
    assert await main(releasing, client) == 0
    assert f"{released}: released by olga (it was: " in capsys.readouterr().out
    state = await wait_status(client, released, ContactStatus.QUEUED)
    assert state.released is not None and state.released.by == "olga"
    assert state.released.reason == rows[0]["reason"] and state.quarantine_reason is None
    assert state.message is not None and state.message.folder == "Processing"
    assert await mail.count(mail.support, "Quarantine") == len(JUNK) - 1

    remaining = await eventually(lambda: _count_listed(config, pipeline, capsys, len(JUNK) - 1))
    assert remaining
    assert await main(releasing, client) == 1
    assert await main(["--config", config, "quarantine", "release", ordinary_id], client) == 1
    assert await main(["--config", config, "quarantine", "release", "contact-nobody"], client) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[0].endswith(
        f"contact {released} is queued; only a quarantined email can be released"
    )
    assert errors[1].endswith(
        f"contact {ordinary_id} is queued; only a quarantined email can be released"
    )
    assert errors[2].endswith("no contact 'contact-nobody'")
    assert await main(["--config", config, "list", "--json"], client) == 0
    contacts = json.loads(capsys.readouterr().out)
    listed_ids = [r["id"] for r in contacts]
    started = [r["started"] for r in contacts]
    assert started == sorted(started, reverse=True), "newest first"
    assert listed_ids.count(released) == 1, "one email, one contact, however often it ran"
    await record_history(client, released, "contact_released_from_quarantine")


async def _count_listed(
    config: str, pipeline: Pipeline, capsys: pytest.CaptureFixture[str], count: int
) -> bool:
    capsys.readouterr()
    args = ["--config", config, "quarantine", "--account", pipeline.account, "--json"]
    assert await main(args, pipeline.client) == 0
    return len(json.loads(capsys.readouterr().out)) == count


async def test_newest_first_reads_running_then_closed_only_as_far_as_it_must() -> None:
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

    def run(wid: str, start: int, close: int | None = None) -> WorkflowExecution:
        closed = at + timedelta(minutes=close) if close is not None else None
        return cast(
            WorkflowExecution,
            SimpleNamespace(id=wid, start_time=at + timedelta(minutes=start), close_time=closed),
        )

    listed = [run("a", 5), run("b", 1), run("c", 4, 9), run("b", 0, 8), run("d", 3, 7)]
    read: list[str] = []

    async def executions() -> AsyncIterator[WorkflowExecution]:
        for execution in [*listed, run("e", 0, 2), run("never", 9, 1)]:
            read.append(execution.id)
            yield execution

    newest = await newest_first(executions(), 3)
    assert [(e.id, e.start_time.minute) for e in newest] == [("a", 5), ("c", 4), ("d", 3)]
    assert read == ["a", "b", "c", "b", "d", "e"], "it stops at the first that closed too early"
