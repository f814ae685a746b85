"""Timeouts and retry policies, chosen for what each activity talks to.

- IMAP: transient faults (server restart, network) are retried for as long as it takes,
  backing off to a minute; a wrong password is retried too, slowly, so the mailbox recovers by
  itself once an operator fixes it. Faults in the configuration are permanent.
- SMTP: 4xx and connection faults are retried with back-off; a 5xx answer is permanent.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

PERMANENT_FAULTS = ["ConfigError", "MessageMissing", "SmtpRejected"]

IMAP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    non_retryable_error_types=PERMANENT_FAULTS,
)

POLL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=PERMANENT_FAULTS,
)

SMTP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=PERMANENT_FAULTS,
)

POLL_TIMEOUT = timedelta(minutes=2)
CLAIM_TIMEOUT = timedelta(minutes=5)
SETTLE_TIMEOUT = timedelta(minutes=1)
AUTO_REPLY_TIMEOUT = timedelta(minutes=2)
AUTO_REPLY_GIVE_UP = timedelta(hours=24)
DELIVER_TIMEOUT = timedelta(minutes=10)

POLL_BACKOFF_MAX = timedelta(minutes=5)
ASSIGN_ANSWER_WAIT = timedelta(seconds=30)
