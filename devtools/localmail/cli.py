"""The local mail server on its own: `python -m devtools.localmail --data-dir DIR ...`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from devtools.localmail.server import LocalMailServer
from devtools.localmail.users import parse_user, read_users_file

_log = logging.getLogger("devtools.localmail")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.localmail",
        description="Local IMAP (pymap maildir) + SMTP (aiosmtpd) server for the demo.",
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="mail storage directory")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback)")
    parser.add_argument("--imap-port", type=int, default=1143)
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="ADDRESS:PASSWORD",
        help="a mailbox of this local demo server (repeatable)",
    )
    parser.add_argument(
        "--users-file",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="file with one ADDRESS:PASSWORD per line (# comments allowed)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default INFO)",
    )
    return parser


async def _serve(server: LocalMailServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(
            f"localmail ready imap={server.host}:{server.imap_port} "
            f"smtp={server.host}:{server.smtp_port}",
            flush=True,
        )
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; runs until SIGINT/SIGTERM."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        users = [parse_user(spec) for spec in args.user]
        for users_file in args.users_file:
            users.extend(read_users_file(users_file))
        if not users:
            parser.error("give at least one --user or --users-file")
        server = LocalMailServer(
            args.data_dir,
            users,
            host=args.host,
            imap_port=args.imap_port,
            smtp_port=args.smtp_port,
        )
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_serve(server))
    except OSError as exc:  # e.g. a port already in use
        _log.error("localmail failed to start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
