"""The account registry and the operators' scripts.

    starter.py sync                        start / reconfigure / stop one poll loop per account;
                                           running queues and agents take the configuration
    starter.py list [--status S] [--account A] [--json]
                                           contacts, newest first
    starter.py status CONTACT [--json]     one contact in detail
    starter.py assign CONTACT AGENT        give a waiting contact to an agent now, bypassing
                                           the queue's order (never by SMTP unless an email)
    starter.py poll-now ACCOUNT            poll a mailbox now
    starter.py accounts [--json]           each mailbox's health: last successful poll, last
                                           error, messages waiting, lag
    starter.py analyse FILE.eml [--account NAME] [--json]
                                           what ace-email would make of an email: analysis,
                                           the rule that matched, the automatic reply rendered;
                                           sends and creates nothing, needs no Temporal

  Quarantine
    starter.py quarantine [--account A] [--json]
                                           what is in quarantine, and why
    starter.py quarantine release CONTACT [--by NAME]
                                           let one through: it becomes a contact, recorded
                                           as released by an operator

  Routing
    starter.py agent ready|not-ready|offline AGENT
    starter.py agents [--json]             presence, load and capacity of every agent
    starter.py queues [--json]             waiting contacts and the oldest wait of every queue
    starter.py transfer CONTACT --agent A | --queue Q
    starter.py requeue CONTACT             back to its queue, in its old place
    starter.py close CONTACT               done: frees the agent's place, archives the message
    starter.py accept CONTACT AGENT        a built-in agent takes the contact offered to them
    starter.py decline CONTACT AGENT       ... or gives it back to the queue

  Work items and social contacts
    starter.py workitem create --queue Q --subject S --body-file F [--priority P]
                               [--reply-to ADDR] [--channel workitem|social] [--external-id ID]

  The built-in agent interface
    starter.py inbox AGENT [--json]        the agent's contacts
    starter.py show CONTACT [--json]       the message: headers, text, attachments
    starter.py reply CONTACT --body-file F [--close | --keep-open]

Exit status 0 on success; 1 with one line on stderr for an unknown contact, account, agent or
queue, or a refused request; 2 for a bad configuration or an unreachable Temporal.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import getpass
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings, load_settings
from ace_email.contracts import ids
from ace_email.contracts import search_attributes as sa
from ace_email.contracts.base import policy_digest
from ace_email.contracts.contact import AssignRequest, CommandResult, ContactState
from ace_email.contracts.mailbox import AccountPolicy, MailboxInput
from ace_email.contracts.queues import Presence
from ace_email.exiting import run_then_exit
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations import agents_queues as routing_commands
from ace_email.operations import desk, quarantine, readable
from ace_email.operations.common import (
    Refused,
    contact_state,
    known_agent,
    newest_first,
    no_answer,
    why_not_open,
)
from ace_email.operations.preview import AnalysisPreview, preview
from ace_email.operations.workitems import WorkItemInvalid, create_work_item, parse_request
from ace_email.temporal.calls import RPC_TIMEOUT
from ace_email.temporal.client import TemporalUnavailable, connect, ensure_search_attributes
from workflows.contact import ContactWorkflow
from workflows.mailbox import MailboxWorkflow, format_duration

__all__ = ["Refused", "assign", "contact_state", "list_contacts", "main", "poll_now", "sync"]


async def sync(client: Client, settings: Settings) -> list[str]:
    """Make the running poll loops match the configuration; a second run changes nothing."""
    lines = [
        f"search attribute {name} registered"
        for name in await ensure_search_attributes(client, settings.temporal.namespace)
    ]
    configured = set()
    for account in settings.accounts:
        policy = settings.policy(account)
        workflow_id = ids.mailbox_workflow_id(account.name)
        configured.add(workflow_id)
        handle = client.get_workflow_handle(workflow_id)
        running_digest, polled_with = await _running_digest(handle)
        if running_digest is None:
            await client.start_workflow(
                MailboxWorkflow.run,
                MailboxInput(policy=policy),
                id=workflow_id,
                task_queue=settings.temporal.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                memo={"policy": policy_digest(policy)},
                static_summary=f"Mailbox {account.name} <{account.address}>",
                search_attributes=_mailbox_attributes(policy),
            )
            lines.append(f"{account.name}: started {workflow_id}")
        elif running_digest != policy_digest(policy):
            await handle.signal(MailboxWorkflow.reconfigure, policy, rpc_timeout=RPC_TIMEOUT)
            lines.append(f"{account.name}: reconfigured")
        else:
            lines.append(f"{account.name}: unchanged")
        if changed := _endpoint_changes(polled_with, account.endpoints()):
            lines.append(
                f"{account.name}: {'; '.join(changed)}: workers read these at their start; "
                "restart them (worker.py) to use the change"
            )
    running = (
        'WorkflowType="MailboxWorkflow" AND ExecutionStatus="Running" '
        f'AND TaskQueue="{settings.temporal.task_queue}"'
    )
    async for execution in client.list_workflows(running):
        if execution.id not in configured:
            await client.get_workflow_handle(execution.id).signal(MailboxWorkflow.stop)
            lines.append(f"{execution.id}: no longer configured; stopping")
    return lines + await routing_commands.sync_routing(client, settings)


def _mailbox_attributes(policy: AccountPolicy) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [SearchAttributePair(sa.ACCOUNT, policy.name), SearchAttributePair(sa.QUEUE, policy.queue)]
    )


async def _running_digest(
    handle: WorkflowHandle[Any, Any],
) -> tuple[str | None, dict[str, str]]:
    """The running poll loop's policy digest (None: none runs), and the endpoints its
    workers last polled with."""
    try:
        description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None, {}
        raise
    if description.status != WorkflowExecutionStatus.RUNNING:
        return None, {}
    digest = await description.memo_value("policy", default="")
    polled_with = await description.memo_value("connection", default={})
    return str(digest), dict(polled_with) if isinstance(polled_with, dict) else {}


def _endpoint_changes(polled_with: Mapping[str, str], configured: Mapping[str, str]) -> list[str]:
    """What the configuration says otherwise than the workers that polled last use."""
    return [
        f"{key} {polled_with[key]} -> {value}"
        for key, value in configured.items()
        if key in polled_with and polled_with[key] != value
    ]


async def list_contacts(
    client: Client, status: str | None, limit: int, account: str | None = None
) -> list[dict[str, Any]]:
    query = 'WorkflowType="ContactWorkflow"'
    if status:
        query += f' AND {sa.STATUS.name}="{status}"'
    if account:
        query += f' AND {sa.ACCOUNT.name}="{account}"'
    rows: list[dict[str, Any]] = []
    for execution in await newest_first(client.list_workflows(query), limit):
        attributes = execution.typed_search_attributes
        memo = await _readable_memo(execution)
        rows.append(
            {
                "id": execution.id,
                "status": attributes.get(sa.STATUS),
                "account": attributes.get(sa.ACCOUNT),
                "from": memo.get("from", ""),
                "subject": memo.get("subject", ""),
                "queue": attributes.get(sa.QUEUE),
                "agent": attributes.get(sa.AGENT),
                "started": execution.start_time.isoformat() if execution.start_time else None,
                "channel": attributes.get(sa.CHANNEL) or "email",
            }
        )
    return rows


async def _readable_memo(execution: WorkflowExecution) -> Mapping[str, Any]:
    """The memo, or a placeholder where it is encrypted with a key this client lacks (or
    written by a codec it does not have): one such contact must not hide the others."""
    try:
        return await execution.memo()
    except (KeyError, ValueError):
        return {"from": "(encrypted)", "subject": "(encrypted)"}


async def assign(client: Client, settings: Settings, contact_id: str, agent_id: str) -> str:
    agent = known_agent(settings, agent_id)
    handle = client.get_workflow_handle_for(ContactWorkflow.run, contact_id)
    try:
        result = await handle.execute_update(
            ContactWorkflow.assign,
            AssignRequest(agent_id=agent.id, agent_name=agent.name, agent_email=agent.email),
        )
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise Refused(no_answer(f"contact {contact_id}")) from None
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        raise Refused(f"assignment refused: {reason}") from None
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            reason = await why_not_open(handle, contact_id)
            raise Refused(
                f"assignment refused: {reason}; only a queued contact can be assigned"
            ) from None
        raise
    where = f" ({agent.email})" if agent.email else " (built-in agent interface)"
    detail = f": {result.detail}" if result.detail else ""
    return f"{contact_id}: {result.status.value}, agent {agent.id}{where}{detail}"


async def poll_now(client: Client, settings: Settings, account_name: str) -> str:
    try:
        settings.account(account_name)
    except ConfigError as exc:
        raise Refused(str(exc)) from None
    handle = client.get_workflow_handle(ids.mailbox_workflow_id(account_name))
    try:
        await handle.signal(MailboxWorkflow.poll_now, rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise Refused(
                f"account {account_name!r} has no running poll loop; run `starter.py sync`"
            ) from None
        raise
    return f"{account_name}: poll requested"


async def accounts(client: Client, settings: Settings) -> list[dict[str, Any]]:
    """Each configured account's poll loop, asked all at once: one silent loop holds up none.

    Besides the fields of `MailboxStatus`: `running` (a poll loop runs), `health` (`ok`,
    `failing`, `starting` before its first poll, `no worker` when no worker answers, `not
    running`), and `lag_seconds`: the longest an email may have been waiting in the inbox
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
        status = await handle.query(MailboxWorkflow.status, rpc_timeout=RPC_TIMEOUT)
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


def _describe_account(row: dict[str, Any]) -> str:
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
    parts.append(f"last error {row['last_error'] or '-'}")
    return ", ".join(parts)


def _when(value: str | None) -> str:
    if not value:
        return "never"
    return f"{datetime.fromisoformat(value):%Y-%m-%d %H:%M:%S} UTC"


def analyse(settings: Settings, file: str, account: str | None, *, as_json: bool) -> str:
    """The `analyse` command: a preview of one email; nothing is sent or created."""
    if not settings.accounts:
        raise Refused("the configuration has no accounts")
    try:
        raw = Path(file).read_bytes()
    except OSError as exc:
        raise Refused(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        result = preview(settings, account or settings.accounts[0].name, raw)
    except ConfigError as exc:
        raise Refused(str(exc)) from None
    except ValueError as exc:  # a template that does not render
        raise Refused(f"the automatic reply cannot be rendered: {exc}") from None
    if as_json:
        return result.model_dump_json(indent=2, by_alias=True, exclude_none=True)
    return _describe_preview(result)


def _describe_preview(result: AnalysisPreview) -> str:
    analysis, routing = result.analysis, result.routing
    automatic = "yes: " + "; ".join(analysis.automatic_reasons) if analysis.automatic else "no"
    lines = [
        f"account:     {result.account}",
        f"contact:     {result.contact_id}  [#{result.reference}]",
        f"from:        {analysis.sender or '-'}",
        f"subject:     {analysis.subject or '-'}",
        f"language:    {analysis.language or 'unknown'}",
        f"size:        {analysis.size} bytes, {len(analysis.attachments)} attachment(s)",
        f"automatic:   {automatic}",
    ]
    if analysis.spam is not None:
        lines.append(f"spam:        {'yes' if analysis.spam else 'no'} ({analysis.spam_detail})")
    if result.follow_up_hint:
        lines.append(f"follow-up:   {result.follow_up_hint}")
    if analysis.quarantine_reason:
        lines.append(f"quarantine:  {analysis.quarantine_reason}")
    if routing is not None:
        lines += [
            f"rule:        {routing.rule}",
            f"queue:       {routing.queue} (priority {routing.priority}, "
            f"skills {', '.join(routing.skills) or '-'}, category {routing.category or '-'})",
        ]
    lines.append(f"auto-reply:  {result.auto_reply}")
    if analysis.problems:
        lines.append(f"problems:    {'; '.join(analysis.problems)}")
    if result.auto_reply_message:
        lines += ["", "----- the automatic reply -----", *_readable(result.auto_reply_message)]
    return "\n".join(lines)


def _readable(message_text: str) -> list[str]:
    """An outgoing message as a person reads it: decoded headers, the plain-text part."""
    message = email.message_from_string(message_text, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    lines = [f"{name}: {value}" for name, value in message.items()]
    text = message.get_body(preferencelist=("plain",))
    lines += ["", text.get_content().rstrip() if text is not None else "(no text part)"]
    if message.get_body(preferencelist=("html",)) is not None:
        lines += ["", "(with an HTML alternative; --json shows the whole message)"]
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="starter.py", description="ace-email account registry and operator scripts"
    )
    parser.add_argument(
        "--config", help="TOML configuration (default: $ACE_EMAIL_CONFIG or ./ace-email.toml)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "sync", help="start, reconfigure or stop one poll loop per configured account"
    )
    listing = commands.add_parser("list", help="list contacts")
    listing.add_argument(
        "--status", help="only contacts with this status (queued, assigned, delivered, ...)"
    )
    listing.add_argument("--account", help="only contacts of this account")
    listing.add_argument("--limit", type=int, default=1000)
    listing.add_argument("--json", action="store_true")
    status = commands.add_parser("status", help="show one contact")
    status.add_argument("contact")
    status.add_argument("--json", action="store_true")
    assigning = commands.add_parser("assign", help="assign a queued contact to an agent")
    assigning.add_argument("contact")
    assigning.add_argument("agent")
    polling = commands.add_parser("poll-now", help="poll an account's mailbox now")
    polling.add_argument("account")
    account_list = commands.add_parser("accounts", help="show each mailbox's poll loop")
    account_list.add_argument("--json", action="store_true")
    analysing = commands.add_parser(
        "analyse", help="try an email against the rules and templates; sends nothing"
    )
    analysing.add_argument("file", help="a raw email (.eml)")
    analysing.add_argument("--account", help="account whose rules apply (default: the first)")
    analysing.add_argument("--json", action="store_true")

    held = commands.add_parser("quarantine", help="what is in quarantine, and why")
    held.add_argument("--account", help="only this account's")
    held.add_argument("--json", action="store_true")
    held_commands = held.add_subparsers(dest="quarantine_command")
    releasing = held_commands.add_parser("release", help="let one quarantined email through")
    releasing.add_argument("contact", help="the quarantined contact, as listed")
    releasing.add_argument("--by", default=getpass.getuser(), help="who releases it")

    presence = commands.add_parser("agent", help="set an agent's presence")
    presence.add_argument("presence", choices=[p.value for p in Presence])
    presence.add_argument("agent")
    for name, text in (("agents", "agents' presence and load"), ("queues", "the queues")):
        listing = commands.add_parser(name, help=text)
        listing.add_argument("--json", action="store_true")
    transferring = commands.add_parser(
        "transfer", help="move a contact to a queue or an agent's personal waiting list"
    )
    transferring.add_argument("contact")
    target = transferring.add_mutually_exclusive_group(required=True)
    target.add_argument("--agent")
    target.add_argument("--queue")
    for name, text in (
        ("requeue", "put a contact back in its queue, in its old place"),
        ("close", "close a contact: frees the agent's place, archives the message"),
    ):
        commands.add_parser(name, help=text).add_argument("contact")
    for name, text in (
        ("accept", "a built-in agent accepts the contact offered to them"),
        ("decline", "a built-in agent declines the contact offered to them"),
    ):
        answering = commands.add_parser(name, help=text)
        answering.add_argument("contact")
        answering.add_argument("agent")

    workitem = commands.add_parser("workitem", help="work items and social contacts")
    workitem_commands = workitem.add_subparsers(dest="workitem_command", required=True)
    creating = workitem_commands.add_parser("create", help="create a work item")
    creating.add_argument("--queue", required=True)
    creating.add_argument("--subject", required=True)
    creating.add_argument("--body-file", required=True, help="a UTF-8 text file; - for stdin")
    creating.add_argument("--priority", type=int, default=0)
    creating.add_argument("--reply-to", help="where replies from the built-in interface go")
    creating.add_argument("--channel", choices=["workitem", "social"], default="workitem")
    creating.add_argument("--external-id", help="the source's id: sent twice, created once")
    creating.add_argument("--skill", action="append", default=[], help="a skill it needs")
    creating.add_argument("--sender-name", default="")
    creating.add_argument("--json", action="store_true")

    inbox = commands.add_parser("inbox", help="an agent's contacts")
    inbox.add_argument("agent")
    inbox.add_argument("--json", action="store_true")
    showing = commands.add_parser("show", help="a contact's message: headers, text, attachments")
    showing.add_argument("contact")
    showing.add_argument("--json", action="store_true")
    replying = commands.add_parser("reply", help="reply to a contact from the built-in interface")
    replying.add_argument("contact")
    replying.add_argument("--body-file", required=True, help="a UTF-8 text file; - for stdin")
    closing = replying.add_mutually_exclusive_group()
    closing.add_argument("--close", action="store_true", help="close the contact once sent")
    closing.add_argument("--keep-open", action="store_true", help="keep it open (the default)")
    return parser


async def main(argv: Sequence[str] | None = None, client: Client | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        if args.command == "analyse":
            output = analyse(settings, args.file, args.account, as_json=args.json)
        else:
            client = client or await connect(settings.temporal)
            output = await _run(args, client, settings)
    except (Refused, WorkItemInvalid) as exc:
        print(f"starter.py {args.command}: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, TemporalUnavailable) as exc:
        print(f"starter.py {args.command}: {exc}", file=sys.stderr)
        return 2
    except RPCError as exc:
        print(
            f"starter.py {args.command}: Temporal answered {exc.status.name}: {exc.message}",
            file=sys.stderr,
        )
        return 2
    if output:
        print(output)
    return 0


async def _run(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    if args.command == "sync":
        return "\n".join(await sync(client, settings))
    if args.command == "list":
        rows = await list_contacts(client, args.status, args.limit, args.account)
        if args.json:
            return json.dumps(rows, indent=2, ensure_ascii=False)
        return (
            "\n".join(
                f"{r['id']}  {r['status'] or '-':<11} {r['queue'] or '-':<10} "
                f"{r['agent'] or '-':<10} "
                f"{r['from']}: {r['subject']}"
                for r in rows
            )
            or "no contacts"
        )
    if args.command == "status":
        state = await contact_state(client, args.contact)
        if args.json:
            return state.model_dump_json(indent=2, by_alias=True)
        return _describe_contact(state)
    if args.command == "assign":
        return await assign(client, settings, args.contact, args.agent)
    if args.command == "poll-now":
        return await poll_now(client, settings, args.account)
    if args.command == "accounts":
        rows = await accounts(client, settings)
        if args.json:
            return json.dumps(rows, indent=2)
        return "\n".join(_describe_account(r) for r in rows) or "no accounts configured"
    if args.command == "quarantine":
        if args.quarantine_command == "release":
            return await quarantine.release(client, settings, args.contact, args.by)
        held = await quarantine.quarantined(client, args.account)
        return (
            json.dumps(held, indent=2, ensure_ascii=False)
            if args.json
            else quarantine.describe(held)
        )
    return await _run_routing(args, client, settings)


async def _run_routing(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    if args.command == "agent":
        agent = await routing_commands.set_presence(
            client, settings, args.agent, Presence(args.presence)
        )
        return f"{agent.id}: {agent.presence.value}, {agent.load} of {agent.capacity}"
    if args.command == "agents":
        rows = await routing_commands.agents(client, settings)
        if args.json:
            return json.dumps(rows, indent=2, ensure_ascii=False)
        return "\n".join(_describe_agent(r) for r in rows) or "no agents configured"
    if args.command == "queues":
        rows = await routing_commands.queues(client, settings)
        if args.json:
            return json.dumps(rows, indent=2)
        return "\n".join(_describe_queue(r) for r in rows) or "no queues"
    if args.command == "transfer":
        result = await routing_commands.transfer(
            client, settings, args.contact, queue=args.queue, agent_id=args.agent
        )
        return _describe_result(result)
    if args.command in ("requeue", "close"):
        command = "close_contact" if args.command == "close" else "requeue"
        return _describe_result(
            await routing_commands.contact_command(client, args.contact, command)
        )
    if args.command in ("accept", "decline"):
        result = await routing_commands.answer_offer(
            client, settings, args.contact, args.agent, accept=args.command == "accept"
        )
        return _describe_result(result)
    return await _run_desk(args, client, settings)


async def _run_desk(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    if args.command == "workitem":
        request = parse_request(
            {
                "queue": args.queue,
                "subject": args.subject,
                "body": _read_text(args.body_file),
                "priority": args.priority,
                "reply_to": args.reply_to,
                "channel": args.channel,
                "external_id": args.external_id,
                "skills": args.skill,
                "sender_name": args.sender_name,
            },
            settings,
        )
        pool = ImapPool(settings)
        try:
            created = await create_work_item(client, settings, pool, request)
        finally:
            pool.close_all()
        if args.json:
            return created.model_dump_json(indent=2)
        verb = "created" if created.created else "already there"
        return f"{created.contact_id}: {verb} [#{created.reference}] in queue {created.queue}"
    if args.command == "inbox":
        rows = await desk.inbox(client, settings, args.agent)
        if args.json:
            return json.dumps(rows, indent=2, ensure_ascii=False)
        return "\n".join(_describe_inbox_row(r) for r in rows) or f"{args.agent}: nothing"
    if args.command == "show":
        shown = await desk.show(client, settings, args.contact)
        if args.json:
            return shown.model_dump_json(indent=2, by_alias=True)
        return _describe_shown(shown)
    if args.command == "reply":
        result = await desk.reply(
            client, settings, args.contact, _read_text(args.body_file), close=args.close
        )
        return _describe_result(result)
    raise Refused(f"unknown command {args.command}")


def _read_text(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise Refused(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise Refused(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None


def _describe_result(result: CommandResult) -> str:
    detail = f": {result.detail}" if result.detail else ""
    return f"{result.contact_id}: {result.status.value}{detail}"


def _describe_agent(row: dict[str, Any]) -> str:
    where = row["email"] or "built-in interface"
    personal = len(row["personal_waiting"])
    return (
        f"{row['id']:<12} {row['presence']:<10} {row['load']} of {row['capacity']:<3} "
        f"{where}"
        + (f", {personal} waiting in person" if personal else "")
        + (f", skills {', '.join(row['skills'])}" if row["skills"] else "")
    )


def _describe_queue(row: dict[str, Any]) -> str:
    wait = row["oldest_wait_seconds"]
    oldest = format_duration(timedelta(seconds=wait)) if wait is not None else "-"
    return (
        f"{row['queue']:<14} {row['waiting']} waiting, oldest {oldest}, "
        f"{row['agents_ready']} agent(s) ready ({row['agents_free']} with a free place), "
        f"{row['routed']} routed"
    )


def _describe_inbox_row(row: dict[str, Any]) -> str:
    if "status" not in row:
        return f"{row['id']}  (does not answer)"
    status = "waiting for you" if row["waiting_for_you"] else row["status"]
    until = f" until {row['offer_expires_at']}" if row.get("offer_expires_at") else ""
    return (
        f"{row['id']}  {status}{until}  [{row['channel']}] [#{row['reference']}] "
        f"{row['from']}: {row['subject']}"
    )


def _describe_shown(shown: desk.ShownMessage) -> str:
    state = shown.contact
    lines = [f"{state.id}  {state.status.value}  [{state.channel.value}] [#{state.reference}]"]
    lines += [f"{name}: {value}" for name, value in shown.headers]
    lines += ["", shown.text.rstrip() or "(no text)", ""]
    if shown.attachments:
        lines.append("Attachments:")
        lines += [
            f"  {a.filename or '(unnamed)'}  {a.content_type}  {a.size} bytes"
            for a in shown.attachments
        ]
    if state.follow_ups:
        lines.append(
            f"Follow-ups: {len(state.follow_ups)} (newest: {state.follow_ups[-1].subject})"
        )
    return "\n".join(lines)


def _describe_contact(state: ContactState) -> str:
    fields = state.model_dump(by_alias=True, exclude={"message"})
    if state.message is not None:
        where = state.message
        fields["message"] = f"{where.folder} uid {where.uid}, {where.size} bytes"
    return readable.record(fields)


if __name__ == "__main__":
    run_then_exit(lambda: asyncio.run(main()))
