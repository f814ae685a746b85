"""The local stack's mail, for a person trying ace-email: send the support mailbox an email
from any address, and read what the catch-all mailbox received (the automatic replies to
every address outside the local server).

    python3 dev.py send [--data-dir DIR] [--from ADDR] [--subject S] [TEXT]
    python3 dev.py mail [--data-dir DIR] [N]

Both read the stack's generated configuration in its data folder; `mail` reads the mailbox's
files, so it works whether or not the stack runs. Exit status 0, 1 when the stack does not
answer or there is no such message, 2 when the data folder holds no stack.
"""

from __future__ import annotations

import argparse
import email.policy
import mailbox
import smtplib
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings, load_settings
from devtools.processes import CATCH_ALL, DEFAULT_DATA_DIR


class DevMailError(Exception):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def stack_settings(data_dir: Path) -> Settings:
    config = data_dir / "ace-email.toml"
    if not config.exists():
        raise DevMailError(
            f"{data_dir} holds no local stack; start one with `python3 dev.py run`", status=2
        )
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise DevMailError(str(exc), status=2) from None


def send(data_dir: Path, sender: str, subject: str, text: str) -> str:
    account = stack_settings(data_dir).accounts[0]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = account.address
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    message.set_content(text)
    try:
        with smtplib.SMTP(account.smtp.host, account.smtp.port, timeout=10) as smtp:
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise DevMailError(
            f"SMTP {account.smtp.host}:{account.smtp.port} did not take it ({exc}); "
            "is `python3 dev.py run` running?"
        ) from None
    return (
        f"sent to {account.address} from {sender}: {subject!r}\n"
        f"the automatic reply reaches the catch-all mailbox within seconds: python3 dev.py mail"
        + ("" if data_dir == DEFAULT_DATA_DIR.resolve() else f" --data-dir {data_dir}")
    )


def caught_messages(data_dir: Path) -> list[EmailMessage]:
    """The catch-all mailbox's messages, oldest first."""
    folder = data_dir / "mail" / CATCH_ALL
    if not folder.exists():
        return []
    box = mailbox.Maildir(folder, factory=None, create=False)
    found: list[tuple[float, EmailMessage]] = []
    for key in box.iterkeys():
        try:
            with box.get_file(key) as handle:
                raw = handle.read()
            delivered = box.get_message(key).get_date()
        except (KeyError, OSError):  # moved by the server meanwhile (new -> cur)
            continue
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append((delivered, parsed))
    return [message for _, message in sorted(found, key=lambda pair: pair[0])]


def listing(data_dir: Path) -> str:
    messages = caught_messages(data_dir)
    if not messages:
        return f"{CATCH_ALL}: nothing yet (mail to addresses outside the local server lands here)"
    lines = [f"{CATCH_ALL}: {len(messages)} message(s) to addresses outside the local server"]
    for n, message in enumerate(messages, 1):
        lines.append(
            f"{n:>3}  {_when(message)}  to {message.get('X-Original-To', message['To'])}  "
            f"from {message['From']}: {message['Subject']}"
        )
    lines.append("python3 dev.py mail N   shows one")
    return "\n".join(lines)


def show(data_dir: Path, number: int) -> str:
    messages = caught_messages(data_dir)
    if not 1 <= number <= len(messages):
        raise DevMailError(f"no message {number} in {CATCH_ALL} ({len(messages)} there)")
    message = messages[number - 1]
    shown = ("From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "Auto-Submitted")
    lines = [f"{name}: {str(message[name]).strip()}" for name in shown if message[name]]
    body = message.get_body(preferencelist=("plain", "html"))
    lines += ["", body.get_content().rstrip() if body is not None else "(no text)"]
    return "\n".join(lines)


def _when(message: EmailMessage) -> str:
    try:
        date = message["Date"].datetime
    except (AttributeError, TypeError, ValueError):
        return "-" * 19
    return f"{date.astimezone(UTC) if date.tzinfo else date.replace(tzinfo=UTC):%Y-%m-%d %H:%M:%S}"


def main(argv: Sequence[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="the stack's state folder"
    )
    parser = argparse.ArgumentParser(prog="dev.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sending = commands.add_parser(
        "send", parents=[common], help="send the support mailbox an email"
    )
    sending.add_argument("--from", dest="sender", default="you@example.net")
    sending.add_argument(
        "--subject", default=f"A question, {datetime.now():%H:%M:%S}", help="its subject"
    )
    sending.add_argument("text", nargs="?", default="Hello,\n\nI have a question.\n")
    reading = commands.add_parser(
        "mail", parents=[common], help="what the catch-all mailbox received"
    )
    reading.add_argument("number", type=int, nargs="?", help="show this one")
    args = parser.parse_args(argv)
    data_dir: Path = args.data_dir.resolve()
    try:
        if args.command == "send":
            output = send(data_dir, args.sender, args.subject, args.text)
        elif args.number is None:
            output = listing(data_dir)
        else:
            output = show(data_dir, args.number)
    except DevMailError as exc:
        print(f"dev.py {args.command}: {exc}", file=sys.stderr)
        return exc.status
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
