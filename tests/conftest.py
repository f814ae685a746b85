"""Fixtures: a real Temporal dev server, a real IMAP/SMTP server, a worker — all on loopback."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ace_email import search_attributes as sa
from ace_email.localmail import LocalMailServer, MailServerThread, MailUser
from ace_email.settings import Settings
from activities.imap_session import ImapPool
from tests.support import AGENT_EMAIL, CUSTOMER, PASSWORD, MailStack, account_settings, free_port
from worker import ACTIVITY_THREADS, build_worker

BIN = Path(sys.executable).parent
TEMPORAL_CLI = BIN / "temporal"
TEST_SERVER = BIN / "temporal-test-server"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

# Lower latency between a workflow step and the next (about 240 ms to 34 ms per step).
DEV_SERVER_ARGS = [
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=1000",
    "--dynamic-config-value",
    "frontend.enableUpdateWorkflowExecution=true",
]


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
        dev_server_extra_args=DEV_SERVER_ARGS,
        ip="127.0.0.1",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    config = temporal_env.client.service_client.config
    return config.target_host


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
async def mail(tmp_path: Path) -> AsyncIterator[MailStack]:
    imap_port, smtp_port = free_port(), free_port()
    support = "support@example.com"
    users = [MailUser(address, PASSWORD) for address in (support, CUSTOMER, AGENT_EMAIL)]
    server = LocalMailServer(tmp_path / "mail", users, imap_port=imap_port, smtp_port=smtp_port)
    async with MailServerThread(server):
        yield MailStack(server=server, imap_port=imap_port, smtp_port=smtp_port, support=support)


@dataclass
class Pipeline:
    """Settings for one test's account, and the Temporal client that drives it."""

    settings: Settings
    client: Client
    mail: MailStack

    @property
    def account(self) -> str:
        return self.settings.accounts[0].name


@pytest.fixture
def settings(mail: MailStack, temporal_address: str) -> Settings:
    return account_settings(
        name=f"support-{uuid.uuid4().hex[:8]}",
        stack=mail,
        temporal_address=temporal_address,
        namespace="default",
        task_queue=f"ace-email-{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture
async def pipeline(settings: Settings, client: Client, mail: MailStack) -> AsyncIterator[Pipeline]:
    """A worker running in this process for the test's own task queue."""
    pool = ImapPool(settings)
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        worker: Worker = build_worker(client, settings, pool, executor)
        async with worker:
            yield Pipeline(settings=settings, client=client, mail=mail)
        pool.close_all()
