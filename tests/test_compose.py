"""The automatic reply and the resent original, as bytes; and the auto-reply decision."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.policy import default as default_policy

from ace_email.auto_reply import decide_auto_reply
from ace_email.compose import auto_reply_subject, build_auto_reply, build_resent
from ace_email.models import AccountPolicy, Address, Analysis

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_auto_reply_is_threaded_and_marked_automatic() -> None:
    raw = build_auto_reply(
        from_address="support@example.com",
        to_address="carla@example.org",
        subject="Broken kettle",
        reference="3F9A0C1B",
        message_id="<ace.x.autoreply.support@example.com>",
        date=NOW,
        in_reply_to="<orig@example.org>",
        references=["<older@example.org>"],
    )
    reply = email.message_from_bytes(raw, policy=default_policy)
    assert reply["Subject"] == "Re: Broken kettle [#3F9A0C1B]"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == "<orig@example.org>"
    assert reply["References"] == "<older@example.org> <orig@example.org>"
    assert reply["Message-ID"] == "<ace.x.autoreply.support@example.com>"


def test_header_injection_through_the_subject_is_impossible() -> None:
    subject = auto_reply_subject("Hi\r\nBcc: victim@example.net\nX: y", "REF")
    assert "\r" not in subject and "\n" not in subject
    assert auto_reply_subject("Re: Hello [#REF]", "REF") == "Re: Hello [#REF]"
    assert auto_reply_subject("", "REF") == "Re: (no subject) [#REF]"


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
