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
    GET /openapi.json  this endpoint described in OpenAPI 3.1

The token comes from `intake.token_env` or `intake.token_file`; the endpoint does not start
without one. Only paths, statuses and contact ids are logged, never a body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections import defaultdict
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
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
from ace_email.services.http import (
    AsgiService,
    BodyTooLarge,
    bearer_ok,
    json_answer,
    read_body,
    service_arguments,
)
from ace_email.telemetry.logs import configure_logging
from ace_email.temporal.client import TemporalUnavailable, connect

log = logging.getLogger("ace_email.intake_server")

ANSWER_WITHIN_SECONDS = 60.0


class IntakeServer(AsgiService):
    """Requests are served on the service's own thread; the work runs on the event loop of
    the Temporal client."""

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
        super().__init__(self._app(), address)

    def stop(self) -> None:
        """Stop listening; call it off the loop (it waits for the serving thread)."""
        super().stop()
        self.pool.close_all()

    async def create(self, request: WorkItemRequest) -> WorkItemCreated:
        """One submission, run on the client's loop; submissions of one external id take
        turns, so two sent at once store one document."""

        async def create() -> WorkItemCreated:
            async with self._turns[f"{request.channel}\0{request.external_id}"]:
                return await create_work_item(self.client, self.settings, self.pool, request)

        future = asyncio.run_coroutine_threadsafe(create(), self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), ANSWER_WITHIN_SECONDS)

    def _app(self) -> Starlette:
        async def health(request: Request) -> Response:
            return json_answer(200, {"status": "ok"})

        async def openapi(request: Request) -> Response:
            return JSONResponse(openapi_document(self.settings))

        async def workitems(request: Request) -> Response:
            if not bearer_ok(request, self.token):
                return json_answer(401, {"error": "missing or wrong bearer token"})
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                return json_answer(415, {"error": "send Content-Type: application/json"})
            limit = self.settings.intake.max_body_kb * 1024 + 4096
            try:
                raw = await read_body(request, limit)
            except BodyTooLarge as exc:
                return json_answer(413, {"error": f"{exc} (intake.max_body_kb and the fields)"})
            try:
                data = json.loads(raw or b"null")
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                return json_answer(400, {"error": f"not JSON: {exc}", "problems": []})
            if not isinstance(data, dict):
                return json_answer(400, {"error": "send a JSON object", "problems": []})
            return await self._created(data)

        async def not_found(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 404
            return json_answer(status, {"error": "GET /health or POST /workitems"})

        return Starlette(
            routes=[
                Route("/health", health),
                Route("/openapi.json", openapi),
                Route("/workitems", workitems, methods=["POST"]),
            ],
            exception_handlers={404: not_found, 405: not_found},
        )

    async def _created(self, data: dict[str, Any]) -> Response:
        try:
            created = await self.create(parse_request(data, self.settings))
        except WorkItemInvalid as exc:
            problems = [{"field": f, "message": m} for f, m in exc.problems]
            return json_answer(400, {"error": str(exc), "problems": problems})
        except (Refused, TemporalUnavailable, RPCError, TimeoutError, OSError) as exc:
            log.warning("work item not created: %s", type(exc).__name__)
            message = str(exc) or "no answer in time"
            return json_answer(503, {"error": f"try again: {message}"})
        log.info("%s %s", "created" if created.created else "already there", created.contact_id)
        return json_answer(201 if created.created else 200, created.model_dump(mode="json"))


def openapi_document(settings: Settings) -> dict[str, Any]:
    """This endpoint in OpenAPI 3.1: the request and answer schemas from the models."""
    request_schema = WorkItemRequest.model_json_schema()
    request_schema["properties"]["queue"]["enum"] = settings.queue_names()
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    }

    def answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    created = WorkItemCreated.model_json_schema()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ace-email work-item intake",
            "version": "1",
            "description": "Creates a work item or a social contact; the same external_id "
            "twice is one contact.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/workitems": {
                "post": {
                    "operationId": "createWorkItem",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": request_schema}},
                    },
                    "responses": {
                        "201": answer("created", created),
                        "200": answer("that external id has its contact already", created),
                        "400": answer("a field at fault, each named", error),
                        "401": answer("no or wrong bearer token", error),
                        "413": answer("over intake.max_body_kb", error),
                        "415": answer("not JSON", error),
                        "503": answer("Temporal or the mail server cannot be reached", error),
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "responses": {
                        "200": answer(
                            "serving",
                            {"type": "object", "properties": {"status": {"type": "string"}}},
                        )
                    },
                }
            },
        },
    }


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
