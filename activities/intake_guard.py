"""How many of an account's contacts wait, through Temporal's visibility: the poll loop's
guard against a flood of mail (`max_waiting`)."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client

from ace_email.contracts import search_attributes as sa
from ace_email.contracts.contact import ContactStatus
from ace_email.contracts.mailbox import WaitingCount
from ace_email.temporal.calls import RPC_TIMEOUT

WAITING = (ContactStatus.RECEIVED, ContactStatus.QUEUED, ContactStatus.OFFERED)


def waiting_query(account: str) -> str:
    """Contacts of `account` not yet with an agent: received, queued or offered."""
    statuses = ", ".join(f'"{status.value}"' for status in WAITING)
    safe = account.replace('"', "").replace("\\", "")
    return (
        f'WorkflowType="ContactWorkflow" AND {sa.ACCOUNT.name}="{safe}" '
        f'AND {sa.STATUS.name} IN ({statuses}) AND ExecutionStatus="Running"'
    )


class IntakeGuardActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn
    async def count_waiting(self, request: WaitingCount) -> int:
        """The account's contacts that wait now; visibility lags the contacts by a moment,
        which the poll's own cap on new messages makes up for."""
        counted = await self._client.count_workflows(
            waiting_query(request.account), rpc_timeout=RPC_TIMEOUT
        )
        return counted.count
