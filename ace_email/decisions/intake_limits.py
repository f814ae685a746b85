"""An account's protection against floods of mail, as pure decisions: whether intake pauses
because too many of its contacts wait (`max_waiting`), and whether one email belongs to a
flood from one sender or one domain (`max_per_sender_per_hour`, `max_per_domain_per_hour`),
which then goes to the account's `flood_queue` instead of crowding out everyone else."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from ace_email.contracts.mailbox import AccountPolicy, RecentEmail

FLOOD_WINDOW = timedelta(hours=1)
RECENT_KEPT = 2000  # bounds what continue-as-new carries; a flood is found well before


def room_for(waiting: int, policy: AccountPolicy) -> int | None:
    """How many new emails intake may take now; None without a `max_waiting`."""
    if policy.max_waiting is None:
        return None
    return max(policy.max_waiting - waiting, 0)


def throttle_reason(waiting: int, policy: AccountPolicy) -> str:
    return (
        f"{waiting} of the account's contacts wait (max_waiting {policy.max_waiting}); new "
        f"mail stays in {policy.inbox_folder} until fewer wait"
    )


def limits_floods(policy: AccountPolicy) -> bool:
    limited = policy.max_per_sender_per_hour or policy.max_per_domain_per_hour
    return bool(limited) and policy.flood_queue is not None


def remember(recent: Sequence[RecentEmail], sender: str, now: datetime) -> list[RecentEmail]:
    """The last hour's emails, this one added; the oldest dropped beyond `RECENT_KEPT`."""
    kept = [r for r in recent if now - r.at < FLOOD_WINDOW]
    kept.append(RecentEmail(sender=sender.lower(), at=now))
    return kept[-RECENT_KEPT:]


def flood_reason(recent: Sequence[RecentEmail], sender: str, policy: AccountPolicy) -> str | None:
    """Why the latest email of `sender` (already in `recent`) is part of a flood; None if not."""
    sender = sender.lower()
    per_sender = policy.max_per_sender_per_hour
    if per_sender is not None:
        count = sum(1 for r in recent if r.sender == sender)
        if count > per_sender:
            return (
                f"flood: {count} emails from {sender} within the hour "
                f"(max_per_sender_per_hour {per_sender})"
            )
    per_domain = policy.max_per_domain_per_hour
    domain = sender.rpartition("@")[2]
    if per_domain is not None and domain:
        count = sum(1 for r in recent if r.sender.rpartition("@")[2] == domain)
        if count > per_domain:
            return (
                f"flood: {count} emails from {domain} within the hour "
                f"(max_per_domain_per_hour {per_domain})"
            )
    return None
