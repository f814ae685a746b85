"""Activity options: timeouts and retry policies, chosen for what each activity talks to.

- IMAP: transient faults (server restart, network) are retried for as long as it takes,
  backing off to a minute; a wrong password is retried too, slowly, so the mailbox recovers by
  itself once an operator fixes it. Faults in the configuration are permanent.
- SMTP: 4xx and connection faults are retried with back-off; a 5xx answer is permanent.
- Reply ledger: a reservation is milliseconds of work on Temporal itself, so it is retried
  soon (at most 5 s apart); the activity itself asks a busy ledger again within 20 s.

Activity timeouts follow the account's configured network timeouts: an activity that has
not finished within a few of them is presumed lost with its worker and is retried elsewhere.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from ace_email.contracts.mailbox import AccountPolicy

PERMANENT_FAULTS = ["ConfigError", "MessageMissing", "SmtpRejected", "NotDeliverable"]

IMAP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    non_retryable_error_types=PERMANENT_FAULTS,
)

# A poll is retried briefly for a blip; a refused login is not (each try is a failed login the
# server may count against the account): the poll loop's own back-off takes over.
POLL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=[*PERMANENT_FAULTS, "ImapLoginFailed"],
)

# The IDLE watch of an inbox: a dropped session is replaced soon, a server that stays away is
# tried again at most every two minutes (as a failing poll is); the timer polls meanwhile.
IDLE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=PERMANENT_FAULTS,
)
# A watch heartbeats every couple of seconds (the SDK sends one at most every 8 s, which is
# also how soon it learns it was cancelled); one silent this long is presumed lost with its
# worker and is given to another.
IDLE_HEARTBEAT = timedelta(seconds=10)
IDLE_WATCH_TIMEOUT = timedelta(minutes=30)

SMTP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=PERMANENT_FAULTS,
)

LEDGER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    non_retryable_error_types=PERMANENT_FAULTS,
)
LEDGER_TIMEOUT = timedelta(seconds=30)

# Routing activities talk to Temporal alone (signals, updates, queries): retried soon and for
# as long as it takes, so a restarting server delays routing and loses nothing. One lost with
# its worker is tried again after 20 s; a batch of 200 routing decisions takes about a second.
ROUTING_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=PERMANENT_FAULTS,
)
ROUTING_TIMEOUT = timedelta(seconds=20)
# Counting waiting contacts for `max_waiting`: a few quick tries; unanswered, intake goes on.
GUARD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5), maximum_attempts=3
)

# A local activity (the claim of a contact analysed at the poll, its calls to queues and
# agents) is retried within its workflow task this long; after that, on a timer, so a long
# outage does not hold the contact's task open and its signals and updates wait.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=10)

AUTO_REPLY_GIVE_UP = timedelta(hours=24)
# A failing mailbox is tried again after its poll interval, doubled per failure up to this:
# fixed, it is polled again within two minutes (or at once with `starter.py poll-now`), and a
# wrong password costs the server one failed login per two minutes.
POLL_BACKOFF_MAX = timedelta(minutes=2)
ASSIGN_ANSWER_WAIT = timedelta(seconds=30)


def poll_backoff(poll_interval: timedelta, failures: int) -> timedelta:
    """The wait before the next poll after `failures` failed polls in a row."""
    if not failures:
        return poll_interval
    backoff: timedelta = poll_interval * 2 ** min(failures, 16)
    return min(backoff, max(POLL_BACKOFF_MAX, poll_interval))


def imap_timeout(policy: AccountPolicy) -> timedelta:
    """For one IMAP activity: a handful of commands, each bounded by the socket timeout."""
    return timedelta(seconds=policy.imap_timeout_seconds * 4)


def smtp_timeout(policy: AccountPolicy) -> timedelta:
    """For one send with its IMAP bookkeeping."""
    return timedelta(seconds=policy.smtp_timeout_seconds * 2 + policy.imap_timeout_seconds * 2)
