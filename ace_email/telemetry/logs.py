"""Logging set up the same way by every process: `--log-level` and `--log-format text|json`.
JSON is one object a line with the time, level, logger and message, plus the account, contact
id and workflow id where the record is about one (an activity's or a workflow's log line, or a
line that names them in `extra`). Messages never carry a body, an address list or a secret; the
formatter adds only identifiers."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter
from temporalio import activity, workflow

from ace_email.contracts import ids

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")
_RESERVED = {"temporal_activity", "temporal_workflow", "activity_info", "workflow_info"}


def add_logging_arguments(parser: argparse.ArgumentParser, default_level: str = "INFO") -> None:
    parser.add_argument(
        "--log-level",
        default=default_level,
        help=f"DEBUG, INFO, WARNING or ERROR ({default_level})",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text (default) or json: one object a line, for a log collector",
    )


def configure_logging(level: str, log_format: str = "text") -> None:
    """The root logger, to stderr, in the chosen format (replacing any earlier setup)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(AceJsonFormatter())
        # The identifiers go into fields of their own, not into the message's text.
        activity.logger.activity_info_on_message = False
        workflow.logger.workflow_info_on_message = False
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def identifiers(record: logging.LogRecord) -> dict[str, str]:
    """`workflow_id`, `contact_id` and `account` of what the record is about, where known."""
    found: dict[str, str] = {}
    for key in ("account", "contact_id", "workflow_id"):
        value = getattr(record, key, None)
        if isinstance(value, str) and value:
            found[key] = value
    details: Any = getattr(record, "temporal_activity", None) or getattr(
        record, "temporal_workflow", None
    )
    if isinstance(details, dict) and details.get("workflow_id"):
        found.setdefault("workflow_id", str(details["workflow_id"]))
    elif "workflow_id" not in found and activity.in_activity():
        found["workflow_id"] = activity.info().workflow_id or ""
    workflow_id = found.get("workflow_id", "")
    if workflow_id.startswith("contact-"):
        found.setdefault("contact_id", workflow_id)
    account = ids.account_of_workflow(workflow_id)
    if account:
        found.setdefault("account", account)
    return {key: value for key, value in found.items() if value}


class AceJsonFormatter(JsonFormatter):
    """python-json-logger's formatter, with ace-email's identifiers and nothing of Temporal's
    extras but them."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        for key in _RESERVED:
            log_data.pop(key, None)
        log_data.update(identifiers(record))
