"""The board's timeline of a contact tells of its forwards and the delivery reports on it."""

from __future__ import annotations

from datetime import UTC, datetime

from ace_email.contracts.contact import BounceNote, ContactState, ContactStatus, ForwardNote
from ace_email.contracts.message import Bounce, BounceRecipient
from ace_email.desk.app import timeline

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DEAD = BounceRecipient(address="carla@example.org", status="5.1.1", reason="userunknown", hard=True)


def test_forwards_and_delivery_reports_are_steps_of_the_timeline() -> None:
    state = ContactState(
        id="contact-support-1",
        status=ContactStatus.QUEUED,
        account="support",
        queue="support",
        received_at=NOW,
        forwards=[
            ForwardNote(message_id="<f@x>", to="partner@example.net", mode="redirect", at=NOW)
        ],
        bounces=[
            BounceNote(
                contact_id="contact-support-2",
                message_id="<a@x>",
                sent_as="autoreply",
                kind="bounce",
                recipients=[DEAD],
                hard=True,
                received_at=NOW,
            )
        ],
    )
    words = [text for _, text in timeline(state)]
    assert "Redirected to partner@example.net" in words
    assert (
        "Its autoreply got a bounce report: carla@example.org hard bounce 5.1.1 userunknown"
        in words
    )


def test_a_report_shows_what_it_is_about() -> None:
    state = ContactState(
        id="contact-support-2",
        status=ContactStatus.JOINED,
        account="support",
        queue="support",
        bounce=Bounce(kind="bounce", recipients=[DEAD]),
        bounce_of="contact-support-1",
    )
    words = [text for _, text in timeline(state)]
    assert (
        "A delivery report about contact-support-1: bounce: carla@example.org hard bounce 5.1.1 "
        "userunknown" in words
    )
