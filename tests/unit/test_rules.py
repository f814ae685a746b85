"""Analysis rules: every condition and action, first match wins, defaults, clear config errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from ace_email.config.base import ConfigError
from ace_email.config.settings import load_settings
from ace_email.contracts.message import Analysis, Routing
from ace_email.decisions.rules import (
    UTC_CALENDAR,
    Calendar,
    MessageFacts,
    OfficeHours,
    RoutingDefaults,
    Rule,
    TimeWindow,
    evaluate,
)

WEDNESDAY_NOON = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
STOCKHOLM = ZoneInfo("Europe/Stockholm")
DEFAULTS = RoutingDefaults(
    queue="support", priority=1, skills=("general",), auto_reply_template="default"
)
OFFICE = Calendar(
    zone=STOCKHOLM,
    office_hours=OfficeHours.model_validate(
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "17:00"}
        | {"holidays": ["2026-12-24"]}
    ),
)


def facts(
    *,
    received_at: datetime = WEDNESDAY_NOON,
    body: str = "",
    headers: Sequence[tuple[str, str]] = (),
    **analysis: Any,
) -> MessageFacts:
    return MessageFacts(
        analysis=Analysis.model_validate(analysis),
        received_at=received_at,
        body=body,
        headers=headers,
    )


def route(
    rules: Sequence[dict[str, Any]], message: MessageFacts, calendar: Calendar = UTC_CALENDAR
) -> Routing:
    return evaluate([Rule.model_validate(r) for r in rules], DEFAULTS, message, calendar)


def matches(when: dict[str, Any], message: MessageFacts, calendar: Calendar = UTC_CALENDAR) -> bool:
    routing = route([{"name": "hit", "when": when, "then": {"queue": "x"}}], message, calendar)
    return routing.rule == "hit"


def sender(addr: str) -> MessageFacts:
    return facts(sender={"addr": addr})


# Conditions


def test_from_glob_is_case_insensitive_on_the_whole_address() -> None:
    when = {"from": ["*@bigcustomer.com"]}
    assert matches(when, sender("Anna@BigCustomer.com"))
    assert not matches(when, sender("anna@bigcustomer.com.evil.net"))
    assert not matches(when, sender("anna@sub.bigcustomer.com"))
    assert not matches(when, facts())
    assert matches({"from": "ann?@*"}, sender("anna@x.org"))


def test_from_domain_matches_the_domain_and_its_subdomains() -> None:
    when = {"from": "bigcustomer.com"}
    assert matches(when, sender("anna@bigcustomer.com"))
    assert matches(when, sender("anna@mail.eu.BigCustomer.com"))
    assert not matches(when, sender("anna@notbigcustomer.com"))
    assert not matches(when, sender("bigcustomer.com@other.org"))


def test_from_regex_searches_case_insensitively() -> None:
    when = {"from": ["nobody@x.org", "re:^ceo@"]}
    assert matches(when, sender("CEO@bigcustomer.com"))
    assert matches(when, sender("nobody@x.org"))
    assert not matches(when, sender("theceo@bigcustomer.com"))


def test_to_and_cc_match_any_recipient() -> None:
    message = facts(
        to=[{"addr": "info@example.com"}, {"addr": "billing@example.com"}],
        cc=[{"addr": "boss@partner.org"}],
    )
    assert matches({"to": ["billing@example.com"]}, message)
    assert not matches({"to": ["sales@example.com"]}, message)
    assert matches({"cc": ["partner.org"]}, message)
    assert not matches({"cc": ["*@example.com"]}, message)


def test_subject_regex() -> None:
    when = {"subject": "invoice|faktura"}
    assert matches(when, facts(subject="Re: FAKTURA 1234"))
    assert not matches(when, facts(subject="Hello"))


def test_body_regex() -> None:
    when = {"body": r"\brefund\b"}
    assert matches(when, facts(body="I want a\nRefund please"))
    assert not matches(when, facts(body="refunded"))


def test_language() -> None:
    when = {"language": ["SV", "en"]}
    assert matches(when, facts(language="sv"))
    assert not matches(when, facts(language="de"))
    assert not matches(when, facts())


def test_has_attachment() -> None:
    with_file = facts(attachments=[{"filename": "a.pdf", "content_type": "application/pdf"}])
    assert matches({"has_attachment": True}, with_file)
    assert not matches({"has_attachment": True}, facts())
    assert matches({"has_attachment": False}, facts())


def test_attachment_type_by_content_type() -> None:
    message = facts(attachments=[{"filename": "scan.jpg", "content_type": "image/jpeg"}])
    assert matches({"attachment_type": ["application/pdf", "image/*"]}, message)
    assert not matches({"attachment_type": "application/*"}, message)


def test_attachment_type_by_filename() -> None:
    message = facts(attachments=[{"filename": "Report.XLSX", "content_type": "application/zip"}])
    assert matches({"attachment_type": ["*.xlsx"]}, message)
    assert not matches({"attachment_type": ["*.docx"]}, message)
    assert not matches({"attachment_type": ["*.xlsx"]}, facts())


def test_min_and_max_size() -> None:
    assert matches({"min_size": 100}, facts(size=100))
    assert not matches({"min_size": 101}, facts(size=100))
    assert matches({"max_size": 100}, facts(size=100))
    assert not matches({"max_size": 99}, facts(size=100))
    assert matches({"min_size": 10, "max_size": 1000}, facts(size=500))


def test_header_presence() -> None:
    headers = [("X-Customer-Id", "")]
    assert matches({"headers": {"x-customer-id": ""}}, facts(headers=headers))
    assert not matches({"headers": {"X-Other": ""}}, facts(headers=headers))


def test_header_value() -> None:
    headers = [("X-Priority", "3"), ("x-priority", "1 (Highest)"), ("X-Mailer", "Outlook")]
    assert matches({"headers": {"X-Priority": "^1"}}, facts(headers=headers))
    assert not matches(
        {"headers": {"X-Priority": "^1", "X-Mailer": "thunder"}}, facts(headers=headers)
    )
    assert not matches({"headers": {"X-Priority": "^2"}}, facts(headers=headers))


def test_automatic() -> None:
    assert matches({"automatic": True}, facts(automatic=True))
    assert not matches({"automatic": True}, facts())
    assert matches({"automatic": False}, facts())


def test_spam_false_also_holds_without_a_verdict() -> None:
    assert matches({"spam": True}, facts(spam=True))
    assert not matches({"spam": True}, facts())
    assert matches({"spam": False}, facts(spam=False))
    assert matches({"spam": False}, facts())
    assert not matches({"spam": False}, facts(spam=True))


def test_office_hours_in_the_account_time_zone() -> None:
    opening = datetime(2026, 3, 4, 7, 0, tzinfo=UTC)  # 08:00 in Stockholm
    closing = datetime(2026, 3, 4, 16, 0, tzinfo=UTC)  # 17:00 in Stockholm
    assert matches({"office_hours": True}, facts(received_at=opening), OFFICE)
    assert matches({"office_hours": False}, facts(received_at=closing), OFFICE)
    early = datetime(2026, 3, 4, 6, 59, tzinfo=UTC)
    assert matches({"office_hours": False}, facts(received_at=early), OFFICE)


def test_office_hours_closed_on_weekends_and_holidays() -> None:
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=UTC)
    christmas_eve = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)  # a Thursday
    day_after = datetime(2026, 12, 23, 10, 0, tzinfo=UTC)
    assert matches({"office_hours": False}, facts(received_at=saturday), OFFICE)
    assert matches({"office_hours": False}, facts(received_at=christmas_eve), OFFICE)
    assert matches({"office_hours": True}, facts(received_at=day_after), OFFICE)


def test_office_hours_describe_themselves() -> None:
    assert OFFICE.office_hours is not None
    assert OFFICE.office_hours.describe("Europe/Stockholm") == (
        "Mon-Fri 08:00-17:00 (Europe/Stockholm)"
    )
    odd = OfficeHours.model_validate({"days": ["sun", "mon", "wed", "sat"], "end": "12:30"})
    assert odd.describe() == "Mon, Wed, Sat-Sun 08:00-12:30 (UTC)"


def test_days_in_the_account_time_zone() -> None:
    late_friday_utc = datetime(2026, 3, 6, 23, 30, tzinfo=UTC)  # Saturday 00:30 in Stockholm
    assert matches({"days": ["sat", "sun"]}, facts(received_at=late_friday_utc), OFFICE)
    assert not matches({"days": ["sat", "sun"]}, facts(received_at=late_friday_utc))
    assert matches({"days": "Friday"}, facts(received_at=late_friday_utc))


def test_time_window() -> None:
    when = {"time": "09:00-12:00"}
    assert matches(when, facts(received_at=datetime(2026, 3, 4, 9, 0, tzinfo=UTC)))
    assert not matches(when, facts(received_at=datetime(2026, 3, 4, 12, 0, tzinfo=UTC)))


def test_time_window_wrapping_midnight() -> None:
    when = {"time": "18:00-08:00"}
    for hour, inside in [(18, True), (23, True), (3, True), (8, False), (12, False)]:
        received = datetime(2026, 3, 4, hour, 0, tzinfo=UTC)
        assert matches(when, facts(received_at=received)) is inside, hour
    assert TimeWindow.parse("22:30-6:15") == TimeWindow(time(22, 30), time(6, 15))


def test_time_conditions_use_the_account_zone_and_take_naive_as_utc() -> None:
    when = {"time": "08:00-09:00"}
    assert matches(when, facts(received_at=datetime(2026, 3, 4, 7, 30, tzinfo=UTC)), OFFICE)
    assert matches(when, facts(received_at=datetime(2026, 3, 4, 8, 30)))


def test_every_condition_must_hold() -> None:
    when = {"from": "bigcustomer.com", "subject": "invoice"}
    assert matches(when, facts(sender={"addr": "a@bigcustomer.com"}, subject="invoice 7"))
    assert not matches(when, facts(sender={"addr": "a@bigcustomer.com"}, subject="hello"))
    assert matches({}, facts())


# Actions


def test_queue_priority_skills_and_category() -> None:
    routing = route(
        [
            {
                "name": "Invoices",
                "when": {"subject": "invoice"},
                "then": {
                    "queue": "billing",
                    "priority": 2,
                    "skills": ["swedish", "invoices"],
                    "category": "billing",
                },
            }
        ],
        facts(subject="invoice"),
    )
    assert routing == Routing(
        rule="Invoices",
        queue="billing",
        priority=2,
        skills=["swedish", "invoices"],
        category="billing",
        auto_reply_template="default",
    )


def test_absent_actions_take_the_account_defaults() -> None:
    routing = route([{"name": "r", "then": {"category": "x"}}], facts())
    assert (routing.queue, routing.priority, routing.skills) == ("support", 1, ["general"])
    assert routing.auto_reply_template == "default" and routing.category == "x"
    assert route([{"then": {"skills": []}}], facts()).skills == []


def test_auto_reply_template_none_and_inheritance() -> None:
    assert route([{"then": {"auto_reply_template": "billing"}}], facts()).auto_reply_template == (
        "billing"
    )
    assert route([{"then": {"auto_reply_template": "none"}}], facts()).auto_reply_template is None
    quiet = RoutingDefaults(queue="support", auto_reply_template=None)
    inherited = evaluate([Rule.model_validate({"then": {"queue": "x"}})], quiet, facts())
    assert inherited.auto_reply_template is None
    chosen = evaluate(
        [Rule.model_validate({"then": {"auto_reply_template": "vip"}})], quiet, facts()
    )
    assert chosen.auto_reply_template == "vip"


def test_quarantine_ignores_the_other_actions() -> None:
    routing = route(
        [{"name": "Exe", "then": {"quarantine": "executable", "queue": "x", "category": "c"}}],
        facts(),
    )
    assert routing.quarantine_reason == "executable"
    assert routing.queue == "support" and routing.category is None
    assert routing.auto_reply_template is None and routing.rule == "Exe"


def test_first_match_wins() -> None:
    rules = [
        {"name": "billing", "when": {"subject": "invoice"}, "then": {"queue": "billing"}},
        {"name": "vip", "when": {"from": "vip.com"}, "then": {"queue": "vip"}},
        {"name": "also invoices", "when": {"subject": "invoice"}, "then": {"queue": "other"}},
    ]
    both = facts(sender={"addr": "a@vip.com"}, subject="invoice")
    assert route(rules, both).rule == "billing"
    assert route(list(reversed(rules)), both).queue == "other"
    assert route(rules, facts(sender={"addr": "a@vip.com"})).queue == "vip"


def test_default_when_nothing_matches_and_unnamed_rules() -> None:
    rules: list[dict[str, Any]] = [
        {"when": {"subject": "invoice"}, "then": {"queue": "billing"}},
        {"when": {"spam": True}},
    ]
    assert route(rules, facts(subject="hello")) == Routing(
        rule="default",
        queue="support",
        priority=1,
        skills=["general"],
        auto_reply_template="default",
    )
    assert route(rules, facts(spam=True)).rule == "rules[1]"
    assert route([], facts()).rule == "default"


def test_rules_are_checked_when_built() -> None:
    with pytest.raises(ValidationError, match="invalid regular expression"):
        Rule.model_validate({"when": {"subject": "("}})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Rule.model_validate({"then": {"queues": "x"}})
    with pytest.raises(ValidationError, match="min_size 10 is above max_size 5"):
        Rule.model_validate({"when": {"min_size": 10, "max_size": 5}})
    with pytest.raises(ValidationError, match="end 08:00 must be after start 17:00"):
        OfficeHours.model_validate({"start": "17:00", "end": "08:00"})


# Configuration errors

ACCOUNT = """
[[queues]]
name = "billing"

[[accounts]]
name = "support"
address = "support@example.com"
queue = "support"
{account}

[accounts.imap]
host = "imap.example.com"
username = "support@example.com"
password = "x"

[accounts.smtp]
host = "smtp.example.com"

[[accounts.rules]]
name = "fine"
[accounts.rules.when]
subject = "ok"

[[accounts.rules]]
[accounts.rules.when]
{when}
[accounts.rules.then]
{then}
"""


def config_error(tmp_path: Path, *, when: str = "", then: str = "", account: str = "") -> str:
    path = tmp_path / "rules.toml"
    path.write_text(ACCOUNT.format(account=account, when=when, then=then))
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    return str(raised.value)


def test_a_good_rule_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(ACCOUNT.format(account="", when='subject = "x"', then='queue = "billing"'))
    account = load_settings(path).accounts[0]
    assert account.routing(facts(subject="x")) == Routing(
        rule="rules[1]", queue="billing", auto_reply_template="default"
    )


def test_bad_regex_names_account_rule_and_field(tmp_path: Path) -> None:
    message = config_error(tmp_path, when='subject = "invoice("')
    assert "accounts[0].rules[1].when.subject: invalid regular expression 'invoice('" in message
    message = config_error(tmp_path, when='from = ["ok@x.org", "re:[a-"]')
    assert "accounts[0].rules[1].when.from[1]: invalid regular expression '[a-'" in message
    message = config_error(tmp_path, when='headers = { "X-Priority" = "*1" }')
    assert "accounts[0].rules[1].when.headers.X-Priority: invalid regular expression" in message


def test_unknown_queue_and_template(tmp_path: Path) -> None:
    message = config_error(tmp_path, then='queue = "biling"\nauto_reply_template = "vip"')
    assert (
        "  accounts[0] (support).rules[1].then.queue: unknown queue 'biling' "
        "(known: billing, support)" in message
    )
    assert (
        "  accounts[0] (support).rules[1].then.auto_reply_template: unknown template 'vip' "
        "(known: default)" in message
    )
    assert "(2 problem(s))" in message
    assert "Value error" not in message and "top level" not in message


def test_unknown_default_template(tmp_path: Path) -> None:
    message = config_error(tmp_path, account='auto_reply_template = "welcome"')
    assert "accounts[0] (support).auto_reply_template: unknown template 'welcome'" in message


def test_office_hours_condition_needs_office_hours(tmp_path: Path) -> None:
    message = config_error(tmp_path, when="office_hours = true")
    assert (
        "accounts[0] (support).rules[1].when.office_hours: "
        "the account has no [accounts.office_hours]" in message
    )


def test_bad_time_window_weekday_and_time_zone(tmp_path: Path) -> None:
    message = config_error(tmp_path, when='time = "25:00-08:00"')
    assert "accounts[0].rules[1].when.time: invalid time window '25:00-08:00'" in message
    message = config_error(tmp_path, when='days = ["mon", "fre"]')
    assert "accounts[0].rules[1].when.days[1]: unknown weekday 'fre'" in message
    message = config_error(tmp_path, account='timezone = "Europe/Stockhol"')
    assert "accounts[0].timezone: unknown time zone 'Europe/Stockhol'" in message


def test_bad_office_hours(tmp_path: Path) -> None:
    hours = '[accounts.office_hours]\ndays = ["mon", "sunday", "someday"]\nstart = "8"'
    message = config_error(tmp_path, account=hours)
    assert "accounts[0].office_hours.days[2]: unknown weekday 'someday'" in message
    assert "accounts[0].office_hours.start: '8' is not a time of day HH:MM" in message
    message = config_error(
        tmp_path, account='[accounts.office_hours]\nstart = "17:00"\nend = "8:00"'
    )
    assert "accounts[0].office_hours: end 08:00 must be after start 17:00" in message


def test_unknown_keys_in_when_and_then(tmp_path: Path) -> None:
    message = config_error(tmp_path, when='sender_domain = "x"', then='queues = "billing"')
    assert "accounts[0].rules[1].when.sender_domain: Extra inputs are not permitted" in message
    assert "accounts[0].rules[1].then.queues: Extra inputs are not permitted" in message
