"""Contact data from patterns: the account's `extract`, a rule's own `then.extract`, the
`when.data` condition, `{{ data.NAME }}` in templates, and the configuration faults."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ace_email.compose.auto_reply import ReplyParts, ReplySender, compose_auto_reply
from ace_email.compose.templates import ReplyContext, TemplateSettings, render
from ace_email.config.base import ConfigError
from ace_email.config.settings import load_settings
from ace_email.contracts.message import Analysis
from ace_email.decisions.enrichment import enrich, routed
from ace_email.decisions.extraction import VALUE_LIMIT, data_holds, extract, pattern_problems
from ace_email.decisions.rules import MessageFacts, RoutingDefaults, Rule, decide

ORDER = r"(?i)order\s*#?\s*(\d{4,10})"
NOON = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
DEFAULTS = RoutingDefaults(queue="support")


def facts(body: str = "", **analysis: Any) -> MessageFacts:
    return MessageFacts(analysis=Analysis.model_validate(analysis), received_at=NOON, body=body)


# Extraction


def test_the_first_group_of_the_first_match_in_the_subject_else_the_text() -> None:
    patterns = {"order_id": ORDER, "customer_id": r"\bC-(\d+)"}
    assert extract(patterns, "Where is order #12345?", "Order 99999, customer C-77") == {
        "order_id": "12345",
        "customer_id": "77",
    }
    assert extract(patterns, "Delivery", "my ORDER 4711 and order 5812") == {"order_id": "4711"}


def test_a_pattern_without_a_group_gives_the_whole_match() -> None:
    assert extract({"ticket": r"TCK-\d+"}, "", "see TCK-0042 please") == {"ticket": "TCK-0042"}


def test_no_match_no_value_and_patterns_apply_as_written() -> None:
    assert extract({"order_id": ORDER}, "Hello", "nothing to see") == {}
    assert extract({"ticket": r"TCK-\d+"}, "tck-1", "") == {}
    # An empty value counts as no match: the text is still searched.
    assert extract({"ref": r"ref:\s*(\w*)"}, "ref:", "ref: AB12") == {"ref": "AB12"}


def test_values_are_one_line_and_bounded() -> None:
    found = extract({"name": r"Name: (.*)"}, "", "Name: Karin\tKund  \x00 x" + "y" * 500)
    assert found["name"].startswith("Karin Kund x")
    assert len(found["name"]) == VALUE_LIMIT
    assert extract({"two": r"(?s)A(.*)B"}, "", "A one\r\n two B") == {"two": "one two"}


def test_a_pattern_that_does_not_compile_costs_its_value_never_the_email() -> None:
    assert extract({"bad": "order(", "ticket": r"TCK-\d+"}, "TCK-1", "") == {"ticket": "TCK-1"}


def test_pattern_problems_name_the_key() -> None:
    problems = pattern_problems({"order_id": "order(", "Bad-Name": "x", "all": "x*"}, "extract")
    assert problems == [
        "extract.order_id: invalid regular expression 'order(': "
        "missing ), unterminated subpattern at position 5",
        "extract.Bad-Name: not a usable name; use a lower-case letter, then lower-case "
        "letters, digits or _ (at most 40), e.g. order_id",
        "extract.all: 'x*' matches empty text; it would never give a value",
    ]
    many = {f"p{n}": "x" for n in range(21)}
    assert pattern_problems(many, "extract") == ["extract: 21 patterns; at most 20 are allowed"]


# Conditions on data


def test_when_data_globs_each_name_case_insensitively_and_all_must_hold() -> None:
    data = {"order_id": "12345", "customer_id": "VIP-9"}
    assert data_holds({"order_id": "*"}, data)
    assert data_holds({"order_id": "123*", "customer_id": "vip-*"}, data)
    assert not data_holds({"order_id": "9*"}, data)
    assert not data_holds({"order_id": "*", "ticket": "*"}, data)
    assert data_holds({}, {})


def test_a_rule_on_data_sees_what_the_account_extracted() -> None:
    rules = [
        Rule.model_validate({"when": {"data": {"order_id": "*"}}, "then": {"queue": "orders"}})
    ]
    with_order = decide(rules, DEFAULTS, facts(data={"order_id": "4711"}))
    assert with_order.routing.queue == "orders"
    assert decide(rules, DEFAULTS, facts()).routing.queue == "support"


def test_a_matched_rule_extracts_its_own_data_over_the_accounts() -> None:
    rules = [
        Rule.model_validate(
            {
                "name": "Shop",
                "when": {"from": "shop.example"},
                "then": {"extract": {"order_id": r"Bestellnummer:\s*(\S+)", "sku": r"SKU (\w+)"}},
            }
        )
    ]
    message = facts(
        "Bestellnummer: DE-1 SKU K9",
        **{"from": {"addr": "noreply@shop.example"}, "data": {"order_id": "4711", "x": "1"}},
    )
    decision = decide(rules, DEFAULTS, message)
    assert decision.data == {"order_id": "DE-1", "sku": "K9"}
    analysis = routed(message.analysis, decision)
    assert analysis.data == {"order_id": "DE-1", "x": "1", "sku": "K9"}
    assert analysis.rule == "Shop"
    other = facts("Bestellnummer: DE-1", **{"from": {"addr": "a@b.org"}})
    assert decide(rules, DEFAULTS, other).data == {}


def test_enrich_puts_the_accounts_data_on_the_analysis() -> None:
    analysis = Analysis(subject="Order 12345 missing")
    enriched = enrich(
        analysis, "Customer C-9", patterns={"order_id": ORDER}, categories=[], languages=None
    )
    assert enriched.data == {"order_id": "12345"}
    assert enrich(analysis, "", patterns={}, categories=[], languages=None).data == {}


# Templates


def test_templates_render_data_and_a_missing_name_as_empty() -> None:
    source = "Order {{ data.order_id }}{% if data.ticket %}, ticket {{ data.ticket }}{% endif %}."
    template = TemplateSettings(text={"en": source})
    with_order = ReplyContext(reference="R", data={"order_id": "4711\r\nBcc: x"})
    assert render(template, "en", with_order).text == "Order 4711 Bcc: x.\n"
    assert render(template, "en", ReplyContext(reference="R")).text == "Order .\n"
    indexed = TemplateSettings(text={"en": '{{ data["order_id"] or "no order" }}'})
    assert render(indexed, "en", ReplyContext(reference="R")).text == "no order\n"


def test_the_automatic_reply_carries_the_data() -> None:
    template = TemplateSettings(text={"en": "About order {{ data.order_id }}: {{ reference }}"})
    raw = compose_auto_reply(
        ReplySender(account="support", address="support@example.com"),
        {"orders": template},
        "orders",
        ReplyParts(
            to="karin@example.org",
            sender_name="Karin",
            subject="Order 4711",
            reference="ABCD1234",
            queue="support",
            language="en",
            message_id="<r1@example.com>",
            in_reply_to=None,
            references=[],
            data={"order_id": "4711"},
        ),
        date=NOON,
    )
    assert b"About order 4711: ABCD1234" in raw


# Configuration

CONFIG = """
[[accounts]]
name = "support"
address = "support@example.com"
{account}

[accounts.imap]
host = "imap.example.com"
username = "support@example.com"
password = "x"

[accounts.smtp]
host = "smtp.example.com"

[[accounts.rules]]
[accounts.rules.when]
{when}
[accounts.rules.then]
{then}
"""


def load(tmp_path: Path, *, account: str = "", when: str = "", then: str = "") -> Any:
    path = tmp_path / "ace-email.toml"
    path.write_text(CONFIG.format(account=account, when=when, then=then), encoding="utf-8")
    return load_settings(path)


def config_error(tmp_path: Path, **parts: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, **parts)
    return str(raised.value)


def test_a_good_extract_configuration_loads(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        account=r"extract = { order_id = '(?i)order\s*#?\s*(\d{4,10})' }",
        when='data.order_id = "*"',
        then="extract = { sku = 'SKU (\\w+)' }",
    )
    account = settings.accounts[0]
    assert account.extract == {"order_id": ORDER}
    assert account.rules[0].when.data == {"order_id": "*"}
    assert account.rules[0].then.extract == {"sku": r"SKU (\w+)"}


def test_bad_patterns_name_the_account_and_the_key(tmp_path: Path) -> None:
    message = config_error(tmp_path, account="extract = { order_id = 'order(' }")
    assert (
        "  accounts[0] (support).extract.order_id: invalid regular expression 'order(': "
        "missing ), unterminated subpattern at position 5" in message
    )
    message = config_error(tmp_path, account="extract = { OrderId = 'x' }")
    assert "  accounts[0] (support).extract.OrderId: not a usable name" in message
    message = config_error(tmp_path, then="extract = { sku = '[a-' }")
    assert (
        "  accounts[0] (support).rules[0].then.extract.sku: invalid regular expression '[a-'"
        in message
    )


def test_when_data_names_an_extract_pattern_and_a_glob(tmp_path: Path) -> None:
    account = "extract = { order_id = 'order (\\d+)' }"
    message = config_error(tmp_path, account=account, when='data.order_nr = "*"')
    assert (
        "  accounts[0] (support).rules[0].when.data.order_nr: the account's extract has no "
        "pattern 'order_nr' (known: order_id)" in message
    )
    message = config_error(tmp_path, account=account, when='data.order_id = ""')
    assert (
        "  accounts[0] (support).rules[0].when.data.order_id: an empty pattern never "
        'matches; "*" asks for any value' in message
    )
    message = config_error(tmp_path, when='data.order_id = "*"')
    assert "(known: none: the account has no extract patterns)" in message
