"""Real-world mail from ../shared/corpus flows through: each email one contact or quarantined
with a reason, none lost, nothing wedged."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import pytest

from ace_email.analysis import mime
from ace_email.config.settings import Settings
from ace_email.contracts import search_attributes as sa
from ace_email.operations.common import contact_state
from ace_email.operations.registry import sync
from tests.conftest import CORPUS, Pipeline
from tests.support import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The account as deployed (30 s IMAP and 60 s SMTP timeouts): all 438 emails arrive at
    once, and the activities of a few hundred contacts queue for four IMAP sessions."""
    account = settings.accounts[0]
    account.imap = account.imap.model_copy(update={"timeout_seconds": 30.0})
    account.smtp = account.smtp.model_copy(update={"timeout_seconds": 60.0})
    return settings


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix not in (".tsv", ".md"))


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared corpus is not at {CORPUS}")
@pytest.mark.timeout(600)
async def test_corpus_mail_becomes_contacts_or_quarantine_and_none_is_lost(
    pipeline: Pipeline,
) -> None:
    mail, client = pipeline.mail, pipeline.client
    if mail.kind == "embedded":
        pytest.skip(
            "the corpus runs on Dovecot and Postfix: the embedded server re-reads a folder on "
            "every command, minutes for 438 emails at once"
        )
    files = corpus_files()[: int(os.environ.get("ACE_CORPUS_LIMIT", "100000"))]
    assert files
    for path in files:
        mail.deliver(mail.support, path.read_bytes())
    await sync(client, pipeline.settings)

    query = f'WorkflowType="ContactWorkflow" AND {sa.ACCOUNT.name}="{pipeline.account}"'

    async def settled() -> dict[str, int]:
        inbox = await mail.count(mail.support)
        assert inbox == 0, f"{inbox} still in the inbox"
        statuses: Counter[str] = Counter()
        async for execution in client.list_workflows(query):
            statuses[str(execution.typed_search_attributes.get(sa.STATUS))] += 1
        assert set(statuses) <= {"queued", "quarantined", "joined"}, statuses
        return dict(statuses)

    statuses = await eventually(settled, timeout=540, interval=2)
    contacts = sum(statuses.values())
    distinct = len({mime.message_key(path.read_bytes()) for path in files})
    archived = await mail.count(mail.support, "Archive")
    kept = sum([await mail.count(mail.support, f) for f in ("Processing", "Quarantine")])
    print(
        f"corpus: {len(files)} files, {distinct} distinct -> {statuses} contacts, "
        f"{kept} held, {archived} archived (duplicate copies, automatic follow-ups)"
    )
    assert contacts == distinct, "one workflow per distinct email"
    assert kept + archived == len(files), "every copy kept, none doubled"

    reasons: Counter[str] = Counter()
    async for execution in client.list_workflows(query + f' AND {sa.STATUS.name}="quarantined"'):
        state = await contact_state(client, execution.id)
        assert state.quarantine_reason
        reasons[state.quarantine_reason.split(":")[0]] += 1
    print(f"quarantine reasons: {dict(reasons)}")
    await asyncio.sleep(0)
