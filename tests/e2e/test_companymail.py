"""The company mail stack itself: Postfix takes mail on loopback and hands it to Dovecot by
LMTP, Dovecot serves it over IMAP; nothing is relayed elsewhere, and stop leaves nothing running."""

from __future__ import annotations

import email
import shutil
import smtplib
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path

import pytest
from imap_tools import MailBoxUnencrypted

from devtools.companymail import stack as companymail
from devtools.companymail.stack import CompanyMail
from tests.support import CUSTOMER, PASSWORD, free_port

SUPPORT = "support@example.com"


@pytest.fixture
def company(company_mail: CompanyMail) -> Iterator[CompanyMail]:
    company_mail.new_mailboxes(uuid.uuid4().hex)
    yield company_mail


def inbox(stack: CompanyMail, user: str) -> list[tuple[Message, bytes]]:
    """Each message in the user's INBOX, parsed and as the IMAP server serves it."""
    with MailBoxUnencrypted("127.0.0.1", stack.ports.imap).login(user, PASSWORD) as box:
        _, data = box.client.uid("FETCH", "1:*", "(BODY.PEEK[])")
        stored = [item[1] for item in data if isinstance(item, tuple)]
    return [(email.message_from_bytes(raw, policy=default_policy), raw) for raw in stored]


def wait_for_inbox(stack: CompanyMail, user: str, count: int) -> list[tuple[Message, bytes]]:
    deadline = time.monotonic() + 30
    while True:
        found = inbox(stack, user)
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, found
            return found
        time.sleep(0.1)


def smtp(stack: CompanyMail) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", stack.ports.smtp, timeout=30)
    client.ehlo("client.example.org")
    return client


def test_mail_sent_through_postfix_is_read_through_dovecot(company: CompanyMail) -> None:
    raw = (
        b"From: Carla <customer@example.org>\r\nTo: support@example.com\r\n"
        b"Subject: Kettle\r\n\r\nIt leaks.\r\n"
    )
    with smtp(company) as client:
        assert client.sendmail(CUSTOMER, [SUPPORT], raw) == {}
    [(message, stored)] = wait_for_inbox(company, SUPPORT, 1)
    assert message["Subject"] == "Kettle"
    assert message["Return-Path"] == f"<{CUSTOMER}>"
    assert "Postfix" in " ".join(message.get_all("Received") or [])
    # Mail from loopback is treated like mail from the internet: nothing is added to it.
    assert message["Message-ID"] is None and message["Date"] is None
    assert stored.endswith(raw)


def test_utf8_message_without_smtputf8_is_delivered_intact(company: CompanyMail) -> None:
    """Dovecot's LMTP lacks SMTPUTF8, so Postfix does not offer it: an 8-bit UTF-8 message with
    an ASCII envelope arrives; an international address is refused at once, never bounced."""
    raw = (
        "From: Jörg Müller <customer@example.org>\r\nTo: support@example.com\r\n"
        "Subject: Grüße aus Köln\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nDie Kaffeemaschine läuft über. ☕\r\n"
    ).encode()
    with smtp(company) as client:
        assert not client.has_extn("smtputf8")
        assert client.has_extn("8bitmime")
        client.sendmail(CUSTOMER, [SUPPORT], raw, mail_options=["BODY=8BITMIME"])
        client.command_encoding = "utf-8"
        code, _ = client.docmd("MAIL", "FROM:<jörg@example.org> SMTPUTF8")
        assert 500 <= code < 600, code
    [(message, stored)] = wait_for_inbox(company, SUPPORT, 1)
    assert message["Subject"] == "Grüße aus Köln"
    assert stored.endswith(raw)


def test_unknown_users_and_other_domains_are_refused(company: CompanyMail) -> None:
    with smtp(company) as client:
        client.mail(CUSTOMER)
        unknown, _ = client.rcpt("nobody@example.com")
        elsewhere, reply = client.rcpt("someone@example.invalid")
        assert unknown == 550
        assert elsewhere == 554 and b"Relay access denied" in reply


def test_direct_delivery_keeps_the_bytes_and_new_mailboxes_start_empty(
    company: CompanyMail,
) -> None:
    raw = b"From: a@example.org\r\nSubject: As it is\r\n\r\nbody\r\n"
    company.deliver(SUPPORT, raw)
    [(_, stored)] = inbox(company, SUPPORT)
    assert stored == raw
    company.new_mailboxes(uuid.uuid4().hex)
    assert inbox(company, SUPPORT) == []


def test_a_stopped_stack_leaves_nothing_running(company_mail: CompanyMail) -> None:
    directory = Path(tempfile.mkdtemp(prefix="ace-companymail-"))
    ports = companymail.Ports(imap=free_port(), smtp=free_port(), lmtp=free_port())
    try:
        stack = CompanyMail(directory, ports, [companymail.User(SUPPORT, PASSWORD)]).start()
        masters = [
            int((directory / path).read_text().split()[0])
            for path in ("run/master.pid", "queue/pid/master.pid")
        ]
        family = companymail.process_family(masters)
        assert len(family) > len(masters)
        stack.stop()
        assert not [pid for pid in family if companymail.is_running(pid)]
        for port in (ports.imap, ports.smtp, ports.lmtp):
            with (
                pytest.raises(ConnectionRefusedError),
                socket.create_connection(("127.0.0.1", port), timeout=5),
            ):
                pass
    finally:
        shutil.rmtree(directory, ignore_errors=True)
