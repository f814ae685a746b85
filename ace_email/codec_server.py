"""A codec server: lets the Temporal Web UI (and `temporal` CLI) show decrypted payloads.

    python -m ace_email.codec_server --config ace-email.toml [--host 127.0.0.1] [--port 8081]

It speaks Temporal's remote codec protocol: `POST /decode` and `POST /encode` (under any path
prefix) with a JSON body `{"payloads": [{"metadata": {...}, "data": "..."}]}` (bytes in base64)
and answers in kind. Browsers at the configured Web UI origins may call it (CORS); with a token
configured, every call must carry `Authorization: Bearer TOKEN`. Only paths and statuses are
logged, never payloads.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import sys
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from ace_email.codec import EncryptionCodec, PayloadDecryptionError
from ace_email.settings import ConfigError, Settings, load_settings
from ace_email.temporal import encryption_codec

log = logging.getLogger("ace_email.codec_server")

MAX_BODY_BYTES = 64 * 1024 * 1024
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"


class CodecServer(ThreadingHTTPServer):
    daemon_threads = True

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

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="codec-server", daemon=True)
        thread.start()
        return thread


class CodecRequestHandler(BaseHTTPRequestHandler):
    server: CodecServer
    protocol_version = "HTTP/1.1"

    def do_OPTIONS(self) -> None:
        self._answer(HTTPStatus.NO_CONTENT)

    def do_POST(self) -> None:
        operation = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if operation not in ("encode", "decode"):
            self._discard_body()
            self._answer(HTTPStatus.NOT_FOUND, {"error": "POST /encode or /decode"})
            return
        if not self._authorized():
            self._discard_body()
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

    def _authorized(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def _discard_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= MAX_BODY_BYTES:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _answer(self, status: HTTPStatus, document: object | None = None) -> None:
        body = json.dumps(document).encode() if document is not None else b""
        self.send_response(status)
        origin = (self.headers.get("Origin") or "").rstrip("/")
        if origin and origin in self.server.cors_origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
            self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Vary", "Origin")
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info("%s %s -> %s", self.command, self.path.split("?", 1)[0], code)


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", help="TOML configuration (default: $ACE_EMAIL_CONFIG or ./ace-email.toml)"
    )
    parser.add_argument("--host", help="address to listen on (default: temporal.codec_server)")
    parser.add_argument("--port", type=int, help="port (default: temporal.codec_server.port)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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


if __name__ == "__main__":
    sys.exit(main())
