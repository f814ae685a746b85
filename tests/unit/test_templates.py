"""Automatic-reply templates: language choice, quoting, escaping, validation, the sandbox."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ace_email.compose.messages import build_auto_reply
from ace_email.compose.templates import (
    BUILTIN_TEMPLATES,
    ReplyContext,
    TemplateError,
    TemplateSettings,
    builtin_template,
    choose_language,
    render,
    template_named,
    text_to_html,
)

CONTEXT = ReplyContext(
    reference="ABCD1234",
    sender_name="Carla Example",
    sender_address="carla@example.org",
    subject="Broken kettle",
    queue="support",
    office_hours="Mon-Fri 08:00-17:00 (Europe/Stockholm)",
    response_time="one working day",
    account="support",
)

GREETINGS = TemplateSettings(
    text={
        "en": "Hello {{ sender_name }} [{{ language }}]",
        "sv": "Hej {{ sender_name }} [{{ language }}]",
        "pt": "Olá {{ sender_name }} [{{ language }}]",
    },
    fallback_language="sv",
)


def _settings(**fields: Any) -> TemplateSettings:
    return TemplateSettings.model_validate(fields)


def _refusal(**fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        _settings(**fields)
    return str(caught.value)


@pytest.mark.parametrize(
    ("wanted", "chosen", "greeting"),
    [
        ("en", "en", "Hello"),
        ("sv", "sv", "Hej"),
        ("SV", "sv", "Hej"),
        ("pt-BR", "pt", "Olá"),
        ("pt_BR", "pt", "Olá"),
        ("en-GB", "en", "Hello"),
        ("de", "sv", "Hej"),
        (None, "sv", "Hej"),
        ("", "sv", "Hej"),
    ],
)
def test_language_exact_then_base_then_fallback(
    wanted: str | None, chosen: str, greeting: str
) -> None:
    reply = render(GREETINGS, wanted, CONTEXT)
    assert reply.language == chosen
    assert reply.text == f"{greeting} Carla Example [{chosen}]\n"


def test_region_templates_and_missing_fallback() -> None:
    template = _settings(text={"fr": "Bonjour", "pt-BR": "Oi", "pt": "Olá"}, fallback_language="en")
    assert choose_language(template, "pt-BR") == "pt-br"
    assert choose_language(template, "pt-PT") == "pt"
    assert choose_language(template, "de") == "fr"


def test_html_is_made_from_the_text_when_not_given() -> None:
    template = _settings(text={"en": "Dear {{ sender_name }},\n\nline one\nline two"})
    reply = render(template, "en", CONTEXT.model_copy(update={"sender_name": "A & <B>"}))
    assert reply.text == "Dear A & <B>,\n\nline one\nline two\n"
    assert '<html lang="en">' in reply.html
    assert "<p>Dear A &amp; &lt;B&gt;,</p>\n<p>line one<br>\nline two</p>" in reply.html
    assert text_to_html("x", '"><script>').count("<script>") == 0


def test_html_templates_escape_variables_and_text_templates_do_not() -> None:
    template = _settings(
        text={"en": "Hi {{ sender_name }}"},
        html={"en": "<p>Hi {{ sender_name }}</p>{{ '<b>ok</b>' | safe }}"},
    )
    context = CONTEXT.model_copy(update={"sender_name": "<script>alert(1)</script>"})
    reply = render(template, "en", context)
    assert reply.text == "Hi <script>alert(1)</script>\n"
    assert reply.html == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p><b>ok</b>\n"


def test_quote_before_and_after_with_prefix_and_limit() -> None:
    original = "First line\r\n\r\nSecond <line>\n" + "x" * 50
    after = _settings(text={"en": "Thanks."}, quote="after", quote_prefix="| ", quote_limit=30)
    reply = render(after, "en", CONTEXT, original)
    assert reply.text == "Thanks.\n\n| First line\n|\n| Second <line>\n| xxxx [\u2026]\n"
    assert reply.html.index("Thanks.") < reply.html.index("<blockquote")
    assert "Second &lt;line&gt;" in reply.html and reply.html.endswith("</body>\n</html>\n")

    before = after.model_copy(update={"quote": "before"})
    reply = render(before, "en", CONTEXT, original)
    assert reply.text.startswith("| First line\n|\n| Second <line>\n")
    assert reply.text.endswith("[\u2026]\n\nThanks.\n")
    assert reply.html.index("<blockquote") < reply.html.index("Thanks.")


def test_quote_goes_inside_the_body_of_an_html_template() -> None:
    template = _settings(
        text={"en": "Thanks."},
        html={"en": "<html><body class='x'>\n<p>Thanks.</p>\n</body></html>"},
        quote="after",
    )
    html = render(template, "en", CONTEXT, "Original").html
    assert html.index("<p>Thanks.</p>") < html.index("<blockquote") < html.index("</body>")
    html = render(template.model_copy(update={"quote": "before"}), "en", CONTEXT, "Original").html
    assert html.index("<body class='x'>") < html.index("<blockquote") < html.index("Thanks.")


def test_no_quote_without_an_original_or_when_off() -> None:
    quoting = _settings(text={"en": "Thanks."}, quote="after")
    assert render(quoting, "en", CONTEXT, None).text == "Thanks.\n"
    assert render(quoting, "en", CONTEXT, " \n ").text == "Thanks.\n"
    assert render(_settings(text={"en": "Thanks."}), "en", CONTEXT, "Original").text == "Thanks.\n"


def test_context_values_are_single_lines() -> None:
    context = ReplyContext(reference="R", sender_name="Carla\r\nBcc: x@example.org", subject="a\nb")
    assert context.sender_name == "Carla Bcc: x@example.org"
    assert context.subject == "a b"


def test_unknown_variable_is_refused_naming_the_language() -> None:
    message = _refusal(text={"en": "Hello", "sv": "Hej {{ customer }}"})
    assert "language 'sv' (text)" in message and "unknown variable(s) customer" in message
    message = _refusal(text={"en": "x"}, html={"en": "{% if queue %}{{ agent }}{% endif %}"})
    assert "language 'en' (html)" in message and "agent" in message


def test_syntax_error_names_the_language_and_line() -> None:
    message = _refusal(text={"de": "Hallo\n\n{% if sender_name %}\n{{ sender_name }"})
    assert "language 'de' (text): syntax error on line 4" in message


def test_settings_need_a_language_and_consistent_sources() -> None:
    assert "defines no language" in _refusal()
    assert "has an HTML template but no text one" in _refusal(
        text={"en": "x"}, html={"sv": "<p>x</p>"}
    )
    assert "both an inline and a file text" in _refusal(text={"en": "x"}, files={"en": "en.txt"})
    assert "not a language code" in _refusal(text={"english!": "x"})
    assert "given twice" in _refusal(text={"pt-BR": "x", "pt-br": "y"})
    assert "quote_prefix" in _refusal(text={"en": "x"}, quote_prefix=">\n")
    assert "quote" in _refusal(text={"en": "x"}, quote="inline")
    assert "Extra inputs are not permitted" in _refusal(text={"en": "x"}, subject="y")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ sender_name.__class__.__mro__[1].__subclasses__() }}",
        "{{ context.__init__.__globals__ }}",
        "{{ sender_name.format.__globals__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ 'x' * 1000000 }}",
        "{{ 10 ** 100000 }}",
        "{% for i in range(10000000) %}{% endfor %}",
    ],
)
def test_the_sandbox_refuses_escapes_at_validation(source: str) -> None:
    message = _refusal(text={"en": source})
    assert "language 'en' (text)" in message


def test_errors_at_render_are_template_errors() -> None:
    template = _settings(
        text={"en": "{% if sender_name == 'Mallory' %}{{ ''.__class__.__mro__ }}{% endif %}ok"}
    )
    assert render(template, "en", CONTEXT).text == "ok\n"
    mallory = CONTEXT.model_copy(update={"sender_name": "Mallory"})
    with pytest.raises(TemplateError, match=r"template 'ack', language 'en' \(text\): refused"):
        render(template, "en", mallory, name="ack")
    dividing = _settings(text={"en": "{% if subject == 'zero' %}{{ 1 / 0 }}{% endif %}"})
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        render(dividing, "en", CONTEXT.model_copy(update={"subject": "zero"}))
    assert issubclass(TemplateError, ValueError)


def test_files_are_read_relative_to_the_base_directory(tmp_path: Path) -> None:
    (tmp_path / "replies").mkdir()
    (tmp_path / "replies" / "sv.txt").write_text("Hej {{ sender_name }}!\n", encoding="utf-8")
    (tmp_path / "replies" / "sv.html").write_text("<p>Hej {{ sender_name }}!</p>\n")
    absolute = tmp_path / "en.txt"
    absolute.write_text("Hello {{ sender_name }}!\n")
    template = _settings(
        text={"de": "Hallo"},
        files={"sv": "replies/sv.txt", "en": str(absolute)},
        html_files={"sv": "replies/sv.html"},
    )
    with pytest.raises(TemplateError, match="not loaded"):
        render(template, "sv", CONTEXT)
    loaded = template.resolve_files(tmp_path)
    assert loaded.files == {} and loaded.html_files == {}
    assert loaded.languages == ["de", "sv", "en"]
    reply = render(loaded, "sv", CONTEXT)
    assert (reply.text, reply.html) == ("Hej Carla Example!\n", "<p>Hej Carla Example!</p>\n")
    assert render(loaded, "en", CONTEXT).text == "Hello Carla Example!\n"
    assert _settings(text={"en": "x"}).resolve_files(tmp_path).text == {"en": "x"}


def test_an_unreadable_or_broken_file_is_named(tmp_path: Path) -> None:
    missing = _settings(files={"en": "nowhere/en.txt"})
    with pytest.raises(TemplateError) as caught:
        missing.resolve_files(tmp_path)
    assert f"language 'en' (text file {tmp_path / 'nowhere' / 'en.txt'})" in str(caught.value)
    assert "cannot be read" in str(caught.value)

    (tmp_path / "latin1.txt").write_bytes("Hej Åsa".encode("latin-1"))
    with pytest.raises(TemplateError, match=r"latin1\.txt\): not UTF-8"):
        _settings(files={"sv": "latin1.txt"}).resolve_files(tmp_path)

    (tmp_path / "broken.txt").write_text("Hi {{ nobody }}")
    with pytest.raises(TemplateError, match=r"broken\.txt\): unknown variable\(s\) nobody"):
        _settings(files={"en": "broken.txt"}).resolve_files(tmp_path)


@pytest.mark.parametrize("language", ["en", "sv", "de", "fr", "es"])
def test_builtin_default_in_five_languages(language: str) -> None:
    default = builtin_template("default")
    assert set(default.languages) == {"en", "sv", "de", "fr", "es"}
    reply = render(default, language, CONTEXT)
    assert reply.language == language
    assert "ABCD1234" in reply.text and "[#ABCD1234]" in reply.text
    assert "Carla Example" in reply.text and "Broken kettle" in reply.text
    assert "one working day" in reply.text
    assert "Mon-Fri 08:00-17:00 (Europe/Stockholm)" in reply.text
    assert f'<html lang="{language}">' in reply.html and "[#ABCD1234]" in reply.html
    bare = render(default, language, ReplyContext(reference="ABCD1234"))
    assert "[#ABCD1234]" in bare.text
    assert "{" not in bare.text and "\n\n\n" not in bare.text
    assert "one working day" not in bare.text and "Europe/Stockholm" not in bare.text


def test_builtin_default_falls_back_to_english_and_can_be_overridden() -> None:
    assert sorted(BUILTIN_TEMPLATES) == ["default"]
    assert render(builtin_template("default"), "ja", CONTEXT).language == "en"
    own = _settings(text={"en": "Ours"})
    assert template_named("default", {"default": own}) is own
    assert template_named("default", {}) == builtin_template("default")
    with pytest.raises(TemplateError, match="no template named 'vip'"):
        template_named("vip", {"default": own})


def test_a_template_cannot_add_headers_to_the_message() -> None:
    template = _settings(text={"en": "Hello\r\nX-Evil: 1\r\n{{ subject }}"})
    context = CONTEXT.model_copy(update={"subject": "Hi\r\nBcc: victim@example.org"})
    reply = render(template, "en", context)
    raw = build_auto_reply(
        from_address="noreply@example.com",
        to_address="carla@example.org",
        subject=context.subject,
        reference=context.reference,
        message_id="<m@example.com>",
        date=datetime(2026, 11, 27, tzinfo=UTC),
        in_reply_to=None,
        references=[],
        text=reply.text,
        html=reply.html,
    )
    message = email.message_from_bytes(raw, policy=default_policy)
    assert isinstance(message, EmailMessage)
    assert "X-Evil" not in message and "Bcc" not in message
    assert [a.addr_spec for a in message["To"].addresses] == ["carla@example.org"]
    plain = message.get_body(("plain",))
    assert plain is not None and "X-Evil: 1" in plain.get_content()
