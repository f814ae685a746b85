"""The operators' scripts as operators run them: `starter.py` commands, JSON fields, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ace_email.analysis import mime
from ace_email.contracts import ids
from starter import main
from tests.conftest import Pipeline
from tests.support import eventually, make_message, write_config

pytestmark = pytest.mark.e2e


async def test_scripts_drive_a_contact_from_queue_to_delivery(
    pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path / "ace-email.toml", pipeline.settings))
    client = pipeline.client
    assert await main(["--config", config, "sync"], client) == 0
    raw = make_message("Scripted")
    await pipeline.mail.send(raw)
    assert await main(["--config", config, "poll-now", pipeline.account], client) == 0
    contact_id = ids.contact_workflow_id(pipeline.account, mime.message_key(raw))

    async def listed() -> dict[str, object]:
        capsys.readouterr()
        assert await main(["--config", config, "list", "--status", "queued", "--json"], client) == 0
        rows = [r for r in json.loads(capsys.readouterr().out) if r["id"] == contact_id]
        assert rows
        return dict(rows[0])

    row = await eventually(listed)
    assert {"id", "status", "account", "from", "subject", "queue", "agent"} <= row.keys()
    assert (row["status"], row["account"], row["subject"], row["queue"], row["agent"]) == (
        "queued",
        pipeline.account,
        "Scripted",
        "support",
        None,
    )

    assert await main(["--config", config, "assign", contact_id, "alice"], client) == 0
    assert "delivered" in capsys.readouterr().out
    assert await main(["--config", config, "status", contact_id, "--json"], client) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["status"] == "delivered" and state["agent"] == "alice" and state["from"]

    assert await main(["--config", config, "assign", contact_id, "bob"], client) == 1
    assert await main(["--config", config, "status", "contact-nobody-0", "--json"], client) == 1
    assert await main(["--config", config, "assign", contact_id, "mallory"], client) == 1
    assert await main(["--config", config, "poll-now", "no-such-account"], client) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4
    assert "is delivered; only a queued contact can be assigned" in errors[0]
    assert "no contact 'contact-nobody-0'" in errors[1]
    assert "unknown agent 'mallory'" in errors[2]
    assert "no account named 'no-such-account'" in errors[3]

    assert await main(["--config", config, "accounts", "--json"], client) == 0
    (mailbox,) = json.loads(capsys.readouterr().out)
    assert (
        mailbox["account"] == pipeline.account
        and mailbox["running"]
        and mailbox["last_error"] is None
    )
    assert mailbox["health"] == "ok" and mailbox["last_success_at"]
    assert mailbox["waiting"] in (0, 1) and mailbox["lag_seconds"] >= 0


async def test_sync_says_when_a_change_takes_a_worker_restart(
    pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path / "ace-email.toml", pipeline.settings))
    client = pipeline.client
    assert await main(["--config", config, "sync"], client) == 0

    async def polled() -> bool:
        capsys.readouterr()
        assert await main(["--config", config, "accounts", "--json"], client) == 0
        (row,) = json.loads(capsys.readouterr().out)
        return bool(row["last_success_at"] and row["connection"])

    await eventually(polled)
    capsys.readouterr()
    assert await main(["--config", config, "sync"], client) == 0
    assert capsys.readouterr().out.strip().endswith(f"{pipeline.account}: unchanged")

    account = pipeline.settings.accounts[0]
    port = account.imap.port
    moved = account.model_copy(update={"imap": account.imap.model_copy(update={"port": port + 1})})
    elsewhere = pipeline.settings.model_copy(update={"accounts": [moved]})
    other = str(write_config(tmp_path / "moved.toml", elsewhere))
    assert await main(["--config", other, "sync"], client) == 0
    said = capsys.readouterr().out
    assert (
        f"{pipeline.account}: imap.port {port} -> {port + 1}: workers read these at their "
        "start; restart them (worker.py) to use the change"
    ) in said, said
