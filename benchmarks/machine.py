"""What every benchmark says about where it ran, and the account its mail benchmarks use."""

from __future__ import annotations

import os
import platform

from ace_email.config.settings import Settings
from tests.support import MailStack, account_settings

TUNED_SERVER = "Temporal dev server in memory, tuned as in dev.py run"
# One sender writes every benchmark email: each must be answered, however many.
EVERY_EMAIL_ANSWERED: dict[str, object] = {
    "auto_reply_period_hours": 0,
    "auto_reply_cap_per_hour": 100_000,
}


def machine_line(*setting: str) -> str:
    """`machine: x86_64, Linux 6.x, 2 cores, python 3.11.7; <setting>; ...`."""
    parts = [
        f"machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} cores, python {platform.python_version()}",
        *setting,
    ]
    return "; ".join(parts)


def servers_named(company: bool) -> str:
    return "Dovecot + Postfix" if company else "the embedded mail server"


def bench_account(
    stack: MailStack,
    temporal_address: str,
    name: str,
    poll_interval: float,
    imap_extra: dict[str, object] | None = None,
) -> Settings:
    """One account on the benchmark's mail servers, on a task queue of its own."""
    return account_settings(
        name=name,
        stack=stack,
        temporal_address=temporal_address,
        namespace="default",
        task_queue=f"ace-email-bench-{name}",
        poll_interval=poll_interval,
        imap_extra=imap_extra,
        account_extra=EVERY_EMAIL_ANSWERED,
    )
