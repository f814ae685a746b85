"""Scale-out: the intake run of benchmarks/intake.py with 1 and with 2 `worker.py` processes on
the same task queue, beside the plain script on the same servers.

    .venv/bin/python benchmarks/scale_out.py [--emails 600] [--company]

Starts its own Temporal dev server (tuned as in `dev.py run`) and the embedded mail server, or
with `--company` Dovecot and Postfix, on free loopback ports. Each round puts N emails into the
inbox, starts the worker processes, waits until they poll the task queue, starts the account's
poll loop and stops the clock when every automatic reply is filed in Sent.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from ace_email.contracts import ids
from ace_email.exiting import run_then_exit
from ace_email.operations.registry import sync
from benchmarks.backlog import fill
from benchmarks.dev_server import start_dev_server
from benchmarks.intake import SUPPORT, mail_servers, plain_script
from benchmarks.machine import TUNED_SERVER, bench_account, machine_line, servers_named
from tests.support import MailStack, write_config

ROOT = Path(__file__).resolve().parents[1]


async def pollers(client: Client, task_queue: str) -> int:
    """How many worker identities poll the task queue for activities."""
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace="default",
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    return len({poller.identity for poller in described.pollers})


async def one_round(
    client: Client, stack: MailStack, emails: int, workers: int, directory: Path
) -> float:
    name = f"scale{workers}"
    settings = bench_account(
        stack, client.service_client.config.target_host, name, poll_interval=0.5
    )
    config = write_config(directory / f"{name}.toml", settings)
    await asyncio.to_thread(fill, stack, SUPPORT, emails, name)
    before = await stack.count(SUPPORT, "Sent")
    processes = [
        subprocess.Popen(
            [sys.executable, "worker.py", "--config", str(config)],
            cwd=ROOT,
            stdout=(directory / f"{name}-{n}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for n in range(workers)
    ]
    try:
        while await pollers(client, settings.temporal.task_queue) < workers:
            await asyncio.sleep(0.2)
        began = time.monotonic()
        await sync(client, settings)
        while await stack.count(SUPPORT, "Sent") - before < emails:
            await asyncio.sleep(0.25)
        seconds = time.monotonic() - began
        await client.get_workflow_handle(ids.mailbox_workflow_id(name)).signal("stop")
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
    return seconds


async def main(emails: int, company: bool) -> None:
    env = await start_dev_server()
    directory = Path(tempfile.mkdtemp(prefix="ace-scale-bench-"))
    rates: dict[int, float] = {}
    try:
        async with mail_servers(company, directory) as stack:
            await asyncio.to_thread(fill, stack, SUPPORT, emails, "baseline")
            raw_rate = emails / await asyncio.to_thread(plain_script, stack, emails)
            for workers in (1, 2):
                rates[workers] = emails / await one_round(
                    env.client, stack, emails, workers, directory
                )
    finally:
        await env.shutdown()
        shutil.rmtree(directory, ignore_errors=True)
    print(machine_line(servers_named(company), TUNED_SERVER, "worker.py processes"))
    print(f"baseline, a plain script (fetch, SMTP reply, move): {raw_rate:,.1f} emails/s")
    for workers, rate in rates.items():
        print(
            f"ace-email, {workers} worker process{'es' if workers > 1 else ''}: {emails} emails "
            f"waiting -> all queued with replies sent: {rate:,.1f} emails/s "
            f"({rate / raw_rate:.3f} of the plain script's rate)"
        )
    print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--emails", type=int, default=600)
    parser.add_argument("--company", action="store_true", help="on Dovecot + Postfix")
    args = parser.parse_args()
    run_then_exit(lambda: asyncio.run(main(args.emails, args.company)))
