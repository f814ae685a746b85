"""The pure parts of loop protection: who may get an automatic reply, and which contact a
Message-ID of ours belongs to."""

from __future__ import annotations

from ace_email.contracts import ids
from ace_email.contracts.mailbox import AccountPolicy
from ace_email.contracts.message import Address, Analysis, Routing
from ace_email.decisions.auto_reply import decide_auto_reply

POLICY = AccountPolicy(
    name="support",
    address="support@example.com",
    return_address="support@example.com",
    queue="support",
    own_addresses=["alice@example.com", "support@example.com"],
)
CUSTOMER = Analysis(**{"from": Address(name="Carla", addr="carla@example.org")})


def test_rule_without_template_means_no_reply_and_names_the_rule() -> None:
    routing = Routing(rule="Lists", queue="support", auto_reply_template=None)
    decision = decide_auto_reply(POLICY, CUSTOMER, routing)
    assert decision.to is None
    assert decision.reason == "not sent: rule 'Lists' sends no automatic reply"


def test_rule_template_is_the_one_sent() -> None:
    routing = Routing(rule="Invoices", queue="billing", auto_reply_template="billing")
    decision = decide_auto_reply(POLICY, CUSTOMER, routing)
    assert (decision.to, decision.template) == ("carla@example.org", "billing")


def test_spam_gets_no_reply() -> None:
    spam = CUSTOMER.model_copy(update={"spam": True, "spam_detail": "X-Spam-Flag: YES"})
    assert decide_auto_reply(POLICY, spam).reason == "not sent: spam (X-Spam-Flag: YES)"


def test_agent_address_and_unusable_address_get_no_reply() -> None:
    agent = Analysis(**{"from": Address(addr="Alice@Example.com")})
    assert "own addresses" in decide_auto_reply(POLICY, agent).reason
    odd = Analysis(**{"from": Address(addr="a b@example.org")})
    assert "not a usable address" in decide_auto_reply(POLICY, odd).reason


def test_our_own_message_ids_lead_back_to_their_contact() -> None:
    key = "0123456789abcdef0123456789abcdef"
    reply = ids.auto_reply_message_id("support", key, "support@example.com")
    resent = ids.resent_message_id("support", key, "alice.a", "support@example.com")
    expected = ids.contact_workflow_id("support", key)
    assert ids.contact_of_own_message_id(reply, "support") == expected
    assert ids.contact_of_own_message_id(resent, "support") == expected
    assert ids.contact_of_own_message_id(reply, "sales") is None
    assert ids.contact_of_own_message_id("<abc@example.org>", "support") is None
