"""Whether an email gets the automatic acknowledgement: a pure decision with its reason."""

from __future__ import annotations

from dataclasses import dataclass

from ace_email.models import AccountPolicy, Analysis


@dataclass(frozen=True)
class AutoReplyDecision:
    to: str | None
    reason: str

    @property
    def send(self) -> bool:
        return self.to is not None


def decide_auto_reply(policy: AccountPolicy, analysis: Analysis) -> AutoReplyDecision:
    """Never to automatic mail, never to one of our own addresses, only where enabled."""
    if not policy.auto_reply:
        return AutoReplyDecision(None, "not sent: automatic replies are off for this account")
    if analysis.automatic:
        reasons = "; ".join(analysis.automatic_reasons[:3]) or "automatic mail"
        return AutoReplyDecision(None, f"not sent: automatic mail ({reasons})")
    to = analysis.reply_address
    if not to:
        return AutoReplyDecision(None, "not sent: the email names no sender address")
    own = {a.lower() for a in (*policy.own_addresses, policy.address, policy.return_address)}
    if to.lower() in own:
        return AutoReplyDecision(None, "not sent: the sender is one of our own addresses")
    return AutoReplyDecision(to, "to be sent")
