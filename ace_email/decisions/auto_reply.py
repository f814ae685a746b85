"""Whether an email gets an automatic reply: a pure decision with its reason.

The per-sender and per-hour limits are the ledger's to decide (they need memory); everything
that can be told from the email, its analysis and the account alone is decided here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ace_email.contracts.mailbox import AccountPolicy
from ace_email.contracts.message import Analysis, Routing


@dataclass(frozen=True)
class AutoReplyDecision:
    to: str | None
    reason: str
    template: str | None = None

    @property
    def send(self) -> bool:
        return self.to is not None


def decide_auto_reply(
    policy: AccountPolicy, analysis: Analysis, routing: Routing | None = None
) -> AutoReplyDecision:
    """Never to automatic mail, spam or our own addresses; only where enabled and a template
    is chosen."""
    if not policy.auto_reply:
        return AutoReplyDecision(None, "not sent: automatic replies are off for this account")
    if analysis.automatic:
        reasons = "; ".join(analysis.automatic_reasons[:3]) or "automatic mail"
        return AutoReplyDecision(None, f"not sent: automatic mail ({reasons})")
    if analysis.spam:
        return AutoReplyDecision(None, f"not sent: spam ({analysis.spam_detail or 'flagged'})")
    template = routing.auto_reply_template if routing is not None else "default"
    if template is None:
        rule = routing.rule if routing is not None else "default"
        return AutoReplyDecision(None, f"not sent: rule '{rule}' sends no automatic reply")
    to = analysis.reply_address
    if not to:
        return AutoReplyDecision(None, "not sent: the email names no sender address")
    if any(c.isspace() or ord(c) < 32 for c in to) or to.count("@") != 1:
        return AutoReplyDecision(None, f"not sent: {to!r} is not a usable address")
    own = {a.lower() for a in (*policy.own_addresses, policy.address, policy.return_address)}
    if to.lower() in own:
        return AutoReplyDecision(None, "not sent: the sender is one of our own addresses")
    return AutoReplyDecision(to, "to be sent", template)
