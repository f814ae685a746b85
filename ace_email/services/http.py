"""What ace-email's small HTTP services share (the codec server, the work-item intake, beside
the desk on the same stack): a Starlette application under uvicorn on a thread of its own, its
socket bound at construction (so a port in use is an OSError there); JSON answers; bearer tokens
checked in constant time; bodies read up to a limit; logs that name paths and statuses, never
bodies."""

from __future__ import annotations

import argparse
import hmac
import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from ace_email.telemetry.logs import add_logging_arguments


class BodyTooLarge(Exception):
    pass


class AsgiService:
    """An application served on `address` from its own thread and event loop."""

    thread_name = "http-service"

    def __init__(self, app: Starlette, address: tuple[str, int]) -> None:
        self.app = app
        self._socket = socket.create_server(address, reuse_port=False)
        self.server_address = self._socket.getsockname()[:2]
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{host!s}:{port}"

    def start_in_thread(self) -> threading.Thread:
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        return self._thread

    def serve_forever(self) -> None:
        """Serve until interrupted (KeyboardInterrupt, as SIGTERM and SIGINT raise it)."""
        thread = self.start_in_thread()
        try:
            while thread.is_alive():
                thread.join(0.5)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def server_close(self) -> None:
        self._socket.close()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> Self:
        self.start_in_thread()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def bearer_ok(request: Request, token: str | None) -> bool:
    """No token configured lets everyone in; otherwise `Authorization: Bearer TOKEN`."""
    if token is None:
        return True
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


async def read_body(request: Request, limit: int) -> bytes:
    """The body, up to `limit` bytes (by its Content-Length and as it arrives)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"{declared} bytes; at most {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"more than {limit} bytes")
    return bytes(body)


def json_answer(
    status: int, document: object, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(document, status_code=status, headers=headers)


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
