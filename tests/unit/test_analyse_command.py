"""`starter.py analyse`: try an email against the rules and templates; nothing is sent."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

import pytest

from ace_email.analysis import mime
from starter import main
from tests.support import delivery_status_notification

CONFIG = """
[temporal]
address = "127.0.0.1:1"

[[queues]]
name = "billing"

[templates.billing.text]
sv = "Hej {{ sender_name }}! Ärende {{ reference }} i kön {{ queue }}."
en = "Hello {{ sender_name }}! Case {{ reference }} in queue {{ queue }}."

[[accounts]]
name = "support"
address = "support@example.com"
queue = "support"

[[accounts.rules]]
name = "Invoices"
when = { subject = "faktura|invoice" }
then = { queue = "billing", priority = 5, auto_reply_template = "billing", category = "invoice" }

[[accounts.rules]]
name = "Junk"
when = { headers = { "X-Spam-Flag" = "(?i)yes" } }
then = { quarantine = "spam" }

[accounts.imap]
host = "imap.example.com"
username = "support@example.com"
password_env = "ACE_TEST_UNSET_PASSWORD"

[accounts.smtp]
host = "smtp.example.com"
"""

SWEDISH = (
    "From: Karin Kund <karin@example.org>\r\nTo: support@example.com\r\n"
    "Subject: Fråga om faktura\r\nMessage-ID: <q1@example.org>\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    "Hej, jag förstår inte min faktura. Kan ni hjälpa mig med den?\r\n"
).encode()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "ace-email.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def eml(tmp_path: Path, raw: bytes, name: str = "mail.eml") -> str:
    path = tmp_path / name
    path.write_bytes(raw)
    return str(path)


async def test_analyse_prints_analysis_matched_rule_and_rendered_reply(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await main(["--config", str(config), "analyse", eml(tmp_path, SWEDISH)])
    out = capsys.readouterr().out
    assert code == 0
    assert "rule:        Invoices" in out
    assert "language:    sv" in out
    assert "billing (priority 5" in out
    assert "Subject: Re: Fråga om faktura [#" in out
    assert "Hej Karin Kund! Ärende" in out and "i kön billing." in out


async def test_analyse_json_has_the_fields_and_the_whole_message(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await main(["--config", str(config), "analyse", "--json", eml(tmp_path, SWEDISH)])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["routing"]["queue"] == "billing"
    assert result["analysis"]["rule"] == "Invoices"
    assert result["analysis"]["from"]["addr"] == "karin@example.org"
    assert "Auto-Submitted: auto-replied" in result["auto_reply_message"]


async def test_analyse_shows_why_no_reply_for_automatic_mail_and_rule_quarantine(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absence = SWEDISH.replace(b"Subject: Fr", b"Auto-Submitted: auto-replied\r\nSubject: Fr")
    await main(["--config", str(config), "analyse", eml(tmp_path, absence)])
    out = capsys.readouterr().out
    assert "automatic:   yes: Auto-Submitted: auto-replied" in out
    assert "auto-reply:  not sent: automatic mail" in out

    spam = SWEDISH.replace(b"Subject: Fr\xc3\xa5ga om faktura", b"X-Spam-Flag: YES\r\nSubject: Win")
    await main(["--config", str(config), "analyse", eml(tmp_path, spam, "spam.eml")])
    out = capsys.readouterr().out
    assert "quarantine:  rule 'Junk': spam" in out
    assert "----- the automatic reply -----" not in out


async def test_analyse_refuses_unknown_account_and_missing_file(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = eml(tmp_path, SWEDISH)
    assert await main(["--config", str(config), "analyse", path, "--account", "nope"]) == 1
    assert "no account named 'nope'" in capsys.readouterr().err
    assert await main(["--config", str(config), "analyse", str(tmp_path / "missing.eml")]) == 1
    assert "cannot read" in capsys.readouterr().err


async def test_analyse_shows_a_bounce_of_our_automatic_reply_and_its_recipient(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reply = EmailMessage()
    reply["From"] = "support@example.com"
    reply["To"] = "gone@example.org"
    reply["Subject"] = "Re: Question [#0123ABCD]"
    ours = f"<ace.{'0123abcd' * 4}.autoreply.support@example.com>"
    reply["Message-ID"] = ours
    raw = delivery_status_notification(reply, "support@example.com", "gone@example.org")
    code = await main(["--config", str(config), "analyse", eml(tmp_path, raw)])
    out = capsys.readouterr().out
    assert code == 0
    assert f"report:      bounce about {ours} (the autoreply of contact-support-" in out
    assert "  recipient: gone@example.org userunknown, 5.1.1 550, hard: 550 5.1.1" in out
    code = await main(["--config", str(config), "analyse", "--json", eml(tmp_path, raw)])
    bounce = json.loads(capsys.readouterr().out)["analysis"]["bounce"]
    assert bounce["kind"] == "bounce" and bounce["original_message_id"] == ours
    (recipient,) = bounce["recipients"]
    assert recipient == {
        "address": "gone@example.org",
        "status": "5.1.1",
        "reply_code": 550,
        "reason": "userunknown",
        "hard": True,
        "diagnostic": "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown "
        "in virtual mailbox table",
    }


def test_a_bounce_of_a_resent_message_is_about_the_resend() -> None:
    resent = EmailMessage()
    resent["Resent-Message-ID"] = "<ace.resent.alice@example.com>"
    resent["From"] = "carla@example.org"
    resent["Message-ID"] = "<carla-1@example.org>"
    raw = delivery_status_notification(resent, "support@example.com", "alice@example.com")
    bounce = mime.analyse(raw).bounce
    assert bounce is not None and bounce.original_message_id == "<ace.resent.alice@example.com>"
