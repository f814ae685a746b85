"""A Temporal server behind a TLS-terminating gRPC proxy (nginx from Debian), as production
clusters and Temporal Cloud stand before their clients, for the tests of `[temporal.tls]` and
API keys. Certificates are made here, by a private CA of their own:

- the mutual-TLS port asks every client for a certificate signed by the client CA
  (`ssl_verify_client on`); a missing or untrusted one is refused with gRPC status
  UNAUTHENTICATED and words that say which;
- the API-key port (TLS, server certificate only) refuses a request without
  `Authorization: Bearer <key>` with UNAUTHENTICATED.

    python3 -m devtools.grpc_proxy install     nginx, with apt-get (as root; idempotent)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

from devtools.debian import InstallError, apt_install, installed

if TYPE_CHECKING:  # the certificates need `cryptography`, which `install` runs without
    from devtools.certificates import Certificates

PACKAGES: Final = ("nginx",)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def unavailable_reason() -> str | None:
    """Why the proxy cannot run here, or None when it can."""
    if nginx_binary() is not None:
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "nginx is not installed (and installing it needs root and apt-get)"
    return "nginx is not installed (run: python3 -m devtools.grpc_proxy install)"


def install() -> None:
    """nginx, its system service neither started nor enabled."""
    if installed(PACKAGES):
        return
    apt_install(PACKAGES)
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(
            ["systemctl", "disable", "--now", "nginx.service"], capture_output=True, check=False
        )


# -- the proxy -------------------------------------------------------------------------------

_REFUSE = """
        location @{name} {{
            default_type application/grpc;
            add_header grpc-status 16 always;
            add_header grpc-message "{words}" always;
            return 204;
        }}"""


def nginx_conf(
    directory: Path,
    certificates: Certificates,
    upstream: str,
    mtls_port: int,
    api_key_port: int,
    api_key: str,
) -> str:
    """Two TLS ports before `upstream` (host:port of Temporal's gRPC): mutual TLS, API key.
    Long timeouts: workers' long polls wait up to 70 s for a task."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = directory / "tmp"
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    ssl_certificate {certificates.server.cert};
    ssl_certificate_key {certificates.server.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    grpc_read_timeout 300s;
    grpc_send_timeout 300s;
    client_body_timeout 300s;
    client_max_body_size 0;
    http2_max_concurrent_streams 1000;

    server {{
        listen 127.0.0.1:{mtls_port} ssl http2;
        ssl_client_certificate {certificates.client_ca};
        ssl_verify_client on;
        error_page 495 = @rejected;
        error_page 496 = @required;
        location / {{ grpc_pass grpc://{upstream}; }}{
        _REFUSE.format(name="required", words="client certificate required")
    }{_REFUSE.format(name="rejected", words="client certificate rejected")}
    }}

    server {{
        listen 127.0.0.1:{api_key_port} ssl http2;
        error_page 401 = @unauthenticated;
        location / {{
            if ($http_authorization != "Bearer {api_key}") {{ return 401; }}
            grpc_pass grpc://{upstream};
        }}{_REFUSE.format(name="unauthenticated", words="invalid or missing API key")}
    }}
}}
"""


class GrpcTlsProxy:
    """nginx before Temporal, in the foreground under this process; stopped on exit."""

    def __init__(
        self,
        directory: Path,
        upstream: str,
        mtls_port: int,
        api_key_port: int,
        api_key: str,
    ) -> None:
        self.directory = directory
        self.upstream = upstream
        self.mtls_port = mtls_port
        self.api_key_port = api_key_port
        self.api_key = api_key
        from devtools.certificates import Certificates

        self.certificates = Certificates.make(directory / "certs")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        binary = nginx_binary()
        if binary is None:
            raise InstallError("nginx is not installed")
        (self.directory / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.directory / "nginx.conf"
        conf.write_text(
            nginx_conf(
                self.directory,
                self.certificates,
                self.upstream,
                self.mtls_port,
                self.api_key_port,
                self.api_key,
            )
        )
        self._process = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(self.directory), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "nginx.out").open("ab"),
        )
        deadline = time.monotonic() + timeout
        for port in (self.mtls_port, self.api_key_port):
            while not _listening(port):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    out = (self.directory / "nginx.out").read_text(errors="replace")
                    self.stop()
                    raise InstallError(f"nginx did not start: {out[-2000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # nginx: fast shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        install()
    except (InstallError, subprocess.CalledProcessError, OSError) as exc:
        print(f"devtools.grpc_proxy install: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
