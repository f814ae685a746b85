"""The HTTP intake endpoint: a web form or a social-media connector creates a work item or a
social contact, and gets its contact id back.

    python -m ace_email.intake_server --config ace-email.toml [--host H] [--port P]

    POST /workitems   Authorization: Bearer TOKEN   Content-Type: application/json
        {"queue": "support", "subject": "...", "body": "...", "priority": 0,
         "reply_to": "customer@example.org", "channel": "workitem" | "social",
         "external_id": "form-4711", "skills": [], "sender_name": ""}
    201 {"contact_id": "...", "created": true, "reference": "...", "queue": "...", "channel": "..."}
    200 the same with "created": false: that external id has its contact already
    400 {"error": "...", "problems": [{"field": "subject", "message": "..."}]}
    401 no or wrong token · 404 other paths · 413 over intake.max_body_kb
    415 not JSON · 503 Temporal or the mail server cannot be reached (try again)
    GET /health  200 {"status": "ok"}

The token comes from `intake.token_env` or `intake.token_file`; the endpoint does not start
without one. Only paths, statuses and contact ids are logged, never a body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections import defaultdict
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus

from temporalio.client import Client
from temporalio.service import RPCError

from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings, load_settings
from ace_email.exiting import interrupt_on_stop_signals
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations.common import Refused
from ace_email.operations.workitems import (
    WorkItemCreated,
    WorkItemInvalid,
    WorkItemRequest,
    create_work_item,
    parse_request,
)
from ace_email.services.http import JsonHandler, JsonService, service_arguments
from ace_email.telemetry.logs import configure_logging
from ace_email.temporal.client import TemporalUnavailable, connect

log = logging.getLogger("ace_email.intake_server")

ANSWER_WITHIN_SECONDS = 60.0


class IntakeServer(JsonService):
    """Requests are read on threads; the work runs on the event loop of the Temporal client."""

    thread_name = "intake-server"

    def __init__(
        self,
        address: tuple[str, int],
        settings: Settings,
        client: Client,
        token: str,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.settings = settings
        self.client = client
        self.token = token
        self.pool = ImapPool(settings)
        self.loop = loop
        self._turns: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        super().__init__(address, IntakeRequestHandler)

    def stop(self) -> None:
        """Stop listening; call it off the loop (it waits for the serving thread)."""
        self.shutdown()
        self.server_close()
        self.pool.close_all()

    def create(self, request: WorkItemRequest) -> WorkItemCreated:
        """One submission, on the loop; submissions of one external id take turns, so two
        sent at once store one document."""

        async def create() -> WorkItemCreated:
            async with self._turns[f"{request.channel}\0{request.external_id}"]:
                return await create_work_item(self.client, self.settings, self.pool, request)

        future = asyncio.run_coroutine_threadsafe(create(), self.loop)
        return future.result(timeout=ANSWER_WITHIN_SECONDS)


class IntakeRequestHandler(JsonHandler):
    server: IntakeServer

    def do_GET(self) -> None:
        if self.path_only() == "/health":
            self.send_json(HTTPStatus.OK, {"status": "ok"})
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": "GET /health or POST /workitems"})

    def do_POST(self) -> None:
        if self.path_only() != "/workitems":
            self.discard_body()
            self.send_json(HTTPStatus.NOT_FOUND, {"error": "POST /workitems"})
            return
        if not self.bearer_ok(self.server.token):
            self.discard_body()
            self.send_json(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token"})
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self.discard_body()
            self.send_json(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send Content-Type: application/json"}
            )
            return
        limit = self.server.settings.intake.max_body_kb * 1024 + 4096
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            self.close_connection = True
            self.send_json(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"{length} bytes; at most {limit} (intake.max_body_kb and the fields)"},
            )
            return
        try:
            data = json.loads(self.rfile.read(length) or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": f"not JSON: {exc}", "problems": []})
            return
        if not isinstance(data, dict):
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": "send a JSON object", "problems": []})
            return
        self._create(data)

    def _create(self, data: dict[str, object]) -> None:
        try:
            created = self.server.create(parse_request(data, self.server.settings))
        except WorkItemInvalid as exc:
            problems = [{"field": f, "message": m} for f, m in exc.problems]
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc), "problems": problems})
            return
        except (Refused, TemporalUnavailable, RPCError, FutureTimeout, OSError) as exc:
            log.warning("work item not created: %s", type(exc).__name__)
            message = str(exc) or "no answer in time"
            self.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"try again: {message}"})
            return
        log.info("%s %s", "created" if created.created else "already there", created.contact_id)
        status = HTTPStatus.CREATED if created.created else HTTPStatus.OK
        self.send_json(status, created.model_dump(mode="json"))


def intake_server(
    settings: Settings, client: Client, host: str | None = None, port: int | None = None
) -> IntakeServer:
    """An intake endpoint for these settings, working on the running event loop (the
    client's); ConfigError without a token."""
    options = settings.intake
    address = (host or options.host, options.port if port is None else port)
    return IntakeServer(address, settings, client, options.token(), asyncio.get_running_loop())


async def _serve(settings: Settings, host: str | None, port: int | None) -> None:
    client = await connect(settings.temporal)
    server = intake_server(settings, client, host, port)
    server.start_in_thread()
    log.info("intake endpoint on %s/workitems", server.url)
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.to_thread(server.stop)


def main(argv: list[str] | None = None) -> int:
    args = service_arguments(__doc__.splitlines()[0], "intake").parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    interrupt_on_stop_signals()
    try:
        settings = load_settings(args.config)
        settings.intake.token()
        asyncio.run(_serve(settings, args.host, args.port))
    except ConfigError as exc:
        print(f"intake server: {exc}", file=sys.stderr)
        return 2
    except TemporalUnavailable as exc:
        print(f"intake server: {exc}", file=sys.stderr)
        return exc.exit_status
    except OSError as exc:
        print(f"intake server: cannot listen: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
