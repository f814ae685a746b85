"""The agents' desk and the supervisors' board, in the browser.

    python3 desk.py --config ace-email.toml [--listen HOST:PORT]

Agents sign in with their `[[agents]]` password (an argon2 `password_hash` or `password_file`),
supervisors with theirs from `[[supervisors]]`. Exit status 0 after SIGTERM or SIGINT; 2 for a
bad configuration or an unreachable Temporal; 1 when Temporal refuses the connection.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import uvicorn

from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings, load_settings
from ace_email.desk.app import Desk, build_app
from ace_email.exiting import interrupt_on_stop_signals, run_then_exit
from ace_email.telemetry.logs import add_logging_arguments, configure_logging
from ace_email.temporal.client import TemporalUnavailable, connect

log = logging.getLogger("ace_email.desk")


async def serve(settings: Settings, listen: str | None = None) -> None:
    client = await connect(settings.temporal)
    app = build_app(Desk(settings, client))
    host, port = settings.desk.host_port
    if listen:
        host, _, chosen = listen.rpartition(":")
        host, port = host.strip("[]"), int(chosen)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    )
    log.info("desk on http://%s:%d/", host, port)
    await server.serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", help="TOML configuration (default: $ACE_EMAIL_CONFIG or ./ace-email.toml)"
    )
    parser.add_argument("--listen", help="HOST:PORT (default: desk.listen, 127.0.0.1:8080)")
    add_logging_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    # uvicorn stops on SIGTERM, then raises the signal again with the handler it found: this one
    # makes that a KeyboardInterrupt, so the desk exits 0 and is not killed by the signal.
    interrupt_on_stop_signals()
    try:
        settings = load_settings(args.config)
        asyncio.run(serve(settings, args.listen))
    except ConfigError as exc:
        print(f"desk: {exc}", file=sys.stderr)
        return 2
    except TemporalUnavailable as exc:
        print(f"desk: {exc}", file=sys.stderr)
        return exc.exit_status
    except OSError as exc:
        print(f"desk: cannot listen: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    run_then_exit(main)
