"""Fixtures: a real Temporal dev server, a real IMAP/SMTP server, a worker — all on loopback."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ace_email.config.settings import Settings
from ace_email.contracts import search_attributes as sa
from ace_email.mail.imap_pool import ImapPool
from ace_email.temporal.client import encrypted_converter
from ace_email.temporal.codec import EncryptionCodec, new_key_text, parse_keyring
from devtools.companymail import stack as companymail
from devtools.companymail.stack import CompanyMail
from devtools.localmail import LocalMailServer, MailServerThread, MailUser
from tests.support import (
    AGENT_EMAIL,
    CUSTOMER,
    PASSWORD,
    SECOND_AGENT_EMAIL,
    MailStack,
    account_settings,
    free_port,
)
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


def session_converter() -> DataConverter:
    """Plain pydantic payloads; with ACE_TEST_ENCRYPTED=1 every payload is encrypted with a key
    made for this session, which worker.py and starter.py processes get from the environment."""
    if not os.environ.get("ACE_TEST_ENCRYPTED"):
        return pydantic_data_converter
    key = new_key_text()
    os.environ["ACE_TEST_PAYLOAD_KEY"] = key
    os.environ["ACE_EMAIL_TEMPORAL__ENCRYPTION__KEY_ID"] = "test"
    os.environ["ACE_EMAIL_TEMPORAL__ENCRYPTION__KEY_ENV"] = "ACE_TEST_PAYLOAD_KEY"
    return encrypted_converter(EncryptionCodec(parse_keyring(key, "test"), "test"))


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        data_converter=session_converter(),
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


MAIL_USERS = ("support@example.com", CUSTOMER, AGENT_EMAIL, SECOND_AGENT_EMAIL)


@pytest.fixture(scope="session")
def company_mail() -> Iterator[CompanyMail]:
    """One Dovecot + Postfix pair for the session (fresh mailboxes per test). Its directory is
    not under pytest's base temp, which only root may enter: Dovecot and Postfix work in it as
    the `mail`, `dovecot` and `postfix` users."""
    reason = companymail.unavailable_reason()
    if reason is not None:
        if os.environ.get("COMPANYMAIL_REQUIRED"):
            pytest.fail(f"the company mail stack (Dovecot + Postfix) is required: {reason}")
        pytest.skip(f"the company mail stack (Dovecot + Postfix) cannot run: {reason}")
    companymail.stop_abandoned(Path(tempfile.gettempdir()), "ace-companymail-")
    directory = Path(tempfile.mkdtemp(prefix="ace-companymail-"))
    ports = companymail.Ports(imap=free_port(), smtp=free_port(), lmtp=free_port())
    users = [companymail.User(address, PASSWORD) for address in MAIL_USERS]
    try:
        with CompanyMail(directory, ports, users) as stack:
            yield stack
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["embedded", "company"])
async def mail(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MailStack]:
    """The mail servers of an end-to-end test: the embedded one, and the company's Dovecot and
    Postfix. A test marked `embedded_only` runs on the embedded one alone."""
    support = MAIL_USERS[0]
    if request.param == "company":
        if request.node.get_closest_marker("embedded_only"):
            pytest.skip("embedded mail server only")
        company: CompanyMail = request.getfixturevalue("company_mail")
        company.new_mailboxes(uuid.uuid4().hex)
        ports = company.ports
        yield MailStack(None, ports.imap, ports.smtp, support, company=company)
        return
    imap_port, smtp_port = free_port(), free_port()
    users = [MailUser(address, PASSWORD) for address in MAIL_USERS]
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
