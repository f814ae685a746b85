"""A codec server: lets the Temporal Web UI (and `temporal` CLI) show decrypted payloads.

    python -m ace_email.codec_server --config ace-email.toml [--host 127.0.0.1] [--port 8081]

It speaks Temporal's remote codec protocol: `POST /decode` and `POST /encode` (under any path
prefix) with a JSON body `{"payloads": [{"metadata": {...}, "data": "..."}]}` (bytes in base64)
and answers in kind. Browsers at the configured Web UI origins may call it (CORS); with a token
configured, every call must carry `Authorization: Bearer TOKEN`. Only paths and statuses are
logged, never payloads.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings, load_settings
from ace_email.exiting import interrupt_on_stop_signals
from ace_email.services.http import (
    AsgiService,
    BodyTooLarge,
    bearer_ok,
    json_answer,
    read_body,
    service_arguments,
)
from ace_email.telemetry.logs import configure_logging
from ace_email.temporal.client import encryption_codec
from ace_email.temporal.codec import EncryptionCodec, PayloadDecryptionError

log = logging.getLogger("ace_email.codec_server")

MAX_BODY_BYTES = 64 * 1024 * 1024
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"


class CodecServer(AsgiService):
    thread_name = "codec-server"

    def __init__(
        self,
        address: tuple[str, int],
        codec: EncryptionCodec,
        cors_origins: Sequence[str],
        token: str | None,
    ) -> None:
        self.codec = codec
        self.cors_origins = frozenset(o.rstrip("/") for o in cors_origins)
        self.token = token
        app = Starlette(
            routes=[Route("/{path:path}", self._serve, methods=["POST", "OPTIONS"])],
            exception_handlers={404: self._not_found, 405: self._not_found},
        )
        super().__init__(app, address)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return self._answer(request, 404, {"error": "POST /encode or /decode"})

    async def _serve(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._answer(request, 204)
        operation = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if operation not in ("encode", "decode"):
            return self._answer(request, 404, {"error": "POST /encode or /decode"})
        if not bearer_ok(request, self.token):
            return self._answer(request, 401, {"error": "missing or wrong bearer token"})
        try:
            body = await read_body(request, MAX_BODY_BYTES)
            payloads = json_format.Parse(body, Payloads())
        except BodyTooLarge:
            return self._answer(request, 413, {"error": "body too large"})
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            return self._answer(request, 400, {"error": f"not a payloads JSON object: {exc}"})
        try:
            if operation == "encode":
                result = self.codec.encrypt_all(payloads.payloads)
            else:
                result = self.codec.decrypt_all(payloads.payloads)
        except PayloadDecryptionError as exc:
            return self._answer(request, 400, {"error": str(exc)})
        return self._answer(request, 200, json_format.MessageToDict(Payloads(payloads=result)))

    def _answer(self, request: Request, status: int, document: object | None = None) -> Response:
        """A JSON answer, with CORS headers for the Web UI's origins."""
        origin = request.headers.get("origin", "").rstrip("/")
        headers: dict[str, str] = {}
        if origin and origin in self.cors_origins:
            headers = {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            }
        if document is None:
            return Response(status_code=status, headers=headers)
        return json_answer(status, document, headers)


def codec_server(
    settings: Settings, host: str | None = None, port: int | None = None
) -> CodecServer:
    """A codec server for the configured keys; ConfigError if encryption is off or a key is bad."""
    temporal = settings.temporal
    if temporal.encryption is None:
        raise ConfigError(
            "temporal.encryption is not configured: payloads are not encrypted, "
            "so there is nothing for a codec server to do"
        )
    options = temporal.codec_server
    return CodecServer(
        (host or options.host, options.port if port is None else port),
        encryption_codec(temporal.encryption),
        options.cors_origins,
        options.token(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = service_arguments(__doc__.splitlines()[0], "temporal.codec_server")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    interrupt_on_stop_signals()
    try:
        server = codec_server(load_settings(args.config), args.host, args.port)
    except ConfigError as exc:
        print(f"codec server: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"codec server: cannot listen: {exc}", file=sys.stderr)
        return 2
    log.info(
        "codec server on %s for key ids %s (encoding with %s)",
        server.url,
        ", ".join(server.codec.key_ids),
        server.codec.current,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
