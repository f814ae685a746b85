"""Configuration: the documented keys load; a bad file fails with file, key and fault."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ace_email.config.base import ConfigError
from ace_email.config.settings import load_settings
from ace_email.contracts.message import Analysis
from ace_email.decisions.rules import MessageFacts
from starter import main as starter_main
from worker import main as worker_main

EXAMPLE = Path(__file__).resolve().parents[2] / "ace-email.example.toml"


def test_example_config_loads_every_documented_key() -> None:
    settings = load_settings(EXAMPLE)
    account = settings.accounts[0]
    assert settings.temporal.task_queue == "ace-email"
    assert account.name == "support" and account.queue == "support" and account.auto_reply
    assert account.imap.security.value == "ssl" and account.imap.folder == "INBOX"
    assert account.smtp.port == 587
    assert [a.id for a in settings.agents] == ["alice", "bob"]
    assert settings.agents[1].email is None
    assert [q.name for q in settings.queues] == ["support", "billing"]
    assert (
        account.priority == 0 and account.skills == [] and account.auto_reply_template == "default"
    )
    assert account.timezone == "Europe/Stockholm" and account.office_hours is not None
    assert account.office_hours.days == ["mon", "tue", "wed", "thu", "fri"]
    assert [r.name for r in account.rules][:3] == [
        "Executables",
        "Mailing lists",
        "Invoices to billing",
    ]
    assert settings.queue_names() == ["billing", "support"]
    assert settings.template_names() == ["billing", "default"]


def _facts(
    hour_utc: int = 10, headers: list[tuple[str, str]] | None = None, **analysis: object
) -> MessageFacts:
    return MessageFacts(
        analysis=Analysis.model_validate(analysis),
        received_at=datetime(2026, 3, 4, hour_utc, 0, tzinfo=UTC),
        headers=headers or [],
    )


def test_example_rules_route_email() -> None:
    account = load_settings(EXAMPLE).accounts[0]
    invoice = account.routing(_facts(subject="Faktura 17"))
    assert (invoice.rule, invoice.queue, invoice.priority) == ("Invoices to billing", "billing", 2)
    assert invoice.skills == ["invoices"] and invoice.auto_reply_template == "billing"
    exe = _facts(attachments=[{"filename": "setup.EXE"}], subject="invoice")
    assert account.routing(exe).quarantine_reason == "executable attachment"
    assert account.routing(_facts(headers=[("List-Id", "<x.lists>")])).auto_reply_template is None
    urgent = {"sender": {"addr": "ceo@bigcustomer.com"}, "subject": "help"}
    headers = [("X-Priority", "1")]
    assert account.routing(_facts(20, headers, **urgent)).priority == 5
    assert account.routing(_facts(10, headers, **urgent)).rule == "default"
    assert account.routing(_facts(language="sv")).rule == "rules[4]"


def test_auto_reply_off_means_no_template_whatever_the_rules_say(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(EXAMPLE.read_text().replace("auto_reply = true", "auto_reply = false"))
    account = load_settings(config).accounts[0]
    assert account.routing(_facts(subject="invoice")).auto_reply_template is None
    assert account.routing(_facts()).auto_reply_template is None


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACE_EMAIL_TEMPORAL__ADDRESS", "temporal.internal:7233")
    assert load_settings(EXAMPLE).temporal.address == "temporal.internal:7233"


def test_config_path_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACE_EMAIL_CONFIG", str(EXAMPLE))
    assert load_settings().accounts[0].name == "support"


def _bad(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    return str(raised.value)


def test_invalid_values_name_file_key_and_fault(tmp_path: Path) -> None:
    text = (
        EXAMPLE.read_text()
        .replace("port = 993", 'port = "imap"')
        .replace('email = "alice@example.com"', 'email = "alice"')
    )
    message = _bad(tmp_path, text)
    assert str(tmp_path / "bad.toml") in message
    assert "accounts[0].imap.port: Input should be a valid integer" in message
    assert "agents[0].email" in message and "not an email address" in message


def test_missing_password_and_unknown_key_and_duplicates(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace(
        'password_env = "ACE_SUPPORT_IMAP_PASSWORD"', 'colour = "blue"'
    )
    message = _bad(tmp_path, text)
    assert "accounts[0].imap.colour: Extra inputs are not permitted" in message
    no_password = EXAMPLE.read_text().replace('password_env = "ACE_SUPPORT_IMAP_PASSWORD"', "")
    assert "one of password, password_env, password_file is required" in _bad(tmp_path, no_password)
    doubled = EXAMPLE.read_text() + '\n[[agents]]\nid = "alice"\n'
    assert "id 'alice' appears twice" in _bad(tmp_path, doubled)


def test_queue_and_template_names(tmp_path: Path) -> None:
    doubled = EXAMPLE.read_text() + '\n[[queues]]\nname = "billing"\n'
    assert "queues: name 'billing' appears twice" in _bad(tmp_path, doubled)
    reserved = EXAMPLE.read_text() + '\n[templates.none]\ntext.en = "x"\n'
    assert "templates: 'none' is reserved" in _bad(tmp_path, reserved)
    unknown = EXAMPLE.read_text().replace('queue = "billing"', 'queue = "biling"')
    message = _bad(tmp_path, unknown)
    assert message.endswith(
        "(1 problem(s))\n  accounts[0] (support).rules[2].then.queue: "
        "unknown queue 'biling' (known: billing, support)"
    )


def test_secrets_are_never_echoed(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace(
        'password_env = "ACE_SUPPORT_IMAP_PASSWORD"',
        'password = "hunter2-secret"\npassword_env = "X"',
    )
    message = _bad(tmp_path, text)
    assert "give only one of" in message and "hunter2-secret" not in message


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    assert "not valid TOML" in _bad(tmp_path, "[[accounts]\nname=")
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "nope.toml")


def test_scripts_exit_non_zero_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("port = 993", "port = 0"))
    assert worker_main(["--config", str(bad)]) == 2
    assert asyncio.run(starter_main(["--config", str(bad), "list"])) == 2
    err = capsys.readouterr().err
    assert "accounts[0].imap.port: Input should be greater than or equal to 1" in err


def test_unreachable_temporal_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        EXAMPLE.read_text().replace('address = "127.0.0.1:7233"', 'address = "127.0.0.1:1"')
    )
    assert asyncio.run(starter_main(["--config", str(config), "list"])) == 2
    assert capsys.readouterr().err == (
        "starter.py list: cannot reach Temporal at 127.0.0.1:1 (namespace default): nothing "
        "listens there (is the Temporal server running?). Check temporal.address in the "
        "configuration (or ACE_EMAIL_TEMPORAL__ADDRESS).\n"
    )
    config.write_text(
        EXAMPLE.read_text().replace('address = "127.0.0.1:7233"', 'address = "nowhere.invalid:1"')
    )
    assert asyncio.run(starter_main(["--config", str(config), "list"])) == 2
    said = capsys.readouterr().err
    assert "nowhere.invalid:1 (namespace default): that host name is not known (DNS)." in said
    assert "tonic" not in said and "Error(" not in said


def test_files_the_configuration_names_are_checked_when_it_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent"
    config = tmp_path / "c.toml"
    text = EXAMPLE.read_text().replace(
        'password_env = "ACE_SUPPORT_IMAP_PASSWORD"', f'password_file = "{missing}.password"'
    )
    text = text.replace('token_env = "ACE_INTAKE_TOKEN"', f'token_file = "{missing}.token"')
    config.write_text(
        text + f'\n[temporal.encryption]\nkey_id = "k1"\nkey_file = "{missing}.keys"\n'
    )
    assert worker_main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert (
        f"accounts[0].imap.password_file: cannot read {missing}.password: No such file or directory"
    ) in err
    assert f"intake.token_file: cannot read {missing}.token: No such file" in err
    assert f"temporal.encryption.key_file: cannot read {missing}.keys: No such file" in err


def test_a_worker_stops_at_its_start_when_a_password_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACE_SUPPORT_IMAP_PASSWORD", raising=False)
    monkeypatch.setenv("ACE_SUPPORT_SMTP_PASSWORD", "s")
    assert worker_main(["--config", str(EXAMPLE)]) == 2
    assert capsys.readouterr().err == (
        "worker: accounts[0].imap.password_env: environment variable "
        "ACE_SUPPORT_IMAP_PASSWORD is not set\n"
    )
