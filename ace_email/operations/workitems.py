"""Work items and social contacts: created by `starter.py workitem create` or the HTTP intake
endpoint, they become contacts like any email.

The text is stored as a document in the account's work-item folder (the claim check, as for
email); the contact carries only its reference. A submission names its source's id
(`external_id`): the contact id is made from it, so sending the same item twice, or again
after a timeout, creates one contact.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from ace_email.compose.messages import build_work_item
from ace_email.config.accounts import AccountSettings
from ace_email.config.base import EmailAddress
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts import search_attributes as sa
from ace_email.contracts.base import Channel
from ace_email.contracts.contact import ContactInput, ContactStatus, WorkItem
from ace_email.contracts.message import MessageRef
from ace_email.mail.errors import ImapError
from ace_email.mail.imap import quote_string
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations.common import Refused
from ace_email.temporal.calls import RPC_TIMEOUT

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _printable(value: str) -> str:
    if _CONTROL.search(value) or "\n" in value:
        raise ValueError("must be one line without control characters")
    return value


OneLine = Annotated[str, AfterValidator(_printable)]


class WorkItemRequest(BaseModel):
    """What a web form, a social-media connector or the command line submits."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    queue: str = Field(min_length=1, max_length=100)
    subject: OneLine = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, description="the text; at most intake.max_body_kb")
    priority: int = Field(default=0, ge=-100, le=100)
    reply_to: EmailAddress | None = None
    channel: Literal["workitem", "social"] = "workitem"
    external_id: OneLine | None = Field(
        default=None, min_length=1, max_length=200, description="the source's own id"
    )
    skills: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(
        default=[], max_length=20
    )
    sender_name: OneLine = Field(default="", max_length=100)


class WorkItemCreated(BaseModel):
    contact_id: str
    created: bool = Field(description="false: this external id had its contact already")
    reference: str
    queue: str
    channel: str


class WorkItemInvalid(Exception):
    """A submission that cannot become a contact: each problem names its field."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))


def parse_request(data: object, settings: Settings | None = None) -> WorkItemRequest:
    """A submission as the model; WorkItemInvalid names every field at fault at once, those
    the configuration refuses (an unknown queue, say) beside those of the wrong form."""
    problems: list[tuple[str, str]] = []
    try:
        request = WorkItemRequest.model_validate(data)
    except ValidationError as exc:
        problems = [
            (
                ".".join(str(part) for part in error["loc"]) or "(body)",
                error["msg"].removeprefix("Value error, "),
            )
            for error in exc.errors(include_url=False, include_input=False)
        ]
    if settings is not None and isinstance(data, dict):
        at_fault = {field for field, _ in problems}
        fields = {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}
        problems += [
            problem
            for problem in _configuration_problems(
                settings, fields.get("queue"), fields.get("channel", "workitem"), fields.get("body")
            )
            if problem[0] not in at_fault
        ]
    if problems:
        raise WorkItemInvalid(problems)
    return request


def check_request(settings: Settings, request: WorkItemRequest) -> AccountSettings:
    """The account that will own it; WorkItemInvalid where the configuration does not allow it."""
    problems = _configuration_problems(settings, request.queue, request.channel, request.body)
    account = settings.account_for_queue(request.queue)
    if problems or account is None:
        raise WorkItemInvalid(problems)
    return account


def _configuration_problems(
    settings: Settings, queue: object, channel: object, body: object
) -> list[tuple[str, str]]:
    """What the configuration refuses of these fields (each checked where it is a string)."""
    problems: list[tuple[str, str]] = []
    if isinstance(queue, str) and queue:
        queues = settings.queue_names()
        if queue not in queues:
            known = ", ".join(queues) or "none"
            problems.append(("queue", f"unknown queue {queue!r} (known: {known})"))
        elif settings.account_for_queue(queue) is None:
            problems.append(("queue", f"no account answers for queue {queue!r}"))
        elif isinstance(channel, str) and channel in ("workitem", "social"):
            channels = [c.value for c in settings.queue_settings(queue).channels]
            if channel not in channels:
                problems.append(
                    (
                        "channel",
                        f"queue {queue!r} takes {', '.join(channels)}, not {channel} (its "
                        "`channels` in the configuration)",
                    )
                )
    limit = settings.intake.max_body_kb * 1024
    if isinstance(body, str) and len(body.encode()) > limit:
        problems.append(
            ("body", f"{len(body.encode())} bytes; at most {limit} (intake.max_body_kb)")
        )
    return problems


def work_item_key(account: str, request: WorkItemRequest) -> str:
    """The contact's key: from the source's id where given, else new each time."""
    if request.external_id is None:
        return uuid.uuid4().hex + uuid.uuid4().hex[:8]
    seed = f"{account}\0{request.channel}\0{request.external_id}"
    return hashlib.sha256(seed.encode()).hexdigest()


async def create_work_item(
    client: Client, settings: Settings, pool: ImapPool, request: WorkItemRequest
) -> WorkItemCreated:
    """One contact for one submission: stores the document, starts the contact."""
    account = check_request(settings, request)
    policy = settings.policy(account)
    key = work_item_key(account.name, request)
    contact_id = ids.contact_workflow_id(account.name, key)
    created = WorkItemCreated(
        contact_id=contact_id,
        created=False,
        reference=ids.contact_reference(key),
        queue=request.queue,
        channel=request.channel,
    )
    if await _exists(client, contact_id):
        return created
    message_id = ids.work_item_message_id(account.name, key, account.reply_from)
    raw = build_work_item(
        to_address=account.address,
        reply_to=request.reply_to,
        sender_name=request.sender_name,
        subject=request.subject,
        text=request.body,
        channel=request.channel,
        external_id=request.external_id,
        message_id=message_id,
        date=datetime.now(UTC),
    )
    try:
        ref = await asyncio.to_thread(store_document, pool, account, raw, message_id)
    except ImapError as exc:
        raise Refused(f"the work item could not be stored: {exc}") from None
    channel = Channel(request.channel)
    work_item = WorkItem(
        queue=request.queue,
        priority=request.priority,
        skills=request.skills,
        reply_to=request.reply_to,
        external_id=request.external_id,
    )
    label = "Work item" if channel is Channel.WORKITEM else "Social"
    who = request.sender_name or request.reply_to or "(no reply address)"
    try:
        await client.start_workflow(
            "ContactWorkflow",
            ContactInput(ref=ref, policy=policy, channel=channel, work_item=work_item),
            id=contact_id,
            task_queue=settings.temporal.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"{label} from {who}: {request.subject}",
            memo={"from": who, "subject": request.subject},
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.STATUS, ContactStatus.RECEIVED.value),
                    SearchAttributePair(sa.ACCOUNT, account.name),
                    SearchAttributePair(sa.QUEUE, request.queue),
                    SearchAttributePair(sa.REFERENCE, created.reference),
                    SearchAttributePair(sa.CHANNEL, channel.value),
                    SearchAttributePair(sa.MESSAGE_ID, message_id),
                ]
            ),
            rpc_timeout=RPC_TIMEOUT,
        )
    except WorkflowAlreadyStartedError:
        return created
    return created.model_copy(update={"created": True})


async def _exists(client: Client, contact_id: str) -> bool:
    try:
        await client.get_workflow_handle(contact_id).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def store_document(
    pool: ImapPool, account: AccountSettings, raw: bytes, message_id: str
) -> MessageRef:
    """Put the document in the work-item folder unless an earlier try did, and refer to it."""
    folder = account.imap.workitem_folder
    quoted = quote_string(message_id)
    with pool.session(account.name) as session:
        uidvalidity = session.select(folder, refresh=True)
        found = session.search(f"HEADER Message-ID {quoted}")
        if not found:
            session.append(folder, raw)
            uidvalidity = session.select(folder, refresh=True)
            found = session.search(f"HEADER Message-ID {quoted}")
        stored = session.fetch_one(found[0]) if found else None
        if stored is None or not stored.raw:
            raise ImapError(f"{account.name}: the stored work item {message_id} is not in {folder}")
        return stored.ref(account.name, folder, uidvalidity, message_id)
