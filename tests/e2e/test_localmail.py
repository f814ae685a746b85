"""The embedded mail server: real IMAP (pymap) and SMTP (aiosmtpd) on loopback.

imap-tools is blocking, so every IMAP conversation runs in a thread
(``asyncio.to_thread``) while the servers keep running on the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import aiosmtplib
import pytest
from imap_tools import MailBoxUnencrypted

from devtools.localmail import LocalMailServer, MailUser, UnknownMailboxError

T = TypeVar("T")

SUPPORT = MailUser("support@example.com", "support-secret")
# Mixed-case address and a colon in the password, on purpose.
AGENT = MailUser("Alice.Agent@Example.com", "alice:secret")
SENDER = "carla@example.org"

_COPYUID = re.compile(rb"^(\d+) (\d+) (\d+)$")


def free_port() -> int:
    """A TCP port that was free a moment ago (bind to port 0, then release it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_server(data_dir: Path, *, imap_port: int = 0, smtp_port: int = 0) -> LocalMailServer:
    return LocalMailServer(
        data_dir,
        [SUPPORT, AGENT],
        imap_port=imap_port or free_port(),
        smtp_port=smtp_port or free_port(),
    )


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LocalMailServer]:
    async with make_server(tmp_path / "mail") as srv:
        yield srv


def login_at(port: int, user: MailUser = SUPPORT) -> MailBoxUnencrypted:
    box = MailBoxUnencrypted("127.0.0.1", port)
    box.login(user.address, user.password, initial_folder=None)
    return box


def login(server: LocalMailServer, user: MailUser = SUPPORT) -> MailBoxUnencrypted:
    return login_at(server.imap_port, user)


async def in_thread(func: Callable[[], T]) -> T:
    return await asyncio.to_thread(func)


def message(subject: str, body: str = "Hello,\r\nwhere is my parcel?\r\n") -> bytes:
    """A CRLF message with things a careless store would change."""
    refs = " ".join(f"<ref-{i}@example.org>" for i in range(8))  # a long header line
    return (
        f"From: Carla Customer <{SENDER}>\r\n"
        f"To: {SUPPORT.address}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.org>\r\n"
        f"References: {refs}\r\n"
        "X-Folded: first part\r\n"
        "\tsecond part\r\n"
        "\r\n"
        f"{body}"
        ".a line that starts with a dot\r\n"
        "From the start of a line\r\n"
    ).encode()


async def smtp_send(
    server: LocalMailServer,
    raw: bytes,
    recipients: list[str],
    *,
    sender: str = SENDER,
    mail_options: list[str] | None = None,
) -> None:
    await aiosmtplib.send(
        raw,
        sender=sender,
        recipients=recipients,
        mail_options=mail_options,
        hostname="127.0.0.1",
        port=server.smtp_port,
        timeout=30,
    )


def fetch_raw(box: MailBoxUnencrypted, folder: str = "INBOX") -> dict[int, bytes]:
    """UID → BODY[] of every message in ``folder``."""
    box.folder.set(folder)
    typ, data = box.client.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
    assert typ == "OK", data
    result: dict[int, bytes] = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))  # type: ignore[union-attr]
            result[uid] = item[1]
    return result


def split_trace(stored: bytes) -> tuple[list[bytes], bytes]:
    """Split off the trace headers the server prepends: (header lines, the rest)."""
    lines = stored.split(b"\r\n")
    assert lines[0].startswith(b"Return-Path: <"), lines[0]
    index = 2 if lines[1].startswith(b"X-Original-To: ") else 1
    assert lines[index].startswith(b"Received: "), lines[index]
    index += 1
    while lines[index][:1] in (b"\t", b" "):
        index += 1
    return lines[:index], b"\r\n".join(lines[index:])


def normalised(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def uid_search(box: MailBoxUnencrypted, *criteria: str) -> list[int]:
    typ, data = box.client.uid("SEARCH", *criteria)
    assert typ == "OK", data
    return [int(u) for u in data[0].split()]


# -- 1. SMTP in, IMAP out -------------------------------------------------------


async def test_smtp_delivery_keeps_bytes_and_rejects_unknown(server: LocalMailServer) -> None:
    raw = message("first contact")
    await smtp_send(server, raw, ["SUPPORT@Example.COM"])  # case-insensitive match

    def read() -> dict[int, bytes]:
        with login(server) as box:
            return fetch_raw(box)

    stored = await in_thread(read)
    assert list(stored) == [1]
    trace, rest = split_trace(stored[1])
    assert trace[0] == f"Return-Path: <{SENDER}>".encode()
    assert b"for <support@example.com>" in b"".join(trace)
    assert normalised(rest) == normalised(raw)
    assert rest == raw  # in fact byte-exact, CRLF included

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await smtp_send(server, raw, ["nobody@example.com"])
    assert [r.code for r in refused.value.recipients] == [550]
    assert "no such mailbox" in refused.value.recipients[0].message

    # One good and one unknown recipient: the good one still gets the message.
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.smtp_port) as smtp:
        errors, _ = await smtp.sendmail(SENDER, [AGENT.address.lower(), "ghost@example.com"], raw)
    assert list(errors) == ["ghost@example.com"]
    assert errors["ghost@example.com"].code == 550

    def read_agent() -> dict[int, bytes]:
        with login(server, AGENT) as box:
            return fetch_raw(box)

    agent_mail = await in_thread(read_agent)
    assert [normalised(split_trace(m)[1]) for m in agent_mail.values()] == [normalised(raw)]

    with pytest.raises(UnknownMailboxError):
        server.deliver("nobody@example.com", raw)


# -- 2. MOVE, UIDPLUS and friends ---------------------------------------------


async def test_uid_move_reports_copyuid_and_capabilities(server: LocalMailServer) -> None:
    for i in range(3):
        server.deliver(SUPPORT.address, message(f"move me {i}"))

    def scenario() -> None:
        with login(server) as box:
            typ, caps = box.client.capability()
            assert typ == "OK"
            capabilities = caps[-1].split()
            assert b"MOVE" in capabilities
            assert b"UIDPLUS" in capabilities

            typ, _ = box.client.create('"Processed"')
            assert typ == "OK"
            box.folder.set("INBOX")
            assert uid_search(box, "ALL") == [1, 2, 3]  # arrival order

            box.client.untagged_responses.pop("COPYUID", None)
            typ, data = box.client.uid("MOVE", "2", '"Processed"')
            assert typ == "OK", data
            _, copyuid = box.client.response("COPYUID")
            match = _COPYUID.match(copyuid[-1])
            assert match is not None, copyuid
            validity, source_uid, dest_uid = (int(g) for g in match.groups())
            assert source_uid == 2

            assert uid_search(box, "ALL") == [1, 3]
            status = box.folder.status("Processed")
            assert status["UIDVALIDITY"] == validity
            assert status["MESSAGES"] == 1
            processed = fetch_raw(box, "Processed")
            assert list(processed) == [dest_uid]
            assert b"Subject: move me 1\r\n" in processed[dest_uid]

    await in_thread(scenario)


async def test_append_search_header_status_and_keywords(server: LocalMailServer) -> None:
    server.deliver(SUPPORT.address, message("needle"))
    server.deliver(SUPPORT.address, message("haystack"))

    def scenario() -> None:
        with login(server) as box:
            box.folder.set("INBOX")
            assert uid_search(box, "HEADER", "Message-ID", '"<needle@example.org>"') == [1]
            assert uid_search(box, "HEADER", "Subject", '"haystack"') == [2]

            typ, data = box.client.uid("STORE", "1", "+FLAGS", r"(\Flagged $Junk)")
            assert typ == "OK", data
            assert uid_search(box, "KEYWORD", "$Junk") == [1]
            assert uid_search(box, "FLAGGED") == [1]

            typ, _ = box.client.create('"Sent"')
            assert typ == "OK"
            sent = message("our reply")
            typ, data = box.client.append('"Sent"', r"(\Seen $Forwarded)", None, sent)
            assert typ == "OK", data
            assert b"APPENDUID" in data[-1]
            status = box.folder.status("Sent")
            assert status["MESSAGES"] == 1
            assert status["UNSEEN"] == 0

            box.folder.set("Sent")
            typ, data = box.client.uid("FETCH", "1", "(FLAGS)")
            assert typ == "OK"
            assert b"$Forwarded" in data[0] and b"\\Seen" in data[0]
            assert fetch_raw(box, "Sent") == {1: sent}  # APPEND stores the literal verbatim

            box.folder.set("INBOX")
            typ, data = box.client.uid("COPY", "2", '"Sent"')
            assert typ == "OK", data
            assert fetch_raw(box, "Sent")[2] == fetch_raw(box, "INBOX")[2]

        # Flags survive the session.
        with login(server) as box:
            box.folder.set("INBOX")
            typ, data = box.client.uid("FETCH", "1", "(FLAGS)")
            assert b"$Junk" in data[0] and b"\\Flagged" in data[0]

    await in_thread(scenario)


# -- 3. Delivery while a client has the INBOX selected -------------------------


async def test_delivery_visible_to_logged_in_client(server: LocalMailServer) -> None:
    box = await in_thread(lambda: login(server))
    try:
        await in_thread(lambda: box.folder.set("INBOX"))
        assert await in_thread(lambda: uid_search(box, "ALL")) == []

        await smtp_send(server, message("while selected"), [SUPPORT.address])

        def noop() -> tuple[list[bytes], list[int]]:
            box.client.untagged_responses.pop("EXISTS", None)
            typ, _ = box.client.noop()
            assert typ == "OK"
            _, exists = box.client.response("EXISTS")
            return [e for e in exists if e is not None], uid_search(box, "ALL")

        exists, uids = await in_thread(noop)
        assert exists[-1] == b"1"
        assert uids == [1]

        server.deliver(SUPPORT.address, message("before reselect"))

        def reselect() -> int:
            typ, data = box.client.select("INBOX")
            assert typ == "OK"
            return int(data[0] or b"-1")

        assert await in_thread(reselect) == 2

        def fresh_login() -> list[int]:
            with login(server) as other:
                other.folder.set("INBOX")
                return uid_search(other, "ALL")

        assert await in_thread(fresh_login) == [1, 2]
    finally:
        await in_thread(box.logout)


# -- 4. Restart on the same data directory -------------------------------------


async def test_restart_keeps_users_mail_and_uidvalidity(tmp_path: Path) -> None:
    data_dir = tmp_path / "mail"
    imap_port, smtp_port = free_port(), free_port()
    raw = message("survives restart")

    first = make_server(data_dir, imap_port=imap_port, smtp_port=smtp_port)
    await first.start()
    try:
        await smtp_send(first, raw, [SUPPORT.address])

        def before() -> tuple[int, int, dict[int, bytes]]:
            with login(first) as box:
                box.client.create('"Archive"')
                inbox = box.folder.status("INBOX")["UIDVALIDITY"]
                archive = box.folder.status("Archive")["UIDVALIDITY"]
                box.folder.set("INBOX")
                box.client.uid("STORE", "1", "+FLAGS", r"(\Seen $Important)")
                return inbox, archive, fetch_raw(box)

        inbox_validity, archive_validity, stored = await in_thread(before)
        # A client still connected when the server stops must not hold up stop().
        lingering = await in_thread(lambda: login(first, AGENT))
    finally:
        started = time.monotonic()
        await first.stop()
    assert time.monotonic() - started < 5

    async with make_server(data_dir, imap_port=imap_port, smtp_port=smtp_port) as second:
        with pytest.raises(Exception):  # noqa: B017 - any socket/IMAP error will do
            await in_thread(lingering.client.noop)

        second.deliver(SUPPORT.address, message("after restart"))

        def after() -> tuple[int, int, dict[int, bytes], bytes]:
            with login(second) as box:
                inbox = box.folder.status("INBOX")["UIDVALIDITY"]
                archive = box.folder.status("Archive")["UIDVALIDITY"]
                mail = fetch_raw(box)
                _, data = box.client.uid("FETCH", "1", "(FLAGS)")
                return inbox, archive, mail, data[0]

        inbox_after, archive_after, stored_after, flags = await in_thread(after)
        assert (inbox_after, archive_after) == (inbox_validity, archive_validity)
        assert list(stored_after) == [1, 2]
        assert stored_after[1] == stored[1]
        assert b"$Important" in flags and b"\\Seen" in flags

        def agent_login() -> None:
            with login(second, AGENT) as box:
                box.folder.set("INBOX")

        await in_thread(agent_login)


# -- 5. 8-bit and big messages --------------------------------------------------


async def test_8bit_utf8_and_10mb_messages_unchanged(server: LocalMailServer) -> None:
    utf8 = (
        "From: Jörg Müller <jörg@exämple.de>\r\n"
        f"To: {SUPPORT.address}\r\n"
        "Subject: Grüße, 注文が届きません\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Sehr geehrte Damen und Herren, wo bleibt meine Bestellung? 😀\r\n"
    ).encode()
    await smtp_send(
        server,
        utf8,
        [SUPPORT.address],
        sender="jörg@exämple.de",
        mail_options=["BODY=8BITMIME", "SMTPUTF8"],
    )

    payload = base64.encodebytes(os.urandom(7_600_000)).replace(b"\n", b"\r\n")
    big = (
        f"From: {SENDER}\r\nTo: {SUPPORT.address}\r\nSubject: big attachment\r\n"
        "MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + payload
    assert len(big) > 10_000_000
    await smtp_send(server, big, [SUPPORT.address])

    def read() -> dict[int, bytes]:
        with login(server) as box:
            return fetch_raw(box)

    stored = await in_thread(read)
    trace, rest = split_trace(stored[1])
    assert trace[0] == "Return-Path: <jörg@exämple.de>".encode()
    assert rest == utf8
    assert normalised(split_trace(stored[2])[1]) == normalised(big)


# -- Start-up failures -----------------------------------------------------------


async def test_failed_start_releases_everything(tmp_path: Path) -> None:
    imap_port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        smtp_port = busy.getsockname()[1]
        srv = make_server(tmp_path / "mail", imap_port=imap_port, smtp_port=smtp_port)
        with pytest.raises(OSError):
            await srv.start()
        assert not srv.running
    # The IMAP listener that did start was closed again: the port can be reused.
    async with make_server(tmp_path / "mail", imap_port=imap_port) as srv:
        with pytest.raises(RuntimeError):
            await srv.start()


# -- The command line -------------------------------------------------------------


async def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    users_file = tmp_path / "users.txt"
    users_file.write_text(f"# local demo users\n{SUPPORT.address}:{SUPPORT.password}\n")
    imap_port, smtp_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devtools.localmail",
        "--data-dir",
        str(tmp_path / "mail"),
        "--imap-port",
        str(imap_port),
        "--smtp-port",
        str(smtp_port),
        "--users-file",
        str(users_file),
        "--user",
        f"{AGENT.address}:{AGENT.password}",
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=15)
        assert line.decode().strip() == (
            f"localmail ready imap=127.0.0.1:{imap_port} smtp=127.0.0.1:{smtp_port}"
        )
        for user in (SUPPORT, AGENT):

            def check(user: MailUser = user) -> None:
                with login_at(imap_port, user) as box:
                    box.folder.set("INBOX")

            await in_thread(check)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_catch_all_mailbox_takes_mail_for_every_address_not_here(tmp_path: Path) -> None:
    everyone = MailUser("catch-all@localhost", "catch-secret")
    server = LocalMailServer(
        tmp_path / "mail",
        [SUPPORT, AGENT, everyone],
        imap_port=free_port(),
        smtp_port=free_port(),
        catch_all=everyone.address,
    )
    async with server:
        raw = message("An automatic reply")
        await smtp_send(server, raw, ["you@outside.example", "Other@Elsewhere.example"])
        await smtp_send(server, raw, [SUPPORT.address])

        def read(user: MailUser) -> dict[int, bytes]:
            with login(server, user) as box:
                return fetch_raw(box)

        caught = await in_thread(lambda: read(everyone))
        assert list(caught) == [1], "one copy for all the addresses it caught"
        trace, rest = split_trace(caught[1])
        assert trace[1] == b"X-Original-To: you@outside.example, Other@Elsewhere.example"
        assert rest == raw
        assert len(await in_thread(lambda: read(SUPPORT))) == 1, "a known address keeps its mail"
    with pytest.raises(ValueError, match="catch-all mailbox 'ghost@localhost' is not one"):
        LocalMailServer(tmp_path / "m2", [SUPPORT], catch_all="ghost@localhost")
