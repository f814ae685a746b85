"""What `starter.py status` prints is read by people: no Python reprs, times to the second."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from ace_email.contracts.contact import ContactState, ContactStatus, FollowUpNote, ReplyNote
from ace_email.contracts.message import MessageRef
from ace_email.operations.contacts import describe_contact

AT = datetime(2026, 12, 4, 14, 5, 6, 789, tzinfo=UTC)


def test_status_prints_times_and_nested_records_as_people_read_them() -> None:
    state = ContactState(
        id="contact-support-1",
        status=ContactStatus.ASSIGNED,
        account="support",
        queue="support",
        received_at=AT,
        assigned_at=AT.astimezone(timezone(timedelta(hours=2))),
        follow_ups=[
            FollowUpNote(contact_id="contact-support-2", subject="Re: kettle", received_at=AT)
        ],
        replies=[ReplyNote(message_id="<r1@example.com>", to="c@example.org", at=AT)],
        message=MessageRef(
            account="support", folder="Processing", uidvalidity=7, uid=42, key="k", size=1234
        ),
    )
    text = describe_contact(state)
    assert not re.search(r"datetime\.|TzInfo|tzinfo|\{'|\[\]|None", text), text
    assert "       received_at: 2026-12-04 14:05:06 UTC" in text
    assert "       assigned_at: 2026-12-04 14:05:06 UTC" in text
    assert "        follow_ups: 1\n" in text
    assert "- contact_id contact-support-2, subject Re: kettle, automatic no" in text
    assert "- message_id <r1@example.com>, to c@example.org, at 2026-12-04 14:05:06 UTC" in text
    assert "           message: Processing uid 42, 1234 bytes" in text
