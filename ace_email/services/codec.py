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
from http import HTTPStatus

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings, load_settings
from ace_email.exiting import interrupt_on_stop_signals
from ace_email.services.http import JsonHandler, JsonService, service_arguments
from ace_email.telemetry.logs import configure_logging
from ace_email.temporal.client import encryption_codec
from ace_email.temporal.codec import EncryptionCodec, PayloadDecryptionError

log = logging.getLogger("ace_email.codec_server")

MAX_BODY_BYTES = 64 * 1024 * 1024
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"


class CodecServer(JsonService):
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
        super().__init__(address, CodecRequestHandler)


class CodecRequestHandler(JsonHandler):
    server: CodecServer

    def do_OPTIONS(self) -> None:
        self._answer(HTTPStatus.NO_CONTENT)

    def do_POST(self) -> None:
        operation = self.path_only().rsplit("/", 1)[-1]
        if operation not in ("encode", "decode"):
            self.discard_body()
            self._answer(HTTPStatus.NOT_FOUND, {"error": "POST /encode or /decode"})
            return
        if not self.bearer_ok(self.server.token):
            self.discard_body()
            self._answer(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
            return
        body = self.rfile.read(length)
        try:
            payloads = json_format.Parse(body, Payloads())
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": f"not a payloads JSON object: {exc}"})
            return
        codec = self.server.codec
        try:
            if operation == "encode":
                result = codec.encrypt_all(payloads.payloads)
            else:
                result = codec.decrypt_all(payloads.payloads)
        except PayloadDecryptionError as exc:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self._answer(HTTPStatus.OK, json_format.MessageToDict(Payloads(payloads=result)))

    def _answer(self, status: HTTPStatus, document: object | None = None) -> None:
        """A JSON answer, with CORS headers for the Web UI's origins."""
        origin = (self.headers.get("Origin") or "").rstrip("/")
        headers: list[tuple[str, str]] = []
        if origin and origin in self.server.cors_origins:
            headers = [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"),
                ("Access-Control-Allow-Methods", "POST, OPTIONS"),
                ("Access-Control-Allow-Headers", ALLOWED_HEADERS),
                ("Access-Control-Max-Age", "600"),
                ("Vary", "Origin"),
            ]
        self.send_json(status, document, headers)


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
