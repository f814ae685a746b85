"""Follow-ups and the messages that travel with a contact: an email that names an open contact
joins it (found by Message-ID, reference or sender); follow-ups go to the contact's agent or
wait with it; delivered ones move on with it to the next agent; second copies are archived."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts.contact import (
        ContactStatus,
        FollowUp,
        FollowUpQuery,
        FollowUpTarget,
    )
    from ace_email.contracts.mail_work import (
        ArchiveRequest,
        DeliverRequest,
        MoveRequest,
        SettleDuplicateRequest,
    )
    from ace_email.contracts.message import Analysis, MessageRef
    from activities.follow_ups import FollowUpActivities
    from activities.mailbox import MailboxActivities
    from activities.outbound import OutboundActivities
    from workflows.contact.base import (
        ALL_FOLLOW_UPS_MOVE_PATCH,
        FOLLOW_UPS_MOVE_PATCH,
        failure,
    )
from workflows.contact.bounces import BounceReports


class FollowUps(BounceReports):
    """A contact's thread: joining, passing on, moving and settling its messages."""

    async def _join_open_contact(self, analysis: Analysis) -> bool:
        """Join the open contact this email follows up, if there is one.

        A running contact is signalled and takes the email over. A contact delivered to an
        agent and ended gets this email delivered to the same agent from here. Automatic mail
        is archived and only recorded: it never changes a contact's state. A delivery report
        on one of the account's own messages joins the contact that sent it.
        """
        thread = [*analysis.references, *([analysis.in_reply_to] if analysis.in_reply_to else [])]
        if self._bounce_note is not None:
            thread.insert(0, self._bounce_note.message_id)
        if not (analysis.reference or thread):
            return False
        query = FollowUpQuery(
            account=self._policy.name,
            contact_id=self._state.id,
            sender=analysis.reply_address or "",
            reference=analysis.reference,
            message_ids=list(dict.fromkeys(thread)),
            within_days=self._policy.follow_up_days,
        )
        for _ in range(3):
            target = await self._ledger(
                FollowUpActivities.find_follow_up, query, "look for the contact this follows up"
            )
            if target is None:
                return False
            if await self._join(target, analysis):
                return True
        return False

    async def _join(self, target: FollowUpTarget, analysis: Analysis) -> bool:
        automatic = analysis.automatic or analysis.bounce is not None
        note = self._bounce_note
        if note is not None and target.contact_id != self._state.bounce_of:
            note = None  # found through the thread, not as the report's subject
        if target.running:
            try:
                await workflow.get_external_workflow_handle(target.contact_id).signal(
                    "follow_up",
                    FollowUp(
                        contact_id=self._state.id,
                        ref=self._ref,
                        sender=self._state.sender,
                        subject=analysis.subject,
                        automatic=automatic,
                        received_at=self._state.received_at,
                        bounce=note,
                    ),
                )
            except Exception:  # it ended since it was found: look again
                return False
            if automatic:
                await self._archive_own_message()
        elif automatic or target.agent_id is None or target.agent_email is None:
            await self._archive_own_message()
        else:
            delivered = await self._deliver_message(
                self._ref, target.agent_id, target.agent_email, contact_id=target.contact_id
            )
            if delivered is None:
                return False
        self._state.joined_to = target.contact_id
        self._state.agent = target.agent_id
        workflow.upsert_memo({"joined_to": target.contact_id})
        self._set_status(ContactStatus.JOINED)
        return True

    async def _file_report(self) -> bool:
        """A delivery report on a message of a contact no longer open: recorded as about that
        contact (`bounce_of`), archived and ended, never queued for an agent."""
        about = self._state.bounce_of
        if self._bounce_note is None or about is None:
            return False
        await self._archive_own_message()
        self._state.joined_to = about
        workflow.upsert_memo({"joined_to": about})
        self._set_status(ContactStatus.JOINED)
        return True

    async def _archive_own_message(self) -> None:
        archived = await self._imap(
            MailboxActivities.archive_message,
            ArchiveRequest(ref=self._ref, archive_folder=self._policy.archive_folder),
            "archive",
        )
        if archived is not None:
            self._ref = archived
            self._state.message = archived

    async def _deliver_follow_ups(self) -> None:
        """Follow-ups of a contact delivered to an agent's address go to that agent too.

        Called once the contact has left the queue. One closed in the built-in interface keeps
        its follow-ups where they are (recorded on it, their messages in processing)."""
        if self._state.status is not ContactStatus.DELIVERED:
            self._follow_ups.clear()
            return
        agent, email = self._state.agent, self._state.agent_email
        while self._follow_ups and agent and email:
            follow_up = self._follow_ups.pop(0)
            archived = await self._deliver_message(follow_up.ref, agent, email)
            if archived is None:
                continue
            self._delivered_follow_ups.append(follow_up.model_copy(update={"ref": archived}))
            self._mark_follow_ups({follow_up.contact_id}, delivered=True)

    async def _pass_on_follow_ups(self) -> None:
        """Follow-ups of a contact in an agent's mailbox go there too; otherwise they wait
        with the contact (the built-in interface shows them) until it is closed."""
        if self._state.status is ContactStatus.DELIVERED and self._follow_ups:
            await self._deliver_follow_ups()

    async def _reopen_follow_ups(self) -> None:
        """Follow-ups already in the agent's mailbox go back to processing with the email,
        ahead of any still waiting, so that whoever takes the contact next has the thread."""
        if not self._delivered_follow_ups or not workflow.patched(FOLLOW_UPS_MOVE_PATCH):
            return
        every_one = workflow.patched(ALL_FOLLOW_UPS_MOVE_PATCH)
        reopened: list[FollowUp] = []
        for follow_up in self._delivered_follow_ups:
            moved = await self._move(
                follow_up.ref, self._policy.processing_folder, "reopen a follow-up"
            )
            if moved is not None and every_one:
                reopened.append(follow_up.model_copy(update={"ref": moved}))
        if moved is not None and not every_one:  # as it ran before: the last one only
            reopened.append(follow_up.model_copy(update={"ref": moved}))
        self._delivered_follow_ups = []
        self._follow_ups[:0] = reopened
        self._mark_follow_ups({f.contact_id for f in reopened}, delivered=False)

    def _mark_follow_ups(self, contact_ids: set[str], *, delivered: bool) -> None:
        notes = [
            n.model_copy(update={"delivered": delivered}) if n.contact_id in contact_ids else n
            for n in self._state.follow_ups
        ]
        self._state.follow_ups = notes

    async def _deliver_message(
        self, ref: MessageRef, agent_id: str, agent_email: str, *, contact_id: str | None = None
    ) -> MessageRef | None:
        """Resend one message to an agent and archive it; None (and last_error) if refused."""
        try:
            result = await self._smtp(
                OutboundActivities.deliver_to_agent,
                DeliverRequest(
                    contact_id=contact_id or self._state.id,
                    ref=ref,
                    policy=self._policy,
                    agent_id=agent_id,
                    agent_email=agent_email,
                    channel=self._channel,
                ),
                f"deliver to {agent_id}",
            )
        except ActivityError as err:
            self._state.last_error = failure(err)
            return None
        return result.archived or ref

    async def _settle_duplicates(self) -> None:
        while self._duplicates:
            duplicate = self._duplicates.pop(0)
            if duplicate.folder == self._ref.folder and duplicate.uid == self._ref.uid:
                continue
            settled = await self._imap(
                MailboxActivities.settle_duplicate,
                SettleDuplicateRequest(
                    duplicate=duplicate, archive_folder=self._policy.archive_folder
                ),
                "archive a duplicate copy",
            )
            if settled:
                self._state.duplicates_settled = self._state.duplicates_settled + 1

    async def _move_own_message(self, folder: str, purpose: str) -> None:
        moved = await self._move(self._ref, folder, purpose)
        if moved is not None:
            self._ref = moved
            self._state.message = moved

    async def _move(self, ref: MessageRef, folder: str, purpose: str) -> MessageRef | None:
        return await self._imap(
            MailboxActivities.move_message, MoveRequest(ref=ref, folder=folder), purpose
        )
