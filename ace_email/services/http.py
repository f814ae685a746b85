"""What ace-email's small HTTP services share (the codec server, the work-item intake): JSON
answers, bearer tokens checked in constant time, bodies read or discarded, and logs that name
paths and statuses, never bodies."""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import threading
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ace_email.telemetry.logs import add_logging_arguments

DISCARD_AT_MOST = 64 * 1024 * 1024


class JsonService(ThreadingHTTPServer):
    daemon_threads = True
    thread_name = "http-service"

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name=self.thread_name, daemon=True)
        thread.start()
        return thread


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def log(self) -> logging.Logger:
        """The logger of the service's own module."""
        return logging.getLogger(type(self).__module__)

    def path_only(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def bearer_ok(self, token: str | None) -> bool:
        """No token configured lets everyone in; otherwise `Authorization: Bearer TOKEN`."""
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def discard_body(self) -> None:
        """Read and drop a body that will not be used, so the connection can go on."""
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= DISCARD_AT_MOST:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def send_json(
        self,
        status: HTTPStatus,
        document: object | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        body = json.dumps(document, ensure_ascii=False).encode() if document is not None else b""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        self.log.debug("%s %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.log.info("%s %s -> %s", self.command, self.path_only(), code)


def service_arguments(description: str, section: str) -> argparse.ArgumentParser:
    """--config, --host, --port, --log-level, --log-format, as both services take them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config", help="TOML configuration (default: $ACE_EMAIL_CONFIG or ./ace-email.toml)"
    )
    parser.add_argument("--host", help=f"address to listen on (default: {section}.host)")
    parser.add_argument("--port", type=int, help=f"port (default: {section}.port)")
    add_logging_arguments(parser)
    return parser
