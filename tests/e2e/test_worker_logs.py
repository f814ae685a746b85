"""A worker's log as an operator reads it: a failed poll is one line with the account and the
cause, an activity's described failure one line too; tracebacks only at DEBUG."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from ace_email.config.settings import Settings
from ace_email.operations.registry import sync
from activities.failure_logs import OneLineFailures
from tests.support import PASSWORD, free_port, write_config

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_a_described_activity_failure_is_one_line_and_its_traceback_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("temporalio.activity")
    one_line = OneLineFailures()
    logger.addFilter(one_line)
    caplog.set_level(logging.DEBUG, logger="temporalio.activity")
    try:
        try:
            raise ApplicationError("support: smtp 127.0.0.1:25: 550 no such user", type="Smtp")
        except ApplicationError:
            logger.warning(
                "Completing activity as failed ({'activity_type': 'send_auto_reply'})",
                exc_info=True,
                extra={
                    "temporal_activity": {
                        "activity_type": "send_auto_reply",
                        "workflow_id": "contact-support-abc",
                        "attempt": 2,
                    }
                },
            )
    finally:
        logger.removeFilter(one_line)
    debug, warning = caplog.records
    assert debug.levelno == logging.DEBUG and debug.exc_info is not None
    assert warning.levelno == logging.WARNING and warning.exc_info is None
    assert warning.getMessage() == (
        "send_auto_reply for contact-support-abc failed (attempt 2): Smtp: "
        "support: smtp 127.0.0.1:25: 550 no such user"
    )


def test_a_try_cut_short_is_one_line_too(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("temporalio.activity")
    one_line = OneLineFailures()
    logger.addFilter(one_line)
    caplog.set_level(logging.WARNING, logger="temporalio.activity")
    try:
        try:
            raise asyncio.CancelledError("Activity cancelled")
        except asyncio.CancelledError:
            logger.warning(
                "Completing activity as failed ({'activity_type': 'send_auto_reply'})",
                exc_info=True,
                extra={
                    "temporal_activity": {
                        "activity_type": "send_auto_reply",
                        "workflow_id": "contact-support-abc",
                        "attempt": 1,
                    }
                },
            )
    finally:
        logger.removeFilter(one_line)
    (warning,) = caplog.records
    assert warning.exc_info is None and "Traceback" not in caplog.text
    assert warning.getMessage().startswith(
        "send_auto_reply for contact-support-abc was cut short (attempt 1): past its time limit,"
    )


async def failing_polls_logged(
    settings: Settings, client: Client, tmp_path: Path, *options: str
) -> tuple[str, str, int]:
    """A worker (with `options`) whose only mailbox's IMAP port has nobody listening, run until
    it has logged two failed polls; its log, the account, and the dead port."""
    dead_port = free_port()
    account = settings.accounts[0]
    imap = account.imap.model_copy(update={"port": dead_port, "poll_interval_seconds": 0.5})
    settings = settings.model_copy(update={"accounts": [account.model_copy(update={"imap": imap})]})
    config = write_config(tmp_path / "ace-email.toml", settings)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "worker.py", "--config", str(config), *options],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await sync(client, settings)
        deadline = time.monotonic() + 60
        while len(re.findall("poll failed", log.read_text())) < 2:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    return log.read_text(), account.name, dead_port


@pytest.mark.embedded_only
@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_a_failed_poll_is_one_line_with_the_account_and_the_cause(
    settings: Settings, client: Client, tmp_path: Path, level: str
) -> None:
    text, account, dead_port = await failing_polls_logged(
        settings, client, tmp_path, "--log-level", level
    )
    failed = [line for line in text.splitlines() if "poll failed" in line]
    cause = f"{account}: cannot connect to IMAP 127.0.0.1:{dead_port}"
    assert all(f"mailbox {account}: poll failed: {cause}" in line for line in failed), failed
    if level == "INFO":
        assert "Traceback" not in text
        assert [ln for ln in text.splitlines() if " WARNING " in ln] == failed
    else:
        assert "Traceback" in text and "Connection refused" in text


@pytest.mark.embedded_only
async def test_json_logs_are_one_object_a_line_with_the_account_and_workflow(
    settings: Settings, client: Client, tmp_path: Path
) -> None:
    text, account, _ = await failing_polls_logged(
        settings, client, tmp_path, "--log-format", "json"
    )
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines), lines
    failed = [line for line in lines if "poll failed" in line["message"]]
    assert failed and all(line["level"] == "WARNING" for line in failed)
    for line in failed:
        assert line["account"] == account, line
        assert line["workflow_id"] == f"mailbox-{account}", line
        assert "temporal_workflow" not in line and "({" not in line["message"], line
    assert PASSWORD not in text
