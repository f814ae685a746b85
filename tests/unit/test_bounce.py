"""Unit tests of ace_email.analysis.bounce: what delivery-status notifications, non-standard
bounces, delays, success notices and feedback reports say, read from real reports kept in
tests/data/bounces (and the whole set, ../shared/bounces/mail, where it is beside the checkout),
and that the analysis of any other mail, or of broken bytes, gives no Bounce and never fails."""

from __future__ import annotations

import random
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from ace_email.analysis.bounce import bounce_of, bounce_of_bytes, may_be_report
from ace_email.analysis.bounce.reasons import REASONS
from ace_email.analysis.mime import JSON_BUDGET, analyse
from ace_email.analysis.mime.head import parse_head
from ace_email.contracts.message import Bounce, BounceRecipient

BOUNCES = Path(__file__).resolve().parents[1] / "data" / "bounces"
WHOLE_SET = Path(__file__).resolve().parents[3] / "shared" / "bounces" / "mail"

DIAGNOSTIC_LIMIT = 300
BOUNCE_JSON_LIMIT = 6000


def lf(text: str) -> bytes:
    """A fixture message: indentation-free text with LF line endings, as UTF-8 bytes."""
    return text.lstrip("\n").encode("utf-8")


def report(name: str) -> Bounce:
    """The Bounce the whole analysis finds in one file of the set."""
    bounce = analyse((BOUNCES / name).read_bytes()).bounce
    assert bounce is not None, name
    return bounce


def only(bounce: Bounce) -> BounceRecipient:
    assert len(bounce.recipients) == 1, bounce.recipients
    return bounce.recipients[0]


def verdict(recipient: BounceRecipient) -> tuple[str, str | None, int | None]:
    return recipient.reason, recipient.status, recipient.reply_code


def assert_bounded(bounce: Bounce) -> None:
    """One-line, bounded texts, reasons of the vocabulary, and a small Bounce."""
    for recipient in bounce.recipients:
        assert recipient.reason in (*REASONS, "delivered", "feedback"), recipient.reason
        for text in (recipient.diagnostic, recipient.address):
            assert not any(c in text for c in "\r\n\x00"), text
        assert len(recipient.diagnostic) <= DIAGNOSTIC_LIMIT
    assert len(bounce.model_dump_json().encode("utf-8")) <= BOUNCE_JSON_LIMIT


# --------------------------------------------------------------------------------------------
# Real reports
# --------------------------------------------------------------------------------------------


def test_postfix_dsn_user_unknown_is_hard() -> None:
    bounce = report("lhost-postfix-31.eml")
    recipient = only(bounce)
    assert bounce.kind == "bounce"
    assert recipient.address == "kijitora@gmail.com"
    assert verdict(recipient) == (
        "userunknown",
        "5.1.1",
        550,
    )
    assert recipient.hard and bounce.hard
    assert bounce.original_message_id == "<ffffff-eeeeee-22@neko.example.com>"
    assert bounce.reporting_mta == "nyaaan.example.com"
    assert_bounded(bounce)


def test_full_mailbox_is_soft() -> None:
    bounce = report("lhost-postfix-63.eml")
    recipient = only(bounce)
    assert recipient.address == "neko@nyaaan.example.org"
    assert verdict(recipient) == (
        "mailboxfull",
        "5.2.2",
        552,
    )
    assert not recipient.hard and not bounce.hard
    assert bounce.original_message_id == "<BA77602D-7E1E-4C1B-92C9-4A2324E3E141@example.jp>"


def test_delayed_delivery_is_a_delay() -> None:
    bounce = report("rfc3464-34.eml")
    recipient = only(bounce)
    assert bounce.kind == "delay"
    assert recipient.address == "kijitora@example.com"
    assert (recipient.reason, recipient.status) == ("networkerror", "4.4.1")
    assert not recipient.hard and not bounce.hard
    assert bounce.original_message_id == "<20170429233445.FFFFFFFF02@smtp.neko.example.org>"


def test_success_dsn_is_delivered() -> None:
    bounce = report("rfc3464-28.eml")
    recipient = only(bounce)
    assert bounce.kind == "delivered"
    assert recipient.address == "kijitora@neko.example.jp"
    assert verdict(recipient) == ("delivered", "2.1.5", 250)
    assert not recipient.hard
    assert (
        bounce.original_message_id == "<20151025071802.22CC00222233@neko-222-2222.vs.example.ne.jp>"
    )


def test_arf_feedback_report() -> None:
    bounce = report("arf-18.eml")
    recipient = only(bounce)
    assert bounce.kind == "feedback"
    assert bounce.feedback_type == "auth-failure"
    assert (recipient.address, recipient.reason, recipient.hard) == (
        "kijitora@example.com",
        "feedback",
        False,
    )
    assert bounce.original_message_id == "<000000002.2222222.1500000000022@example.net>"
    assert not bounce.hard


def test_exim_bounce_without_dsn() -> None:
    bounce = report("lhost-exim-05.eml")
    recipient = only(bounce)
    assert bounce.kind == "bounce"
    assert recipient.address == "kijitora@neko.example.co.jp"
    assert verdict(recipient) == (
        "userunknown",
        "5.1.1",
        553,
    )
    assert recipient.hard
    assert bounce.original_message_id == "<19990429233445.000000@mx4.example.org>"
    assert "RCPT TO" in recipient.diagnostic
    assert_bounded(bounce)


def test_qmail_bounce_full_mailbox_is_soft() -> None:
    bounce = report("lhost-qmail-06.eml")
    recipient = only(bounce)
    assert recipient.address == "kijitora@example.jp"
    assert verdict(recipient) == (
        "mailboxfull",
        "4.2.2",
        450,
    )
    assert not recipient.hard
    assert bounce.original_message_id == "<57D03121-12F7-4801-B30F-9E44B15E56DC@example.co.jp>"


def test_office365_unknown_recipient() -> None:
    bounce = report("lhost-office365-09.eml")
    recipient = only(bounce)
    assert recipient.address == "azumakuniyuki@example.ne.jp"
    assert verdict(recipient) == (
        "userunknown",
        "5.1.351",
        550,
    )
    assert recipient.hard
    assert bounce.original_message_id == (
        "<SLXP216MB0381A2BCD997D05F53CDB50BA9220@SLXP216MB0381.KORP216.PROD.OUTLOOK.COM>"
    )


def test_every_report_of_the_set_is_bounded() -> None:
    if not WHOLE_SET.is_dir():
        pytest.skip(f"no bounce set at {WHOLE_SET}")
    for path in sorted(WHOLE_SET.glob("*.eml"))[::7]:
        bounce = analyse(path.read_bytes()).bounce
        if bounce is not None:
            assert_bounded(bounce)


# --------------------------------------------------------------------------------------------
# Not reports
# --------------------------------------------------------------------------------------------

ORDINARY = lf("""
From: Pat Customer <pat@example.org>
To: support@example.com
Subject: My parcel: delivery failed twice
Message-ID: <order-4711@example.org>
Date: Mon, 02 Jun 2025 09:00:00 +0000
Content-Type: text/plain; charset=utf-8

Hello, the delivery of order 4711 failed. Please call me: pat@example.org.
""")

ABSENCE = lf("""
From: Sam Colleague <sam@example.net>
To: support@example.com
Subject: Automatic reply: Your request [#3F9A0C1B]
Auto-Submitted: auto-replied
X-Auto-Response-Suppress: All
Message-ID: <ooo-1@example.net>
Date: Mon, 02 Jun 2025 09:05:00 +0000
Content-Type: text/plain; charset=utf-8

I am out of the office until 10 June. For urgent matters write to desk@example.net.
""")


@pytest.mark.parametrize("raw", [ORDINARY, ABSENCE], ids=["ordinary", "absence"])
def test_other_mail_is_no_report(raw: bytes) -> None:
    assert analyse(raw).bounce is None
    assert bounce_of_bytes(raw) is None


def test_ordinary_mail_skips_the_parser() -> None:
    head = parse_head(ORDINARY)
    assert not may_be_report(head.fields, [], "My parcel: delivery failed twice")


BROKEN_DSN = lf("""
From: MAILER-DAEMON@example.org
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: message/delivery-status

Final-Recipient: rfc822;
Status: 9.9.9999999
Diagnostic-Code: smtp; 550-5.1.1
""")


def garbage() -> list[bytes]:
    rng = random.Random(7)
    real = (BOUNCES / "lhost-postfix-31.eml").read_bytes()
    cuts = [real[:size] for size in (10, 200, len(real) // 3, len(real) // 2, len(real) - 5)]
    return [
        b"",
        b"\x00" * 500,
        bytes(rng.randrange(256) for _ in range(5000)),
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\n",
        BROKEN_DSN,
        *cuts,
    ]


@pytest.mark.parametrize("raw", garbage(), ids=lambda raw: f"{len(raw)}-bytes")
def test_garbage_never_raises(raw: bytes) -> None:
    bounce = bounce_of_bytes(raw)
    analysis = analyse(raw)
    for found in (bounce, analysis.bounce):
        if found is not None:
            assert_bounded(found)


class Unreadable(Message):
    """A message whose header cannot be read at all."""

    def raw_items(self) -> Iterator[tuple[str, str]]:
        raise RuntimeError("unreadable")


def test_bounce_of_never_raises_on_a_broken_message() -> None:
    assert bounce_of(Unreadable()) is None


# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------

NOISY = "a long\r\nline\x00 " * 200


def dsn(recipients: int, diagnostic: str = "smtp; 550 5.1.1 User unknown") -> bytes:
    blocks = "".join(
        f"Final-Recipient: rfc822; user{i}@example.net\n"
        f"Action: failed\nStatus: 5.1.1\nDiagnostic-Code: {diagnostic}\n\n"
        for i in range(recipients)
    )
    return lf(f"""
From: Mail Delivery System <MAILER-DAEMON@mx.example.com>
To: support@example.com
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.example.com>
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Your message could not be delivered.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

{blocks}
--b
Content-Type: text/rfc822-headers

From: support@example.com
Message-ID: <ours-1@example.com>

--b--
""")


def test_diagnostic_is_one_bounded_line() -> None:
    raw = dsn(1, "smtp; 550 5.1.1 " + NOISY.replace("\r\n", "\n "))
    bounce = bounce_of_bytes(raw)
    assert bounce is not None
    recipient = only(bounce)
    assert (recipient.reason, recipient.hard) == ("userunknown", True)
    assert_bounded(bounce)


def test_report_of_a_thousand_recipients_fits_the_budget() -> None:
    raw = dsn(1000, "smtp; 550 5.1.1 " + "x" * 400)
    analysis = analyse(raw)
    bounce = analysis.bounce
    assert bounce is not None
    assert bounce.original_message_id == "<ours-1@example.com>"
    assert 1 <= len(bounce.recipients) <= 20
    assert bounce.recipients[0].address == "user0@example.net"
    assert_bounded(bounce)
    assert len(analysis.model_dump_json(by_alias=True).encode("utf-8")) <= JSON_BUDGET
