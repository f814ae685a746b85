"""The automatic reply and the resent original, as bytes; and the auto-reply decision."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest

from ace_email.compose.messages import auto_reply_subject, build_auto_reply, build_resent
from ace_email.contracts.ids import LOOP_TOKEN
from ace_email.contracts.mailbox import AccountPolicy
from ace_email.contracts.message import Address, Analysis
from ace_email.decisions.auto_reply import decide_auto_reply

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

EXPECTED_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "X-Loop",
    "MIME-Version",
    "Content-Type",
]


def _auto_reply_bytes(**changes: Any) -> bytes:
    arguments: dict[str, Any] = {
        "from_address": "noreply-support@example.com",
        "to_address": "carla@example.org",
        "subject": "Broken kettle",
        "reference": "3F9A0C1B",
        "message_id": "<ace.x.autoreply.support@example.com>",
        "date": NOW,
        "in_reply_to": "<orig@example.org>",
        "references": ["<older@example.org>"],
        "text": "Thank you, Carla.\n",
        "html": "<p>Thank you, Carla.</p>\n",
    }
    return build_auto_reply(**(arguments | changes))


def _auto_reply(**changes: Any) -> EmailMessage:
    parsed = email.message_from_bytes(_auto_reply_bytes(**changes), policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _content(part: EmailMessage) -> str:
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


def test_auto_reply_is_threaded_and_marked_automatic() -> None:
    reply = _auto_reply()
    assert list(reply.keys()) == EXPECTED_HEADERS
    assert reply["From"] == "noreply-support@example.com"
    assert reply["To"] == "carla@example.org"
    assert reply["Subject"] == "Re: Broken kettle [#3F9A0C1B]"
    assert reply["Date"].datetime == NOW
    assert reply["Message-ID"] == "<ace.x.autoreply.support@example.com>"
    assert reply["In-Reply-To"] == "<orig@example.org>"
    assert reply["References"] == "<older@example.org> <orig@example.org>"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["X-Auto-Response-Suppress"] == "All"
    assert reply["X-Loop"] == LOOP_TOKEN
    assert "Precedence" not in reply


def test_auto_reply_is_multipart_alternative_text_then_html() -> None:
    reply = _auto_reply(text="Hej Åsa,\ntack för ditt mejl.\n", html="<p>Hej Åsa</p>\n")
    assert reply.get_content_type() == "multipart/alternative"
    plain, html = reply.iter_parts()
    assert isinstance(plain, EmailMessage) and isinstance(html, EmailMessage)
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    for part in (plain, html):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
        assert "MIME-Version" not in part
    assert _content(plain) == "Hej Åsa,\ntack för ditt mejl.\n"
    assert _content(html) == "<p>Hej Åsa</p>\n"


def test_auto_reply_without_html_is_a_single_text_part() -> None:
    reply = _auto_reply(html=None)
    assert reply.get_content_type() == "text/plain"
    assert _content(reply) == "Thank you, Carla.\n"


def test_auto_reply_encodes_non_ascii_headers() -> None:
    raw = _auto_reply_bytes(
        from_name="Kundtjänst",
        to_address="asa@example.org",
        to_name='Åsa Öberg, "VIP"',
        subject="Trasig vattenkokare \u2013 igen",
        in_reply_to=None,
        references=[],
    )
    assert raw.isascii()
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0]
    reply = email.message_from_bytes(raw, policy=default_policy)
    assert reply["Subject"] == "Re: Trasig vattenkokare \u2013 igen [#3F9A0C1B]"
    assert reply["From"].addresses[0].display_name == "Kundtjänst"
    [to] = reply["To"].addresses
    assert (to.display_name, to.addr_spec) == ('Åsa Öberg, "VIP"', "asa@example.org")
    assert "In-Reply-To" not in reply and "References" not in reply


def test_auto_reply_subject_does_not_double_re_or_the_tag() -> None:
    assert _auto_reply(subject="Re: Kettle [#3F9A0C1B]")["Subject"] == "Re: Kettle [#3F9A0C1B]"
    assert _auto_reply(subject="Kettle [#3F9A0C1B]")["Subject"] == "Re: Kettle [#3F9A0C1B]"
    assert auto_reply_subject("Re: Hello [#REF]", "REF") == "Re: Hello [#REF]"
    assert auto_reply_subject("", "REF") == "Re: (no subject) [#REF]"


def test_header_injection_through_the_subject_is_impossible() -> None:
    subject = auto_reply_subject("Hi\r\nBcc: victim@example.net\nX: y", "REF")
    assert "\r" not in subject and "\n" not in subject
    reply = _auto_reply(subject="Hi\r\nBcc: victim@example.org")
    assert list(reply.keys()) == EXPECTED_HEADERS
    assert reply["Subject"] == "Re: Hi Bcc: victim@example.org [#3F9A0C1B]"
    assert reply["To"].addresses[0].addr_spec == "carla@example.org"
    assert len(reply["To"].addresses) == 1


def test_header_injection_through_a_display_name_is_impossible() -> None:
    reply = _auto_reply(to_name="Carla\nBcc: victim@example.org", from_name="Desk\r\nX-Evil: 1")
    assert list(reply.keys()) == EXPECTED_HEADERS
    [to] = reply["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Carla Bcc: victim@example.org", "carla@example.org")
    [sender] = reply["From"].addresses
    assert sender.display_name == "Desk X-Evil: 1"


def test_header_injection_through_the_body_is_impossible() -> None:
    reply = _auto_reply(
        text="Hello\r\nX-Evil: 1\r\n\r\nBcc: v@example.org\x00\x0b", html="\r\nX-Evil: 1"
    )
    assert list(reply.keys()) == EXPECTED_HEADERS
    plain, html = reply.iter_parts()
    assert isinstance(plain, EmailMessage) and isinstance(html, EmailMessage)
    assert _content(plain) == "Hello\nX-Evil: 1\n\nBcc: v@example.org\n"
    assert "X-Evil" not in plain and "X-Evil" not in html


@pytest.mark.parametrize(
    "to_address",
    [
        "carla@example.org\r\nBcc: victim@example.org",
        "carla@example.org\nBcc: victim@example.org",
        "carla@example.org\x00",
        "carla@example.org, victim@example.org",
        "Carla <carla@example.org>",
        "carla@example.org victim@example.org",
        "carla",
        "",
        "jösé@exämple.org, victim@example.org",
        "jösé@exämple.org\r\nBcc: victim@example.org",
    ],
)
def test_a_recipient_that_is_not_exactly_one_address_is_refused(to_address: str) -> None:
    with pytest.raises(ValueError, match="the To address"):
        _auto_reply(to_address=to_address)


def test_an_international_recipient_is_written_as_utf8() -> None:
    raw = _auto_reply_bytes(to_address="jösé@exämple.org", to_name="José")
    assert '\r\nTo: "José" <jösé@exämple.org>\r\n'.encode() in raw


def test_resent_keeps_the_original_bytes_under_resent_fields() -> None:
    original = b"From: a@example.org\r\nSubject: x\r\n\r\nbody \xff bytes\r\n"
    resent = build_resent(
        original,
        resent_from="support@example.com",
        resent_to="alice@example.com",
        resent_message_id="<r@example.com>",
        contact_id="contact-support-abc",
        date=NOW,
    )
    assert resent.endswith(original)
    head = resent[: -len(original)].decode()
    assert head.startswith("Resent-Date: ")
    assert (
        "Resent-To: alice@example.com\r\n" in head
        and "X-Ace-Contact: contact-support-abc\r\n" in head
    )


POLICY = AccountPolicy(
    name="support",
    address="support@example.com",
    return_address="noreply-support@example.com",
    queue="support",
    own_addresses=["alice@example.com"],
)


def test_auto_reply_decision() -> None:
    customer = Analysis(**{"from": Address(addr="carla@example.org")})
    assert decide_auto_reply(POLICY, customer).to == "carla@example.org"
    with_reply_to = customer.model_copy(update={"reply_to": [Address(addr="desk@example.org")]})
    assert decide_auto_reply(POLICY, with_reply_to).to == "desk@example.org"
    automatic = customer.model_copy(update={"automatic": True, "automatic_reasons": ["List-Id"]})
    assert "automatic mail (List-Id)" in decide_auto_reply(POLICY, automatic).reason
    for own in ("support@example.com", "NOREPLY-support@example.com", "alice@example.com"):
        ours = Analysis(**{"from": Address(addr=own)})
        assert decide_auto_reply(POLICY, ours).to is None
    assert decide_auto_reply(POLICY.model_copy(update={"auto_reply": False}), customer).to is None
    assert decide_auto_reply(POLICY, Analysis()).reason.endswith("no sender address")


def test_an_agents_reply_is_threaded_and_not_marked_automatic() -> None:
    from ace_email.compose.messages import build_reply

    raw = build_reply(
        from_address="support@example.com",
        to_address="carla@example.org",
        subject="Re: Broken kettle [#3F9A0C1B]",
        reference="3F9A0C1B",
        message_id="<ace.abc.reply.1234.support@example.com>",
        date=NOW,
        in_reply_to="<original@example.org>",
        references=["<first@example.org>"],
        text="Dear Carla,\r\nwe send a new one.",
    )
    message = email.message_from_bytes(raw, policy=default_policy)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "Re: Broken kettle [#3F9A0C1B]"
    assert message["In-Reply-To"] == "<original@example.org>"
    assert message["References"] == "<first@example.org> <original@example.org>"
    assert message["Auto-Submitted"] is None and message["X-Loop"] is None
    assert message.get_content().replace("\r\n", "\n") == "Dear Carla,\nwe send a new one.\n"
    with pytest.raises(ValueError, match="control characters"):
        build_reply(
            from_address="support@example.com",
            to_address="carla@example.org\r\nBcc: everyone@example.org",
            subject="x",
            reference="R",
            message_id="<m@x>",
            date=NOW,
            in_reply_to=None,
            references=[],
            text="hi",
        )
