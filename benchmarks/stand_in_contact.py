"""A stand-in for ContactWorkflow in the routing benchmark: no mailbox, the same routing.

It waits in a queue through the real protocol (the `enqueue` and `release` routing
activities, the `route` update), "delivers" with one real SMTP send to a sink, holds the
contact a moment as an agent would, and gives the agent's place back. Without a queue it is
routed directly by the benchmark (the baseline: the same contact protocol, no router).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import aiosmtplib

    from ace_email.contracts import ids
    from ace_email.contracts.contact import RouteAnswer, RouteRequest
    from ace_email.contracts.queues import Release, Waiting
    from activities.routing import EnqueueRequest, RoutingActivities
    from workflows import activity_options
    from workflows.messaging import signal_if_running


class StandInInput(BaseModel):
    contact_id: str
    routing_task_queue: str
    queue: str | None = None
    priority: int = 0
    hold_seconds: float = 0.5
    smtp_port: int = 0


class StandInResult(BaseModel):
    agent_id: str
    routed_at: datetime
    delivered_at: datetime
    released_at: datetime


class Delivery(BaseModel):
    result: StandInResult | None = None


class SendRequest(BaseModel):
    smtp_port: int
    to: str
    contact_id: str


@activity.defn
async def send_to_agent(request: SendRequest) -> None:
    message = (
        f"From: support@example.com\r\nTo: {request.to}\r\nSubject: {request.contact_id}\r\n"
        "\r\nA contact for you.\r\n"
    )
    await aiosmtplib.send(
        message.encode(),
        sender="support@example.com",
        recipients=[request.to],
        hostname="127.0.0.1",
        port=request.smtp_port,
    )


@workflow.defn
class StandInContact:
    @workflow.init
    def __init__(self, job: StandInInput) -> None:
        self._route: RouteRequest | None = None
        self._delivered: StandInResult | None = None

    @workflow.run
    async def run(self, job: StandInInput) -> StandInResult:
        now = workflow.now()
        if job.queue is not None:
            await workflow.execute_activity_method(
                RoutingActivities.enqueue,
                EnqueueRequest(
                    queue=job.queue,
                    entry=Waiting(
                        contact_id=job.contact_id,
                        round=1,
                        priority=job.priority,
                        waiting_since=now,
                        entered_at=now,
                    ),
                ),
                task_queue=job.routing_task_queue,
                start_to_close_timeout=activity_options.ROUTING_TIMEOUT,
                retry_policy=activity_options.ROUTING_RETRY,
            )
        await workflow.wait_condition(lambda: self._route is not None)
        route = self._route
        assert route is not None
        routed_at = workflow.now()
        await workflow.execute_activity(
            send_to_agent,
            SendRequest(
                smtp_port=job.smtp_port, to=route.agent_email or "", contact_id=job.contact_id
            ),
            start_to_close_timeout=timedelta(seconds=30),
        )
        delivered_at = workflow.now()
        self._delivered = StandInResult(
            agent_id=route.agent_id,
            routed_at=routed_at,
            delivered_at=delivered_at,
            released_at=delivered_at,
        )
        if job.hold_seconds:
            await workflow.sleep(job.hold_seconds)
        if job.queue is not None:
            release = Release(contact_id=job.contact_id)
            await signal_if_running(ids.agent_workflow_id(route.agent_id), "release", release)
        return StandInResult(
            agent_id=route.agent_id,
            routed_at=routed_at,
            delivered_at=delivered_at,
            released_at=workflow.now(),
        )

    @workflow.query
    def delivery(self) -> Delivery:
        return Delivery(result=self._delivered)

    @workflow.update
    def route(self, request: RouteRequest) -> RouteAnswer:
        if self._route is not None:
            return RouteAnswer(accepted=self._route.agent_id == request.agent_id)
        self._route = request
        return RouteAnswer(accepted=True)
