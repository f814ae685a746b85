"""TLS towards IMAP and SMTP: certificates verified against a private CA, STARTTLS required,
no credentials in plaintext to a host that is not loopback. Real TLS servers on loopback."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from ace_email.config.accounts import AccountSettings
from ace_email.mail.errors import ImapError, ImapTlsError, MailError
from ace_email.mail.imap import connect
from ace_email.mail.smtp import smtp_connection
from devtools.localmail import LocalMailServer, MailServerThread, MailUser
from tests.support import CUSTOMER, PASSWORD, MailStack, free_port, make_message

SUPPORT = "support@example.com"


@dataclass
class Pki:
    ca_file: Path
    other_ca_file: Path
    server_context: ssl.SSLContext


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, dns_name: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA and a certificate it signed for "localhost" (and nothing else)."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("ace-email test CA")
    _, other_ca = _ca("some other CA")
    key, cert = _server_cert(ca_key, ca_cert, "localhost")
    (directory / "ca.pem").write_bytes(_pem(ca_cert))
    (directory / "other-ca.pem").write_bytes(_pem(other_ca))
    (directory / "server.pem").write_bytes(_pem(cert))
    (directory / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    return Pki(directory / "ca.pem", directory / "other-ca.pem", context)


async def _serve(tmp_path: Path, pki: Pki, *, implicit: bool) -> AsyncIterator[MailStack]:
    imap_port, smtp_port = free_port(), free_port()
    users = [MailUser(SUPPORT, PASSWORD), MailUser(CUSTOMER, PASSWORD)]
    server = LocalMailServer(
        tmp_path / "mail",
        users,
        imap_port=imap_port,
        smtp_port=smtp_port,
        tls=pki.server_context,
        implicit_tls=implicit,
    )
    async with MailServerThread(server):
        yield MailStack(server=server, imap_port=imap_port, smtp_port=smtp_port, support=SUPPORT)


@pytest.fixture
async def implicit_tls(tmp_path: Path, pki: Pki) -> AsyncIterator[MailStack]:
    async for stack in _serve(tmp_path, pki, implicit=True):
        yield stack


@pytest.fixture
async def starttls(tmp_path: Path, pki: Pki) -> AsyncIterator[MailStack]:
    async for stack in _serve(tmp_path, pki, implicit=False):
        yield stack


@pytest.fixture(params=["ssl", "starttls"])
async def secure(
    request: pytest.FixtureRequest, tmp_path: Path, pki: Pki
) -> AsyncIterator[tuple[MailStack, str]]:
    """Each kind of TLS in turn: implicit (security = ssl) and STARTTLS."""
    security: str = request.param
    async for stack in _serve(tmp_path, pki, implicit=security == "ssl"):
        yield stack, security


def account(
    stack: MailStack,
    *,
    security: str,
    host: str = "localhost",
    imap: dict[str, object] | None = None,
    smtp: dict[str, object] | None = None,
) -> AccountSettings:
    return AccountSettings.model_validate(
        {
            "name": "secure",
            "address": SUPPORT,
            "imap": {
                "host": host,
                "port": stack.imap_port,
                "security": security,
                "username": SUPPORT,
                "password": PASSWORD,
                "timeout_seconds": 5,
            }
            | (imap or {}),
            "smtp": {
                "host": host,
                "port": stack.smtp_port,
                "security": security,
                "username": SUPPORT,
                "password": PASSWORD,
                "timeout_seconds": 5,
            }
            | (smtp or {}),
        }
    )


def imap_works(settings: AccountSettings) -> int:
    session = connect(settings)
    try:
        return session.select("INBOX")
    finally:
        session.client.shutdown()


async def smtp_sends(settings: AccountSettings, stack: MailStack) -> None:
    async with smtp_connection(settings) as client:
        await client.sendmail(SUPPORT, [CUSTOMER], make_message(subject="over TLS"))
    messages = await asyncio.to_thread(_customer_subjects, stack)
    assert messages == ["over TLS"]


def _customer_subjects(stack: MailStack) -> list[str]:
    import imaplib

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if stack.server.implicit_tls:
        client: imaplib.IMAP4 = imaplib.IMAP4_SSL("127.0.0.1", stack.imap_port, ssl_context=context)
    else:
        client = imaplib.IMAP4("127.0.0.1", stack.imap_port)
        client.starttls(context)
    try:
        client.login(CUSTOMER, PASSWORD)
        client.select("INBOX")
        _, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [
            item[1].decode().split(":", 1)[1].strip() for item in data if isinstance(item, tuple)
        ]
    finally:
        client.logout()


async def test_imap_and_smtp_verify_the_server_against_ca_file(
    secure: tuple[MailStack, str], pki: Pki
) -> None:
    stack, security = secure
    settings = account(
        stack, security=security, imap={"ca_file": pki.ca_file}, smtp={"ca_file": pki.ca_file}
    )
    assert await asyncio.to_thread(imap_works, settings) > 0
    await smtp_sends(settings, stack)


async def test_an_unknown_ca_fails_with_account_host_port_and_reason(
    secure: tuple[MailStack, str], pki: Pki
) -> None:
    stack, security = secure
    settings = account(
        stack,
        security=security,
        imap={"ca_file": pki.other_ca_file},
        smtp={"ca_file": pki.other_ca_file},
    )
    with pytest.raises(ImapTlsError) as imap_error:
        await asyncio.to_thread(connect, settings)
    message = str(imap_error.value)
    assert message.startswith(f"secure: IMAP localhost:{stack.imap_port}: ")
    assert "certificate verification failed: unable to get local issuer certificate" in message
    assert "ca_file" in message
    assert imap_error.value.transient

    with pytest.raises(MailError) as smtp_error:
        async with smtp_connection(settings):
            pass
    assert smtp_error.value.kind == "SmtpTlsError"
    assert not smtp_error.value.permanent
    assert str(smtp_error.value).startswith(f"secure: SMTP localhost:{stack.smtp_port}: ")
    assert "unable to get local issuer certificate" in str(smtp_error.value)


async def test_without_ca_file_the_system_trust_store_refuses_a_private_ca(
    implicit_tls: MailStack,
) -> None:
    settings = account(implicit_tls, security="ssl")
    with pytest.raises(ImapTlsError, match="unable to get local issuer certificate"):
        await asyncio.to_thread(connect, settings)
    with pytest.raises(MailError, match="unable to get local issuer certificate"):
        async with smtp_connection(settings):
            pass


async def test_a_certificate_for_another_host_name_is_refused(
    starttls: MailStack, pki: Pki
) -> None:
    settings = account(
        starttls,
        security="starttls",
        host="127.0.0.1",
        imap={"ca_file": pki.ca_file},
        smtp={"ca_file": pki.ca_file},
    )
    with pytest.raises(ImapTlsError) as imap_error:
        await asyncio.to_thread(connect, settings)
    assert "IP address mismatch, certificate is not valid for '127.0.0.1'" in str(imap_error.value)
    with pytest.raises(MailError) as smtp_error:
        async with smtp_connection(settings):
            pass
    assert "IP address mismatch" in str(smtp_error.value)


async def test_tls_verify_false_is_allowed_towards_loopback(implicit_tls: MailStack) -> None:
    settings = account(
        implicit_tls, security="ssl", imap={"tls_verify": False}, smtp={"tls_verify": False}
    )
    assert await asyncio.to_thread(imap_works, settings) > 0
    await smtp_sends(settings, implicit_tls)


class Recorder:
    """A TCP relay to a real server that records what the client sent."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Recorder:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bool
        ) -> None:
            try:
                while data := await source.read(65536):
                    if record:
                        self.sent += data
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


async def test_a_server_without_starttls_gets_no_credentials(mail: MailStack) -> None:
    """The plain local server offers no STARTTLS: nothing but the greeting's answer is sent."""
    async with Recorder(mail.imap_port) as imap, Recorder(mail.smtp_port) as smtp:
        settings = account(mail, security="starttls", host="127.0.0.1")
        settings.imap.port, settings.smtp.port = imap.port, smtp.port

        with pytest.raises(ImapTlsError) as imap_error:
            await asyncio.to_thread(connect, settings)
        assert str(imap_error.value) == (
            f"secure: IMAP 127.0.0.1:{imap.port} does not offer STARTTLS, which "
            "imap.security = 'starttls' requires; nothing was sent (no fallback to plaintext). "
            "If the port speaks TLS from the start, set imap.security = 'ssl'"
        )

        with pytest.raises(MailError) as smtp_error:
            async with smtp_connection(settings):
                pass
        assert smtp_error.value.kind == "SmtpTlsError"
        assert f"SMTP 127.0.0.1:{smtp.port} does not offer STARTTLS" in str(smtp_error.value)

    assert PASSWORD.encode() not in imap.sent and b"LOGIN" not in imap.sent.upper()
    assert PASSWORD.encode() not in smtp.sent and b"AUTH" not in smtp.sent.upper()
    assert b"MAIL FROM" not in smtp.sent.upper()


def _raw_account(
    imap: dict[str, object] | None = None, smtp: dict[str, object] | None = None
) -> dict[str, object]:
    return {
        "name": "remote",
        "address": "support@example.net",
        "imap": {"host": "imap.example.net", "username": "u", "password": "p"} | (imap or {}),
        "smtp": {"host": "smtp.example.net", "username": "u", "password": "p"} | (smtp or {}),
    }


def _with(section: str, values: dict[str, object]) -> dict[str, object]:
    return _raw_account(imap=values) if section == "imap" else _raw_account(smtp=values)


@pytest.mark.parametrize("section", ["imap", "smtp"])
def test_plaintext_to_a_remote_host_is_refused_at_start(section: str) -> None:
    with pytest.raises(ValidationError) as error:
        AccountSettings.model_validate(_with(section, {"security": "none"}))
    assert f"security = 'none' towards {section}.example.net would send the credentials " in str(
        error.value
    )
    allowed = AccountSettings.model_validate(
        _with(section, {"security": "none", "allow_plaintext": True})
    )
    assert getattr(allowed, section).allow_plaintext


@pytest.mark.parametrize("section", ["imap", "smtp"])
def test_unverified_tls_to_a_remote_host_is_refused_at_start(section: str) -> None:
    with pytest.raises(ValidationError, match="tls_verify = false towards"):
        AccountSettings.model_validate(_with(section, {"tls_verify": False}))


def test_smtp_without_login_may_be_plaintext() -> None:
    settings = AccountSettings.model_validate(
        _raw_account(smtp={"security": "none", "username": None, "password": None})
    )
    assert not settings.smtp.logs_in


def test_an_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValidationError, match=r"ca_file: cannot load .*ca\.pem"):
        AccountSettings.model_validate(_raw_account(imap={"ca_file": str(junk)}))
    with pytest.raises(ValidationError, match=r"ca_file: cannot load .*: No such file"):
        AccountSettings.model_validate(_raw_account(smtp={"ca_file": str(tmp_path / "none")}))


async def test_the_workers_refuse_plaintext_even_if_validation_was_bypassed() -> None:
    """Settings built without validation still never send a password in plaintext."""
    settings = AccountSettings.model_validate(_raw_account())
    settings.imap.security = settings.smtp.security = settings.imap.security.NONE
    with pytest.raises(ImapError) as imap_error:
        await asyncio.to_thread(connect, settings)
    assert not imap_error.value.transient
    assert "imap.allow_plaintext" in str(imap_error.value)
    with pytest.raises(MailError) as smtp_error:
        async with smtp_connection(settings):
            pass
    assert smtp_error.value.kind == "ConfigError" and smtp_error.value.permanent
