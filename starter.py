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
    starter.py hash-password               an argon2 hash of a desk password (stdin or asked)
    starter.py analyse FILE.eml [--account NAME] [--json]
                                           what ace-email would make of an email: analysis,
                                           the rule that matched, the automatic reply rendered;
                                           sends and creates nothing, needs no Temporal
    starter.py stats [--since DATE] [--until DATE] [--json | --csv]
                                           per queue, agent and account: contacts received,
                                           quarantined, answered automatically, routed,
                                           delivered, closed and waiting; wait and handling
                                           times; the share answered in time (from the
                                           statistics database; needs no Temporal)

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
    starter.py forward CONTACT --to ADDR [--note-file F] [--by NAME]
                                           a new message, the note and the original attached
    starter.py redirect CONTACT --to ADDR [--by NAME]
                                           the original resent unchanged (Resent-* fields)

Exit status 0 on success; 1 with one line on stderr for an unknown contact, account, agent or
queue, a refused request, or a Temporal that refuses the connection (client certificate, CA, API
key); 2 for a bad configuration, an unreachable Temporal, or a statistics database that is
unreachable or not migrated. `--log-format json` (before the command) logs one JSON object a
line.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError

from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings, load_settings
from ace_email.contracts.queues import Presence
from ace_email.exiting import run_then_exit
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations import (
    agents_queues,
    contacts,
    desk,
    forwarding,
    mailboxes,
    preview,
    quarantine,
    registry,
    stats,
    workitems,
)
from ace_email.operations.common import Refused, contact_state
from ace_email.operations.forwarding import Mode
from ace_email.operations.workitems import WorkItemInvalid
from ace_email.statistics.store import StatisticsUnavailable
from ace_email.telemetry.logs import add_logging_arguments, configure_logging
from ace_email.temporal.client import TemporalUnavailable, connect

Command = Callable[[argparse.Namespace, Client, Settings], Awaitable[str]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="starter.py", description="ace-email account registry and operator scripts"
    )
    parser.add_argument(
        "--config", help="TOML configuration (default: $ACE_EMAIL_CONFIG or ./ace-email.toml)"
    )
    add_logging_arguments(parser, default_level="WARNING")
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
    counting = commands.add_parser(
        "stats", help="figures per queue, agent and account from the statistics database"
    )
    counting.add_argument(
        "--since", help="YYYY-MM-DD or ISO date and time, UTC (default: today 00:00 UTC)"
    )
    counting.add_argument(
        "--until", help="YYYY-MM-DD (that day included) or ISO date and time (default: now)"
    )
    shape = counting.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true")
    shape.add_argument("--csv", action="store_true")
    commands.add_parser(
        "hash-password",
        help="an argon2 hash of a desk password (read from stdin or asked for), for "
        "password_hash or password_file; needs no configuration",
    )

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
    forwarding = commands.add_parser(
        "forward", help="forward a contact's email to an outside address, with a note"
    )
    forwarding.add_argument("contact")
    forwarding.add_argument("--to", required=True, help="the outside address")
    forwarding.add_argument("--note-file", help="the note, a UTF-8 text file; - for stdin")
    forwarding.add_argument("--by", default="", help="who forwards it (shown on the contact)")
    redirecting = commands.add_parser(
        "redirect", help="resend a contact's email unchanged to an outside address"
    )
    redirecting.add_argument("contact")
    redirecting.add_argument("--to", required=True, help="the outside address")
    redirecting.add_argument("--by", default="", help="who redirects it (shown on the contact)")
    return parser


async def main(argv: Sequence[str] | None = None, client: Client | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    if args.command == "hash-password":
        return _hash_password()
    try:
        settings = load_settings(args.config)
        if args.command == "analyse":
            output = preview.analyse(settings, args.file, args.account, as_json=args.json)
        elif args.command == "stats":
            output = _stats(args, settings)
        else:
            client = client or await connect(settings.temporal)
            output = await COMMANDS[args.command](args, client, settings)
    except (Refused, WorkItemInvalid) as exc:
        print(f"starter.py {args.command}: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, StatisticsUnavailable) as exc:
        print(f"starter.py {args.command}: {exc}", file=sys.stderr)
        return 2
    except TemporalUnavailable as exc:
        print(f"starter.py {args.command}: {exc}", file=sys.stderr)
        return exc.exit_status
    except RPCError as exc:
        print(
            f"starter.py {args.command}: Temporal answered {exc.status.name}: {exc.message}",
            file=sys.stderr,
        )
        return 2
    if output:
        print(output)
    return 0


def _shown(
    rows: list[dict[str, Any]], as_json: bool, line: Callable[[dict[str, Any]], str], empty: str
) -> str:
    if as_json:
        return json.dumps(rows, indent=2, ensure_ascii=False)
    return "\n".join(line(row) for row in rows) or empty


def _stats(args: argparse.Namespace, settings: Settings) -> str:
    since, until = stats.window(args.since, args.until)
    figures = stats.report(settings, since, until)
    if args.json:
        return stats.as_json(figures)
    return stats.as_csv(figures) if args.csv else stats.describe(figures)


async def _sync(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    return "\n".join(await registry.sync(client, settings))


async def _list(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    rows = await contacts.list_contacts(client, args.status, args.limit, args.account)
    return _shown(rows, args.json, contacts.describe_row, "no contacts")


async def _status(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    state = await contact_state(client, args.contact)
    if args.json:
        return state.model_dump_json(indent=2, by_alias=True)
    return contacts.describe_contact(state)


async def _assign(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    return await contacts.assign(client, settings, args.contact, args.agent)


async def _poll_now(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    return await contacts.poll_now(client, settings, args.account)


async def _accounts(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    rows = await mailboxes.accounts(client, settings)
    return _shown(rows, args.json, mailboxes.describe_account, "no accounts configured")


async def _quarantine(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    if args.quarantine_command == "release":
        return await quarantine.release(client, settings, args.contact, args.by)
    held = await quarantine.quarantined(client, args.account)
    return (
        json.dumps(held, indent=2, ensure_ascii=False) if args.json else quarantine.describe(held)
    )


async def _agent(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    presence = Presence(args.presence)
    agent = await agents_queues.set_presence(client, settings, args.agent, presence)
    return f"{agent.id}: {agent.presence.value}, {agent.load} of {agent.capacity}"


async def _agents(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    rows = await agents_queues.agents(client, settings)
    return _shown(rows, args.json, agents_queues.describe_agent, "no agents configured")


async def _queues(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    rows = await agents_queues.queues(client, settings)
    return _shown(rows, args.json, agents_queues.describe_queue, "no queues")


async def _transfer(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    result = await agents_queues.transfer(
        client, settings, args.contact, queue=args.queue, agent_id=args.agent
    )
    return contacts.describe_result(result)


async def _requeue_or_close(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    command = "close_contact" if args.command == "close" else "requeue"
    result = await agents_queues.contact_command(client, args.contact, command)
    return contacts.describe_result(result)


async def _answer_offer(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    accept = args.command == "accept"
    result = await agents_queues.answer_offer(
        client, settings, args.contact, args.agent, accept=accept
    )
    return contacts.describe_result(result)


async def _workitem(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    request = workitems.parse_request(
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
        created = await workitems.create_work_item(client, settings, pool, request)
    finally:
        pool.close_all()
    if args.json:
        return created.model_dump_json(indent=2)
    verb = "created" if created.created else "already there"
    return f"{created.contact_id}: {verb} [#{created.reference}] in queue {created.queue}"


async def _inbox(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    rows = await desk.inbox(client, settings, args.agent)
    return _shown(rows, args.json, desk.describe_inbox_row, f"{args.agent}: nothing")


async def _show(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    shown = await desk.show(client, settings, args.contact)
    if args.json:
        return shown.model_dump_json(indent=2, by_alias=True)
    return desk.describe_shown(shown)


async def _reply(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    text = _read_text(args.body_file)
    result = await desk.reply(client, settings, args.contact, text, close=args.close)
    return contacts.describe_result(result)


async def _send_on(args: argparse.Namespace, client: Client, settings: Settings) -> str:
    mode: Mode = "forward" if args.command == "forward" else "redirect"
    note = _read_text(args.note_file) if getattr(args, "note_file", None) else ""
    result = await forwarding.send_on(
        client, settings, args.contact, args.to, mode=mode, note=note, by=args.by
    )
    return contacts.describe_result(result)


COMMANDS: dict[str, Command] = {
    "sync": _sync,
    "list": _list,
    "status": _status,
    "assign": _assign,
    "poll-now": _poll_now,
    "accounts": _accounts,
    "quarantine": _quarantine,
    "agent": _agent,
    "agents": _agents,
    "queues": _queues,
    "transfer": _transfer,
    "requeue": _requeue_or_close,
    "close": _requeue_or_close,
    "accept": _answer_offer,
    "decline": _answer_offer,
    "workitem": _workitem,
    "inbox": _inbox,
    "show": _show,
    "reply": _reply,
    "forward": _send_on,
    "redirect": _send_on,
}


def _hash_password() -> int:
    from ace_email.desk.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("desk password: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("starter.py hash-password: use at least 8 characters", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def _read_text(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise Refused(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise Refused(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None


if __name__ == "__main__":
    run_then_exit(lambda: asyncio.run(main()))
