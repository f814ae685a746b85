"""Keyword categories: matching on stems, phrases, required and prohibited words, languages;
`when.category` and the routing's category; categories as evidence of a language; the
configuration faults; and what `starter.py analyse` shows of data and categories."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ace_email.analysis.keywords import (
    MATCHED_WORDS_LIMIT,
    Category,
    EmailWords,
    language_evidence,
    match_categories,
    words_of,
)
from ace_email.analysis.language import detect_language
from ace_email.config.base import ConfigError
from ace_email.config.settings import load_settings
from ace_email.contracts.message import Analysis, MessageRef
from ace_email.decisions.enrichment import enrich
from ace_email.decisions.rules import MessageFacts, RoutingDefaults, Rule, evaluate
from ace_email.mail import intake
from starter import main

LANGUAGES = ["en", "sv", "de", "fr", "es"]
NOON = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def category(name: str = "invoice", **fields: Any) -> Category:
    return Category.model_validate({"name": name, **fields})


def matched(
    categories: list[Category], text: str, language: str | None = "en", subject: str = ""
) -> dict[str, list[str]]:
    found = match_categories(categories, EmailWords.of(subject, text), language)
    assert list(found.matched_words) == found.categories
    return found.matched_words


# Matching


def test_words_are_letters_and_digits_lower_cased() -> None:
    assert words_of("Re: Fakturan #4711 (Köp) o'clock_x") == [
        "re",
        "fakturan",
        "4711",
        "köp",
        "o",
        "clock",
        "x",
    ]
    assert words_of("a" * 41 + " ok") == ["ok"]


def test_stems_match_other_forms_of_a_keyword() -> None:
    invoice = [category(keywords=["invoice"])]
    assert matched(invoice, "Two invoices, one invoiced twice") == {
        "invoice": ["invoices", "invoiced"]
    }
    assert matched(invoice, "Where is my INVOICE?") == {"invoice": ["invoice"]}
    assert matched(invoice, "A question about delivery") == {}


def test_german_stems_with_language_de() -> None:
    rechnung = [category("rechnung", language="de", keywords=["Rechnung"])]
    assert matched(rechnung, "Ihre Rechnungen sind falsch", "de") == {"rechnung": ["rechnungen"]}
    agnostic = [category("rechnung", keywords=["Rechnung"])]
    assert matched(agnostic, "Zwei Rechnungen bitte", "de") == {"rechnung": ["rechnungen"]}


def test_required_all_keywords_any_prohibited_none() -> None:
    refund = [
        category(
            "refund",
            keywords=["refund", "money back"],
            required=["order"],
            prohibited=["newsletter"],
        )
    ]
    assert matched(refund, "I want a refund for my order") == {"refund": ["refund", "order"]}
    assert matched(refund, "I want a refund") == {}
    assert matched(refund, "My order: a refund? Unsubscribe me from the newsletters") == {}
    only_required = [category("orders", required=["order", "number"])]
    assert matched(only_required, "Order number 4711") == {"orders": ["order", "number"]}
    assert matched(only_required, "Order 4711") == {}


def test_a_phrase_matches_consecutive_stems() -> None:
    card = [category("card", keywords=["credit card"])]
    assert matched(card, "My credit cards were charged") == {"card": ["credit cards"]}
    assert matched(card, "Card declined, credit limit") == {}
    assert matched(card, "credit\n\ncard") == {"card": ["credit card"]}


def test_a_language_category_applies_to_its_language_and_to_unknown() -> None:
    faktura = [category("faktura", language="sv", keywords=["faktura"])]
    assert matched(faktura, "Mina fakturor är fel", "sv") == {"faktura": ["fakturor"]}
    assert matched(faktura, "fakturor", None) == {"faktura": ["fakturor"]}
    assert matched(faktura, "Faktura, bitte", "de") == {}


def test_unknown_language_compares_words_as_written() -> None:
    invoice = [category(keywords=["invoice"])]
    assert matched(invoice, "invoice attached", None) == {"invoice": ["invoice"]}
    assert matched(invoice, "invoices attached", None) == {}


def test_categories_in_order_with_their_words_deduplicated_and_bounded() -> None:
    categories = [
        category("urgent", keywords=["urgent", "asap"]),
        category("invoice", keywords=["invoice", "payment"]),
        category("never", keywords=["kettle"]),
    ]
    found = match_categories(
        categories,
        EmailWords.of("Payment URGENT", "invoice invoice payments asap"),
        "en",
    )
    assert found.categories == ["urgent", "invoice"]
    assert found.matched_words == {
        "urgent": ["urgent", "asap"],
        "invoice": ["payment", "invoice", "payments"],
    }
    many = [category("many", keywords=[f"w{n}" for n in range(20)])]
    text = " ".join(f"w{n}" for n in range(20))
    assert len(matched(many, text)["many"]) == MATCHED_WORDS_LIMIT


# Rules and routing


def facts(**analysis: Any) -> MessageFacts:
    return MessageFacts(analysis=Analysis.model_validate(analysis), received_at=NOON)


def route(rules: list[dict[str, Any]], **analysis: Any) -> Any:
    return evaluate(
        [Rule.model_validate(r) for r in rules], RoutingDefaults(queue="support"), facts(**analysis)
    )


def test_when_category_holds_for_any_listed_category() -> None:
    rules = [{"when": {"category": ["invoice", "refund"]}, "then": {"queue": "billing"}}]
    assert route(rules, categories=["urgent", "refund"]).queue == "billing"
    assert route(rules, categories=["urgent"]).queue == "support"
    assert route([{"when": {"category": "invoice"}}], categories=["invoice"]).rule == "rules[0]"


def test_the_routing_category_falls_back_to_the_first_keyword_category() -> None:
    rules = [
        {"name": "Set", "when": {"subject": "x"}, "then": {"category": "billing"}},
        {"name": "Unset", "when": {"subject": "y"}, "then": {"priority": 2}},
        {"name": "Junk", "when": {"subject": "z"}, "then": {"quarantine": "spam"}},
    ]
    categories = ["invoice", "urgent"]
    assert route(rules, subject="x", categories=categories).category == "billing"
    assert route(rules, subject="y", categories=categories).category == "invoice"
    assert route(rules, subject="-", categories=categories).category == "invoice"
    assert route(rules, subject="z", categories=categories).category is None
    assert route(rules, subject="y").category is None


# Language evidence


def test_keywords_tip_an_unsure_or_close_call_never_a_clear_one() -> None:
    assert detect_language("invoice", LANGUAGES) is None
    assert detect_language("invoice", LANGUAGES, evidence={"en": 1}) == "en"
    assert detect_language("Faktura", LANGUAGES) == "de"  # close: de 0.53, sv 0.27
    assert detect_language("Faktura", LANGUAGES, evidence={"sv": 1}) == "sv"
    clear = "Hello, my order has not arrived yet. Could you please help me?"
    assert detect_language(clear, LANGUAGES, evidence={"de": 3}) == "en"
    assert detect_language("invoice", LANGUAGES, evidence={"it": 1, "en": 0}) is None
    russian = "Привет! Как дела? Спасибо за письмо, до свидания."
    assert detect_language(russian, LANGUAGES, evidence={"en": 3}) is None


def test_language_evidence_counts_keywords_of_language_categories() -> None:
    categories = [
        category("faktura", language="sv", keywords=["faktura", "betalning"]),
        category("invoice", keywords=["fakturor"]),
    ]
    words = EmailWords.of("Fakturor", "betalningen")
    assert language_evidence(categories, words) == {"sv": 2}
    assert language_evidence(categories, EmailWords.of("Hello", "")) == {}


def test_enrich_detects_the_language_again_with_the_evidence_then_matches() -> None:
    faktura = [category("faktura", language="sv", keywords=["faktura"])]
    analysis = Analysis(subject="Faktura", language="de")
    enriched = enrich(analysis, "", patterns={}, categories=faktura, languages=LANGUAGES)
    assert enriched.language == "sv"
    assert enriched.categories == ["faktura"]
    assert enriched.matched_words == {"faktura": ["faktura"]}
    unsure = enrich(analysis, "", patterns={}, categories=faktura, languages=None)
    assert unsure.language == "de" and unsure.categories == []


# Configuration

CONFIG = """
[analysis]
languages = ["en", "sv", "de"]

{categories}

[[accounts]]
name = "support"
address = "support@example.com"

[accounts.imap]
host = "imap.example.com"
username = "support@example.com"
password = "x"

[accounts.smtp]
host = "smtp.example.com"

[[accounts.rules]]
[accounts.rules.when]
{when}
"""


def load(tmp_path: Path, categories: str, when: str = 'subject = "x"') -> Any:
    path = tmp_path / "ace-email.toml"
    path.write_text(CONFIG.format(categories=categories, when=when), encoding="utf-8")
    return load_settings(path)


def config_error(tmp_path: Path, categories: str, when: str = 'subject = "x"') -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, categories, when)
    return str(raised.value)


def test_a_good_category_configuration_loads(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[[categories]]\nname = "invoice"\nlanguage = "DE"\nkeywords = "Rechnung"',
        'category = "invoice"',
    )
    assert settings.categories == [Category(name="invoice", language="de", keywords=("Rechnung",))]
    assert settings.accounts[0].rules[0].when.category == ["invoice"]


def test_category_faults_name_the_category_and_the_field(tmp_path: Path) -> None:
    message = config_error(tmp_path, '[[categories]]\nname = "a"\nlanguage = "xx"\nkeywords = "k"')
    assert "  categories[0].language: unknown language 'xx': give an ISO 639-1 code" in message
    message = config_error(tmp_path, '[[categories]]\nname = "a"\nlanguage = "it"\nkeywords = "k"')
    assert (
        "  categories[0].language: 'it' is not among analysis.languages (de, en, sv); no email "
        "would be found to be in it" in message
    )
    message = config_error(tmp_path, '[[categories]]\nname = "a"\nprohibited = ["spam"]')
    assert (
        "  categories[0].keywords: 'a' has neither keywords nor required words; give at "
        "least one of them" in message
    )
    twice = '[[categories]]\nname = "a"\nkeywords = "k"\n' * 2
    assert (
        "  categories[1].name: 'a' is already the name of categories[0]; names must be unique"
        in config_error(tmp_path, twice)
    )
    message = config_error(tmp_path, '[[categories]]\nname = "a"\nkeywords = ["ok", "!!"]')
    assert "  categories[0].keywords[1]: '!!' has no letters or digits to match" in message


def test_when_category_names_a_configured_category(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, '[[categories]]\nname = "invoice"\nkeywords = "k"', 'category = "invoce"'
    )
    assert (
        "  accounts[0] (support).rules[0].when.category: unknown category 'invoce' "
        "(known: invoice)" in message
    )


# starter.py analyse

ANALYSE_CONFIG = r"""
[temporal]
address = "127.0.0.1:1"

[[queues]]
name = "billing"

[[categories]]
name = "invoice"
keywords = ["invoice", "payment"]

[[categories]]
name = "complaint"
keywords = ["angry"]

[templates.orders.text]
en = "Thank you. Order: {{ data.order_id }}; customer: {{ data.customer_id or 'unknown' }}."

[[accounts]]
name = "support"
address = "support@example.com"
extract = { order_id = '(?i)order\s*#?\s*(\d{4,10})', customer_id = 'C-(\d+)' }

[[accounts.rules]]
name = "Invoices with an order"
[accounts.rules.when]
category = "invoice"
data.order_id = "*"
[accounts.rules.then]
queue = "billing"
auto_reply_template = "orders"

[accounts.imap]
host = "imap.example.com"
username = "support@example.com"
password_env = "ACE_TEST_UNSET_PASSWORD"

[accounts.smtp]
host = "smtp.example.com"
"""

EMAIL = (
    b"From: Karin Kund <karin@example.org>\r\nTo: support@example.com\r\n"
    b"Subject: Invoices for order #12345\r\nMessage-ID: <q1@example.org>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    b"Hello, the payments for my order are wrong. Could you please check the invoice?\r\n"
)


@pytest.fixture
def analyse_files(tmp_path: Path) -> tuple[str, str]:
    config, email = tmp_path / "ace-email.toml", tmp_path / "mail.eml"
    config.write_text(ANALYSE_CONFIG, encoding="utf-8")
    email.write_bytes(EMAIL)
    return str(config), str(email)


async def test_analyse_shows_data_categories_and_renders_the_data(
    analyse_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, email = analyse_files
    assert await main(["--config", config, "analyse", email]) == 0
    out = capsys.readouterr().out
    assert "data:        order_id=12345" in out
    assert "categories:  invoice (matched: invoices, payments, invoice)" in out
    assert "rule:        Invoices with an order" in out
    assert "category invoice)" in out
    assert "Thank you. Order: 12345; customer: unknown." in out


async def test_analyse_json_has_data_categories_and_matched_words(
    analyse_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, email = analyse_files
    assert await main(["--config", config, "analyse", "--json", email]) == 0
    analysis = json.loads(capsys.readouterr().out)["analysis"]
    assert analysis["data"] == {"order_id": "12345"}
    assert analysis["categories"] == ["invoice"]
    assert analysis["matched_words"] == {"invoice": ["invoices", "payments", "invoice"]}
    assert analysis["category"] == "invoice"


# The worker's intake


def test_intake_extracts_and_categorises_before_the_rules(tmp_path: Path) -> None:
    config = tmp_path / "ace-email.toml"
    config.write_text(ANALYSE_CONFIG, encoding="utf-8")
    settings = load_settings(config)
    account = settings.accounts[0]
    ref = MessageRef(account="support", folder="INBOX", uidvalidity=1, uid=1, key="k")
    analysis, routing = intake.assess(
        EMAIL,
        ref,
        settings.policy(account),
        account,
        settings.analysis.languages,
        categories=settings.categories,
        received_at=NOON,
    )
    assert analysis.data == {"order_id": "12345"}
    assert analysis.categories == ["invoice"]
    assert analysis.rule == "Invoices with an order" and analysis.category == "invoice"
    assert routing is not None and routing.queue == "billing"
    plain, _ = intake.assess(
        EMAIL, ref, settings.policy(account), account, settings.analysis.languages
    )
    assert plain.categories == [] and plain.rule == "default"
