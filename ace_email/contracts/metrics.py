"""ace-email's own metrics, a contract with the alert rules and the dashboard under deploy/:
their Prometheus names, what they count, their labels, and the short label values that free-text
reasons are reduced to (a label must come from a small set, never from an address or a subject).

Counters are counted by workflow code after the step they count has succeeded (the SDK skips
them while a workflow replays), so an activity's retries never count an email twice; errors of
mail servers are counted by the activity per failed attempt. Gauges describe the state of the
whole installation: every worker samples and reports the same values (use `max by (...)`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    labels: tuple[str, ...] = ()


# Counters (the Prometheus exporter adds `_total`).
EMAILS_TAKEN_IN = Metric(
    "ace_emails_taken_in", "Emails claimed from an inbox and made a contact", ("account",)
)
EMAILS_QUARANTINED = Metric(
    "ace_emails_quarantined", "Emails moved to quarantine, by reason", ("account", "reason")
)
AUTO_REPLIES_SENT = Metric("ace_auto_replies_sent", "Automatic replies sent", ("account",))
AUTO_REPLIES_SUPPRESSED = Metric(
    "ace_auto_replies_suppressed",
    "Automatic replies not sent, by reason",
    ("account", "reason"),
)
DELIVERIES = Metric(
    "ace_deliveries",
    "Contacts given to an agent: external (to the agent's mailbox) or built-in",
    ("mode",),
)
DELIVERY_REPORTS = Metric(
    "ace_delivery_reports",
    "Delivery reports on the account's own mail, by kind (bounce, delay, feedback, delivered) "
    "and what it was sent as (autoreply, reply, delivery, forward)",
    ("account", "kind", "sent_as"),
)
AGENT_MAIL_BOUNCES = Metric(
    "ace_agent_mail_bounces",
    "Deliveries to an agent's own mailbox that bounced: the agent was set not-ready",
    ("account",),
)
CONTACTS_CLOSED = Metric("ace_contacts_closed", "Contacts that ended, by final status", ("status",))
MAIL_ERRORS = Metric(
    "ace_mail_errors",
    "Failed attempts to talk to a mail server, by protocol and kind",
    ("account", "protocol", "kind"),
)

# Gauges, sampled from the queues', agents' and mailboxes' workflows.
CONTACTS_WAITING = Metric("ace_contacts_waiting", "Contacts waiting in a queue", ("queue",))
OLDEST_WAIT = Metric(
    "ace_queue_oldest_wait_seconds", "How long the oldest waiting contact has waited", ("queue",)
)
QUEUE_ANSWER_WITHIN = Metric(
    "ace_queue_answer_within_seconds",
    "The longest wait the queue promises (answer_within_minutes, else its overflow time; 0: none)",
    ("queue",),
)
AGENTS_READY = Metric("ace_agents_ready", "Agents ready for contacts")
AGENTS_BUSY = Metric("ace_agents_busy", "Agents holding at least one contact")
MAILBOX_LAG = Metric(
    "ace_mailbox_lag_seconds",
    "The longest an email may have waited in the inbox without becoming a contact",
    ("account",),
)
MAILBOX_HEALTHY = Metric(
    "ace_mailbox_healthy", "1 while the account's poll loop polls successfully", ("account",)
)
MAILBOX_THROTTLED = Metric(
    "ace_mailbox_throttled",
    "1 while the account's intake pauses: max_waiting of its contacts wait",
    ("account",),
)
MAILBOX_WAITING = Metric(
    "ace_mailbox_waiting", "Emails in the inbox at the last poll, not yet contacts", ("account",)
)

COUNTERS = (
    EMAILS_TAKEN_IN,
    EMAILS_QUARANTINED,
    AUTO_REPLIES_SENT,
    AUTO_REPLIES_SUPPRESSED,
    DELIVERIES,
    CONTACTS_CLOSED,
    MAIL_ERRORS,
    DELIVERY_REPORTS,
    AGENT_MAIL_BOUNCES,
)
GAUGES = (
    CONTACTS_WAITING,
    OLDEST_WAIT,
    QUEUE_ANSWER_WITHIN,
    AGENTS_READY,
    AGENTS_BUSY,
    MAILBOX_LAG,
    MAILBOX_HEALTHY,
    MAILBOX_THROTTLED,
    MAILBOX_WAITING,
)

# Free-text reasons, reduced to label values: (words the reason starts with or holds, label).
_QUARANTINE_REASONS = (
    ("too large", "too_large"),
    ("analysis failed", "analysis_failed"),
    ("empty message", "empty"),
    ("not an email message", "not_email"),
)
_SUPPRESSED_REASONS = (
    ("automatic replies are off", "off"),
    ("automatic mail", "automatic_mail"),
    ("not sent: spam", "spam"),
    ("sends no automatic reply", "rule"),
    ("names no sender address", "no_sender"),
    ("is not a usable address", "bad_address"),
    ("one of our own addresses", "own_address"),
    ("got an automatic reply at", "per_sender"),
    ("automatic replies per hour", "hourly_cap"),
    ("is undeliverable until", "undeliverable"),
    ("gets none", "channel"),
    ("failed:", "failed"),
)


def quarantine_label(reason: str) -> str:
    """`too_large`, `analysis_failed`, `empty`, `not_email`, or `rule` (a rule's own words)."""
    lowered = reason.lower()
    return next(
        (label for words, label in _QUARANTINE_REASONS if lowered.startswith(words)), "rule"
    )


def suppressed_label(reason: str) -> str:
    """Why an automatic reply was not sent, as one of a dozen label values (else `other`)."""
    lowered = reason.lower()
    return next((label for words, label in _SUPPRESSED_REASONS if words in lowered), "other")
