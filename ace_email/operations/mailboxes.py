"""Each mailbox's health (`starter.py accounts`): its poll loop, asked all at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.base import format_duration
from ace_email.contracts.mailbox import MailboxStatus
from ace_email.temporal.calls import RPC_TIMEOUT


async def accounts(client: Client, settings: Settings) -> list[dict[str, Any]]:
    """Each configured account's poll loop, asked all at once: one silent loop holds up none.

    Besides the fields of `MailboxStatus`: `running` (a poll loop runs), `health` (`ok`,
    `failing`, `starting` before its first poll, `no worker` when no worker answers, `not
    running`), `push` (`IMAP IDLE` while the inbox is watched, else why not), and
    `lag_seconds`: the longest an email may have been waiting in the inbox
    without becoming a contact, from the arrival of the oldest email waiting at the last
    successful poll, or from that poll if none was waiting; null before the first success.
    """
    return list(await asyncio.gather(*(_account_row(client, a.name) for a in settings.accounts)))


async def _account_row(client: Client, account: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "account": account,
        "running": False,
        "health": "not running",
        "last_success_at": None,
        "last_error": None,
        "waiting": None,
        "lag_seconds": None,
    }
    handle = client.get_workflow_handle(ids.mailbox_workflow_id(account))
    try:
        description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return row | {"last_error": f"{account}: no poll loop; run `starter.py sync`"}
    if description.status != WorkflowExecutionStatus.RUNNING:
        state = description.status.name.lower() if description.status else "closed"
        return row | {"last_error": f"{account}: the poll loop has {state}; run `starter.py sync`"}
    try:
        status: MailboxStatus = await handle.query(
            "status", result_type=MailboxStatus, rpc_timeout=RPC_TIMEOUT
        )
    except (RPCError, WorkflowQueryFailedError) as err:
        return row | {
            "running": True,
            "health": "no worker",
            "last_error": f"{account}: the poll loop does not answer (is a worker running?): {err}",
        }
    lag = status.lag(datetime.now(UTC))
    return row | {
        "running": True,
        "health": status.health.value if status.health else "starting",
        **status.model_dump(mode="json", exclude={"account"}),
        "lag_seconds": round(lag.total_seconds(), 1) if lag is not None else None,
    }


def describe_account(row: dict[str, Any]) -> str:
    if not row["running"] or row["health"] == "no worker":
        return f"{row['account']}: {row['health'].upper()}: {row['last_error']}"
    lag = row["lag_seconds"]
    health = row["health"].upper() if row["health"] == "failing" else row["health"]
    parts = [
        f"{row['account']}: {health}",
        f"last success {_when(row['last_success_at'])}",
        f"waiting {row['waiting']}",
        f"lag {format_duration(timedelta(seconds=lag)) if lag is not None else '-'}",
    ]
    if row["health"] == "failing":
        parts.append(
            f"{row['failures']} failed polls since {_when(row['failing_since'])}, "
            f"next try {_when(row['next_poll_at'])}"
        )
    if row.get("throttled"):
        parts.append(f"throttled: {row['throttled']}")
    if row.get("diverted"):
        parts.append(f"{row['diverted']} sent to the flood queue")
    parts.append(f"push {row.get('push') or '-'}")
    parts.append(f"last error {row['last_error'] or '-'}")
    return ", ".join(parts)


def _when(value: str | None) -> str:
    if not value:
        return "never"
    return f"{datetime.fromisoformat(value):%Y-%m-%d %H:%M:%S} UTC"
