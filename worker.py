"""The email server: runs every workflow and activity of ace-email on one task queue.

Run any number of these, on any machines; Temporal spreads mailboxes and contacts over them.
SIGTERM or SIGINT shuts a worker down gracefully: in-flight activities get time to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from ace_email.analysis import language
from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings, load_settings
from ace_email.exiting import run_then_exit
from ace_email.mail.imap_pool import ImapPool
from ace_email.telemetry.logs import add_logging_arguments, configure_logging
from ace_email.telemetry.prometheus import prometheus_runtime
from ace_email.telemetry.sampler import StateGauges, sample_forever
from ace_email.telemetry.tracing import tracing
from ace_email.temporal.client import TemporalUnavailable, connect, ensure_search_attributes
from activities import failure_logs
from activities.auto_reply_ledger import LedgerActivities, ReplyLedger
from activities.follow_ups import FollowUpActivities
from activities.intake_guard import IntakeGuardActivities
from activities.mailbox import MailboxActivities
from activities.mailbox_watch import WatchActivities
from activities.outbound import OutboundActivities
from activities.routing import RoutingActivities
from workflows.agent import AgentWorkflow
from workflows.auto_reply_ledger import AutoReplyLedgerWorkflow
from workflows.contact import ContactWorkflow
from workflows.mailbox import MailboxWorkflow
from workflows.queue import QueueWorkflow

WORKFLOWS = [
    MailboxWorkflow,
    ContactWorkflow,
    AutoReplyLedgerWorkflow,
    QueueWorkflow,
    AgentWorkflow,
]

log = logging.getLogger("ace_email.worker")

ACTIVITY_THREADS = 32
# Workflows kept in memory between their tasks. A contact is mostly waiting: one evicted is
# replayed from its short history when its queue or agent next speaks to it. 500 keeps a
# worker with a 10,000-email backlog in flight under 500 MB (benchmarks/backlog.py).
MAX_CACHED_WORKFLOWS = 500

# ace-email's own modules are imported once, outside the sandbox, not again for every workflow
# run: re-running the contact workflow's modules cost ~18 ms of the interpreter per contact,
# half of the worker's time at intake. The sandbox still guards every other import and its
# runtime restrictions; the replay and workflow tests run ace-email's workflow code in the
# full sandbox (STRICT_SANDBOX), so a non-deterministic call in it fails there.
OWN_MODULES = ("workflows", "activities", "ace_email")
SHARED_SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(*OWN_MODULES)
)
STRICT_SANDBOX = SandboxedWorkflowRunner()


def build_worker(
    client: Client,
    settings: Settings,
    pool: ImapPool,
    executor: ThreadPoolExecutor,
    *,
    workflow_runner: SandboxedWorkflowRunner = SHARED_SANDBOX,
) -> Worker:
    """Every workflow and activity of ace-email on the configured task queue; activity
    failures this process logs read as one line each (see activities/failure_logs.py)."""
    mailbox = MailboxActivities(pool, settings)
    reply_ledger = ReplyLedger(client, settings.temporal.task_queue)
    outbound = OutboundActivities(settings, pool, reply_ledger)
    ledger = LedgerActivities(reply_ledger)
    follow_ups = FollowUpActivities(client, settings)
    guard = IntakeGuardActivities(client)
    routing = RoutingActivities(client, settings)
    watches = WatchActivities(client, settings)
    failure_logs.install()
    threading.Thread(target=language.preload, name="language-model", daemon=True).start()
    return Worker(
        client,
        task_queue=settings.temporal.task_queue,
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner,
        activities=[
            mailbox.poll_mailbox,
            watches.watch_mailbox,
            mailbox.claim_message,
            mailbox.claim_analysed,
            mailbox.archive_message,
            mailbox.move_message,
            mailbox.settle_duplicate,
            outbound.send_auto_reply,
            outbound.deliver_to_agent,
            outbound.send_reply,
            outbound.redirect_message,
            ledger.reserve_auto_reply,
            ledger.suppress_addresses,
            follow_ups.find_follow_up,
            guard.count_waiting,
            routing.enqueue,
            routing.dispatch,
            routing.agent_views,
            routing.hold,
            routing.wait_for_agent,
            routing.tell_overflow,
            routing.held_elsewhere,
        ],
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_THREADS,
        max_cached_workflows=MAX_CACHED_WORKFLOWS,
        graceful_shutdown_timeout=timedelta(seconds=20),
    )


async def _register_search_attributes(client: Client, namespace: str) -> None:
    """Workflows upsert ace-email's search attributes: a worker that starts before
    `starter.py sync` registers them first where it may (a cluster may allow only operators)."""
    try:
        added = await ensure_search_attributes(client, namespace)
    except RPCError as exc:
        log.warning(
            "cannot register search attributes in namespace %s (%s); run `starter.py sync`",
            namespace,
            exc.message,
        )
        return
    for name in added:
        log.info("search attribute %s registered", name)


async def run(settings: Settings, client: Client | None = None) -> None:
    """Connect (with the metrics runtime and the tracing interceptor where configured), run
    until SIGTERM or SIGINT, then shut down gracefully."""
    listen = settings.metrics.prometheus_listen
    runtime = prometheus_runtime(listen) if listen else None
    traces = tracing(settings.tracing)
    client = client or await connect(
        settings.temporal, runtime=runtime, interceptors=traces.interceptors
    )
    await _register_search_attributes(client, settings.temporal.namespace)
    pool = ImapPool(settings)
    sampler: asyncio.Task[None] | None = None
    if runtime is not None:
        gauges = StateGauges(runtime.metric_meter)
        sampler = asyncio.create_task(sample_forever(client, settings, gauges))
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS, thread_name_prefix="imap") as executor:
        worker = build_worker(client, settings, pool, executor)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "worker on task queue %s at %s: %d account(s)%s%s",
            settings.temporal.task_queue,
            settings.temporal.address,
            len(settings.accounts),
            f"; metrics at http://{listen}/metrics" if listen else "",
            f"; traces to {settings.tracing.otlp_endpoint}" if traces.interceptors else "",
        )
        async with worker:
            await stop.wait()
            log.info("shutting down gracefully")
        if sampler is not None:
            sampler.cancel()
        pool.close_all()
    traces.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", help="TOML configuration (default: $ACE_EMAIL_CONFIG or ./ace-email.toml)"
    )
    add_logging_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        settings = load_settings(args.config)
        settings.require_logins()
        asyncio.run(run(settings))
    except ConfigError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    except TemporalUnavailable as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return exc.exit_status
    return 0


if __name__ == "__main__":
    run_then_exit(main)
