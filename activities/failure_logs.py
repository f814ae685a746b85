"""How an activity's failure reads in a worker's log: a fault it describes (an SMTP refusal,
an IMAP server down, a bad setting) is one line with the activity, its workflow and the cause;
the traceback goes to DEBUG. Failures the activity marks benign (a poll that failed, which its
mailbox workflow logs once with the account) are left at DEBUG, where the SDK puts them."""

from __future__ import annotations

import asyncio
import logging

from temporalio.exceptions import ApplicationError

SDK_LOGGER = "temporalio.activity"


class OneLineFailures(logging.Filter):
    """Rewrites the SDK's "Completing activity as failed" record for an ApplicationError, and
    for a try cut short (cancelled past its time limit, or by a stopping worker)."""

    def filter(self, record: logging.LogRecord) -> bool:
        failure = record.exc_info[1] if record.exc_info else None
        cut_short = isinstance(failure, asyncio.CancelledError)
        if not (isinstance(failure, ApplicationError) or cut_short):
            return True
        if record.levelno < logging.WARNING:
            return True
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("the failure in full", exc_info=record.exc_info)
        details = getattr(record, "temporal_activity", None) or {}
        activity = details.get("activity_type", "an activity")
        workflow_id = details.get("workflow_id", "?")
        attempt = details.get("attempt", "?")
        if isinstance(failure, ApplicationError):
            record.msg = "%s for %s failed (attempt %s): %s: %s"
            record.args = (activity, workflow_id, attempt, failure.type or "error", failure.message)
        else:
            record.msg = (
                "%s for %s was cut short (attempt %s): past its time limit, its workflow moved "
                "on, or this worker is stopping; Temporal tries it again where still wanted"
            )
            record.args = (activity, workflow_id, attempt)
        record.exc_info = None
        record.exc_text = None
        return True


def install() -> None:
    """Once per worker process."""
    logger = logging.getLogger(SDK_LOGGER)
    if not any(isinstance(f, OneLineFailures) for f in logger.filters):
        logger.addFilter(OneLineFailures())
