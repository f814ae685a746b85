"""`[temporal]` TLS, client certificate and API key: validated when the configuration loads,
with the place named; and what a refused connection says to fix, for the errors the SDK gives
behind a proxy and in front of Temporal's own mutual TLS."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ace_email.config.base import ConfigError
from ace_email.config.settings import load_settings
from ace_email.config.temporal import TemporalSettings
from ace_email.temporal.client import (
    TemporalRefused,
    TemporalUnavailable,
    connect,
    refusal,
    refusal_or_failure,
)

PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"


def _config(tmp_path: Path, temporal: str) -> Path:
    path = tmp_path / "ace-email.toml"
    path.write_text(temporal)
    return path


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    ca, cert, key = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    ca.write_text(PEM_CERT)
    cert.write_text(PEM_CERT)
    key.write_text(PEM_KEY)
    return ca, cert, key


def test_the_documented_keys_load(tmp_path: Path) -> None:
    ca, cert, key = _files(tmp_path)
    settings = load_settings(
        _config(
            tmp_path,
            f"""[temporal]
address = "my-ns.a1b2c.tmprl.cloud:7233"
namespace = "my-ns.a1b2c"
api_key_file = "{key}"
[temporal.tls]
server_ca_file = "{ca}"
server_name = "temporal.internal"
client_cert_file = "{cert}"
client_key_file = "{key}"
""",
        )
    )
    tls = settings.temporal.tls
    assert tls is not None and tls.server_name == "temporal.internal"
    assert settings.temporal.host == "my-ns.a1b2c.tmprl.cloud"


def test_an_empty_tls_table_turns_tls_on_with_the_systems_cas(tmp_path: Path) -> None:
    settings = load_settings(
        _config(tmp_path, '[temporal]\naddress = "t.example:7233"\n[temporal.tls]\n')
    )
    assert settings.temporal.tls is not None and settings.temporal.tls.server_ca_file is None


@pytest.mark.parametrize(
    ("temporal", "expected"),
    [
        (
            '[temporal.tls]\nclient_cert_file = "{cert}"\n',
            "temporal.tls: client_cert_file is given without client_key_file: mutual TLS",
        ),
        (
            '[temporal.tls]\nclient_key_file = "{key}"\n',
            "temporal.tls: client_key_file is given without client_cert_file",
        ),
        (
            '[temporal.tls]\nserver_ca_file = "{missing}"\n',
            "temporal.tls.server_ca_file: cannot read {missing}: No such file or directory",
        ),
        (
            '[temporal.tls]\nserver_ca_file = "{key}"\n',
            "temporal.tls: {key} holds no certificate",
        ),
        (
            '[temporal.tls]\nclient_cert_file = "{cert}"\nclient_key_file = "{cert}"\n',
            "temporal.tls: {cert} holds no private key",
        ),
        (
            '[temporal]\naddress = "temporal.example.com:7233"\napi_key_env = "K"\n',
            "temporal: an API key is never sent in clear: add a [temporal.tls] table",
        ),
        (
            '[temporal]\napi_key_env = "K"\napi_key_file = "{key}"\n',
            "give only one of api_key, api_key_env, api_key_file",
        ),
    ],
)
def test_a_bad_setting_is_named(tmp_path: Path, temporal: str, expected: str) -> None:
    ca, cert, key = _files(tmp_path)
    names = {"ca": ca, "cert": cert, "key": key, "missing": tmp_path / "missing.pem"}
    with pytest.raises(ConfigError) as raised:
        load_settings(_config(tmp_path, temporal.format(**names)))
    assert expected.format(**names) in str(raised.value)


def test_an_api_key_in_clear_on_loopback_is_allowed(tmp_path: Path) -> None:
    settings = load_settings(
        _config(tmp_path, '[temporal]\naddress = "127.0.0.1:7233"\napi_key_env = "K"\n')
    )
    assert settings.temporal.api_key_env == "K"


def test_a_missing_key_variable_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACE_NO_SUCH_KEY", raising=False)
    temporal = TemporalSettings(api_key_env="ACE_NO_SUCH_KEY")
    with pytest.raises(ConfigError, match=r"temporal\.api_key_env: environment variable"):
        temporal.api_key()


# What the SDK raises (temporalio 1.35), and what ace-email says to fix.
NGINX_400 = (
    "Failed client connect: `get_system_info` call error after connection: Status { code: "
    'Internal, message: "protocol error: received message with invalid compression flag: 60 '
    '(valid flags are 0 and 1) while receiving response with status: 400 Bad Request" }'
)
NGINX_401 = NGINX_400.replace("400 Bad Request", "401 Unauthorized")
UNKNOWN_ISSUER = (
    "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
    "ConnectError(Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }))"
)
CERT_REQUIRED_ALERT = (
    "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
    "ConnectError(Custom { kind: InvalidData, error: AlertReceived(CertificateRequired) }))"
)
BAD_CERT_ALERT = CERT_REQUIRED_ALERT.replace("CertificateRequired", "BadCertificate")
PLAIN_PORT = UNKNOWN_ISSUER.replace(
    "InvalidCertificate(UnknownIssuer)", "InvalidMessage(InvalidContentType)"
)


@pytest.mark.parametrize(
    ("settings", "error", "expected"),
    [
        ({"tls": {}}, NGINX_400, "wants a client certificate"),
        ({"tls": "cert"}, NGINX_400, "refused our client certificate"),
        ({"tls": {}}, CERT_REQUIRED_ALERT, "wants a client certificate"),
        ({"tls": "cert"}, BAD_CERT_ALERT, "refused our client certificate"),
        ({"tls": "ca"}, UNKNOWN_ISSUER, "not signed by the configured CA"),
        ({"tls": {}}, UNKNOWN_ISSUER, "not signed by a CA this system trusts"),
        ({"tls": {}, "api_key_env": "K"}, NGINX_401, "the API key was refused"),
        ({"tls": {}}, NGINX_401, "the server wants credentials"),
        ({"tls": {}}, PLAIN_PORT, "does not speak TLS on this port"),
    ],
)
def test_a_refusal_says_what_to_fix(
    tmp_path: Path, settings: dict[str, object], error: str, expected: str
) -> None:
    ca, cert, key = _files(tmp_path)
    if settings["tls"] == "cert":
        settings = {"tls": {"client_cert_file": cert, "client_key_file": key}}
    elif settings["tls"] == "ca":
        settings = {"tls": {"server_ca_file": ca}}
    temporal = TemporalSettings.model_validate({"address": "temporal.example.com:7233"} | settings)
    fix = refusal(temporal, error)
    assert fix is not None and expected in fix
    assert isinstance(refusal_or_failure(temporal, RuntimeError(error)), TemporalRefused)


def test_an_unreachable_server_is_no_refusal() -> None:
    error = (
        "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
        'ConnectError(ConnectError("tcp connect error", 127.0.0.1:17999, Os { code: 111, '
        'kind: ConnectionRefused, message: "Connection refused" })))'
    )
    failure = refusal_or_failure(TemporalSettings(), RuntimeError(error))
    assert not isinstance(failure, TemporalRefused) and failure.exit_status == 2
    assert "nothing listens there" in str(failure)


async def test_a_port_that_never_answers_times_out_with_one_line(tmp_path: Path) -> None:
    """A TLS handshake to a port that accepts and stays silent would wait forever."""
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        temporal = TemporalSettings.model_validate(
            {"address": f"127.0.0.1:{port}", "tls": {}, "connect_timeout_seconds": 1}
        )
        with pytest.raises(TemporalUnavailable) as raised:
            await connect(temporal)
    finally:
        silent.close()
    assert "no answer in time" in str(raised.value) and raised.value.exit_status == 2
