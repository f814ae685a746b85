"""Automatic-reply templates: Jinja sources per language, compiled and rendered in a sandbox.

A template has a plain-text source per language and, optionally, an HTML source; without
one, the HTML alternative is made from the rendered text. Sources are checked when the
configuration is loaded: they must compile, use only the variables of `ReplyContext`, and
render against sample contexts, so a broken template fails at start-up, not on a customer.
The contact's extracted data is `{{ data.order_id }}`: a name without a value is empty.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal, Self

import jinja2
from jinja2 import StrictUndefined, meta
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ace_email.compose.messages import body_text, one_line

Kind = Literal["text", "html"]
QuotePlacement = Literal["none", "before", "after"]

BUILTIN_TEMPLATES: frozenset[str] = frozenset({"default"})
MAX_TEMPLATE_FILE_BYTES = 256 * 1024
MAX_REPEAT = 100_000

_LANGUAGE = re.compile(r"[a-z]{2,8}(-[a-z0-9]{1,8})*")
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class TemplateError(ValueError):
    """A template that cannot be loaded, compiled or rendered: a permanent fault."""


class ReplyContext(BaseModel):
    """The variables a template sees. Each is one line of text: controls become spaces."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference: str = Field(description='the contact reference, e.g. "ABCD1234"')
    sender_name: str = ""
    sender_address: str = ""
    subject: str = Field(default="", description="the original subject")
    queue: str = ""
    office_hours: str = Field(default="", description='e.g. "Mon-Fri 08:00-17:00 (UTC)"')
    response_time: str = Field(default="", description='e.g. "one working day"')
    account: str = ""
    language: str = Field(default="", description="the language the reply is written in")
    data: dict[str, str] = Field(default={}, description="the contact's extracted data")
    closed: bool = Field(default=False, description="the entrance is outside its opening hours")
    next_opening: str = Field(default="", description='e.g. "Mon 2026-12-07 08:00 (Europe/...)"')

    @field_validator("*")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): one_line(str(v), 998) for k, v in value.items()}
        return one_line(value, 998) if isinstance(value, str) else value


class TemplateData:
    """`data` as a template sees it: `data.order_id` or `data["order_id"]`; a name the contact
    has no value for is empty text, never an error."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._values.get(name, "")

    def __getitem__(self, name: str) -> str:
        return self._values.get(name, "")

    def __bool__(self) -> bool:
        return bool(self._values)

    def __str__(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in self._values.items())


VARIABLES: frozenset[str] = frozenset(ReplyContext.model_fields)

_SAMPLES = (
    ReplyContext(
        reference="ABCD1234",
        sender_name="Carla Example",
        sender_address="carla@example.org",
        subject="Broken kettle",
        queue="support",
        office_hours="Mon-Fri 08:00-17:00 (Europe/Stockholm)",
        response_time="one working day",
        account="support",
        language="en",
        data={"order_id": "12345"},
    ),
    ReplyContext(reference="ABCD1234"),
)


class RenderedReply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    language: str = Field(description="the language used")
    text: str
    html: str


class _Sandbox(ImmutableSandboxedEnvironment):
    """The Jinja sandbox, also refusing arithmetic that would exhaust memory ('x' * 10**9)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 1000:
            raise SecurityError(f"exponent {right} is too large")
        if operator == "*":
            for sized, count in ((left, right), (right, left)):
                if (
                    isinstance(sized, str | list | tuple)
                    and isinstance(count, int)
                    and len(sized) * count > MAX_REPEAT
                ):
                    raise SecurityError(f"repetition beyond {MAX_REPEAT} items")
        return super().call_binop(context, operator, left, right)


def _environment(autoescape: bool) -> _Sandbox:
    return _Sandbox(
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


_ENVIRONMENTS: dict[Kind, _Sandbox] = {"text": _environment(False), "html": _environment(True)}


class _UnknownVariables(jinja2.TemplateError):
    pass


@lru_cache(maxsize=256)
def _compile(kind: Kind, source: str) -> jinja2.Template:
    environment = _ENVIRONMENTS[kind]
    tree = environment.parse(source)
    unknown = meta.find_undeclared_variables(tree) - VARIABLES - set(environment.globals)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise _UnknownVariables(
            f"unknown variable(s) {names}; known: {', '.join(sorted(VARIABLES))}"
        )
    return environment.from_string(tree)


def _describe(exc: Exception) -> str:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error on line {exc.lineno}: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"refused by the sandbox: {exc}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined: {exc.message}"
    if isinstance(exc, jinja2.TemplateError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _render_source(kind: Kind, source: str, context: ReplyContext, where: str) -> str:
    try:
        variables = context.model_dump()
        variables["data"] = TemplateData(context.data)
        return _compile(kind, source).render(variables)
    except Exception as exc:
        raise TemplateError(f"{where}: {_describe(exc)}") from None


def _check(kind: Kind, source: str, where: str) -> None:
    """Compile `source` and render it against sample contexts; TemplateError if it fails."""
    for sample in _SAMPLES:
        _render_source(kind, source, sample, where)


def normal_language(code: str) -> str:
    """A language code as templates are keyed: lower case, `-` between parts (pt_BR → pt-br)."""
    return code.strip().lower().replace("_", "-")


def _languages(sources: dict[str, str]) -> dict[str, str]:
    normal: dict[str, str] = {}
    for code, source in sources.items():
        key = normal_language(code)
        if not _LANGUAGE.fullmatch(key):
            raise ValueError(f"{code!r} is not a language code (like en, sv or pt-BR)")
        if key in normal:
            raise ValueError(f"language {key!r} is given twice")
        normal[key] = source
    return normal


class TemplateSettings(BaseModel):
    """One named automatic-reply template: sources per language, inline or in files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: dict[str, str] = Field(default={}, description="language → plain-text source")
    html: dict[str, str] = Field(default={}, description="language → HTML source (optional)")
    files: dict[str, str] = Field(default={}, description="language → path of a text source")
    html_files: dict[str, str] = Field(default={}, description="language → path of HTML")
    fallback_language: str = Field(
        default="en", description="for other languages; if undefined too, the first defined"
    )
    quote: QuotePlacement = "none"
    quote_prefix: str = "> "
    quote_limit: int = Field(default=4000, ge=1, le=100_000)

    @field_validator("text", "html", "files", "html_files")
    @classmethod
    def _by_language(cls, sources: dict[str, str]) -> dict[str, str]:
        return _languages(sources)

    @field_validator("fallback_language")
    @classmethod
    def _fallback(cls, value: str) -> str:
        return normal_language(value)

    @field_validator("quote_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if _BODY_CONTROL.search(value) or "\n" in value or len(value) > 20:
            raise ValueError("must be at most 20 characters on one line")
        return value

    @model_validator(mode="after")
    def _sources_work(self) -> Self:
        if not self.languages:
            raise ValueError("defines no language: give text or files, e.g. text.en = '...'")
        for inline, in_file, what in (
            (self.text, self.files, "text"),
            (self.html, self.html_files, "HTML"),
        ):
            both = sorted(inline.keys() & in_file.keys())
            if both:
                raise ValueError(f"language {both[0]!r} has both an inline and a file {what}")
        for language in [*self.html, *self.html_files]:
            if language not in self.languages:
                raise ValueError(f"language {language!r} has an HTML template but no text one")
        checks: tuple[tuple[Kind, dict[str, str]], ...] = (("text", self.text), ("html", self.html))
        for kind, sources in checks:
            for language, source in sources.items():
                _check(kind, source, f"language {language!r} ({kind})")
        return self

    @property
    def languages(self) -> list[str]:
        """The languages with a text source, in the order defined (inline ones first)."""
        return [*self.text, *(code for code in self.files if code not in self.text)]

    def resolve_files(self, base_dir: Path) -> TemplateSettings:
        """This template with `files` and `html_files` read (UTF-8) into `text` and `html`.

        Relative paths are taken from `base_dir`, normally the configuration file's folder.
        Raises TemplateError naming the file if one is unreadable or does not work.
        """
        if not (self.files or self.html_files):
            return self
        text = dict(self.text)
        html = dict(self.html)
        reads: tuple[tuple[Kind, dict[str, str], dict[str, str]], ...] = (
            ("text", self.files, text),
            ("html", self.html_files, html),
        )
        for kind, paths, sources in reads:
            for language, name in paths.items():
                path = Path(name).expanduser()
                path = path if path.is_absolute() else base_dir / path
                where = f"language {language!r} ({kind} file {path})"
                sources[language] = _read(path, where)
                _check(kind, sources[language], where)
        update = {"text": text, "html": html, "files": {}, "html_files": {}}
        return TemplateSettings.model_validate(self.model_dump() | update)


def _read(path: Path, where: str) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_TEMPLATE_FILE_BYTES + 1)
    except OSError as exc:
        raise TemplateError(f"{where}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_TEMPLATE_FILE_BYTES:
        raise TemplateError(f"{where}: larger than {MAX_TEMPLATE_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{where}: not UTF-8 (byte {exc.start})") from None


def choose_language(template: TemplateSettings, language: str | None) -> str:
    """The exact language if defined, else its base (pt-BR → pt), else the fallback."""
    available = template.languages
    if language:
        wanted = normal_language(language)
        for candidate in (wanted, wanted.partition("-")[0]):
            if candidate in available:
                return candidate
    if template.fallback_language in available:
        return template.fallback_language
    return available[0]


def render(
    template: TemplateSettings,
    language: str | None,
    context: ReplyContext,
    original_text: str | None = None,
    *,
    name: str = "template",
) -> RenderedReply:
    """The reply's text and HTML in the best language for `language` (see choose_language).

    Raises TemplateError (a ValueError) naming the template and language if rendering fails,
    including anything the sandbox refuses.
    """
    if template.files or template.html_files:
        raise TemplateError(f"template {name!r}: its files are not loaded (resolve_files)")
    chosen = choose_language(template, language)
    context = context.model_copy(update={"language": chosen})
    where = f"template {name!r}, language {chosen!r}"
    text = body_text(_render_source("text", template.text[chosen], context, f"{where} (text)"))
    html_source = template.html.get(chosen)
    if html_source is None:
        html = text_to_html(text, chosen)
    else:
        html = body_text(_render_source("html", html_source, context, f"{where} (html)"))
    excerpt = _excerpt(original_text or "", template.quote_limit)
    if template.quote != "none" and excerpt:
        before = template.quote == "before"
        quoted = _quoted(excerpt, template.quote_prefix)
        text = f"{quoted}\n\n{text}" if before else f"{text}\n{quoted}\n"
        html = _insert_html(html, _blockquote(excerpt), before)
    return RenderedReply(language=chosen, text=text, html=html)


def template_named(
    name: str, configured: Mapping[str, TemplateSettings] | None = None
) -> TemplateSettings:
    """A configured template by name, else the builtin one of that name."""
    if configured and name in configured:
        return configured[name]
    if name in BUILTIN_TEMPLATES:
        return builtin_template(name)
    known = sorted({*(configured or {}), *BUILTIN_TEMPLATES})
    raise TemplateError(f"no template named {name!r}; known: {', '.join(known)}")


@cache
def builtin_template(name: str) -> TemplateSettings:
    """A template that needs no configuration; a configured one of the same name wins."""
    if name != "default":
        raise TemplateError(f"no builtin template named {name!r}")
    return TemplateSettings(text=_DEFAULT_TEXT)


def _excerpt(original: str, limit: int) -> str:
    text = body_text(original).strip("\n")
    if len(text) > limit:
        text = text[:limit].rstrip() + " [\u2026]"
    return text


def _quoted(text: str, prefix: str) -> str:
    return "\n".join(
        (prefix + line).rstrip() if line.strip() else prefix.rstrip() for line in text.split("\n")
    )


def _paragraphs(text: str) -> str:
    blocks = [block for block in re.split(r"\n[ \t]*\n", text.strip("\n")) if block.strip()]
    return "\n".join(
        "<p>" + "<br>\n".join(html_lib.escape(line) for line in block.split("\n")) + "</p>"
        for block in blocks
    )


def text_to_html(text: str, language: str) -> str:
    """An HTML document of plain text: escaped, blank lines as paragraphs, newlines as <br>."""
    return (
        f'<!DOCTYPE html>\n<html lang="{html_lib.escape(language)}">\n'
        '<head><meta charset="utf-8"></head>\n'
        f"<body>\n{_paragraphs(text)}\n</body>\n</html>\n"
    )


def _blockquote(text: str) -> str:
    return (
        '<blockquote style="margin:0 0 0 .8ex;border-left:2px solid #ccc;padding-left:1ex">\n'
        f"{_paragraphs(text)}\n</blockquote>\n"
    )


def _insert_html(document: str, fragment: str, before: bool) -> str:
    """`fragment` at the start or end of the document's body (or of the whole text)."""
    if before:
        body = re.search(r"<body\b[^>]*>\n?", document, re.IGNORECASE)
        at = body.end() if body else 0
    else:
        end = document.lower().rfind("</body")
        at = end if end >= 0 else len(document)
    return document[:at] + fragment + document[at:]


_DEFAULT_TEXT: dict[str, str] = {
    "en": """\
{% if sender_name %}
Dear {{ sender_name }},
{% else %}
Hello,
{% endif %}

Thank you for your email. We have received it and registered it under the reference \
{{ reference }}.

A member of our team will get back to you as soon as possible.
{% if response_time %}
Expected response time: {{ response_time }}
{% endif %}
{% if office_hours %}
Our office hours: {{ office_hours }}
{% endif %}

If you write to us again about the same matter, please keep [#{{ reference }}] in the \
subject line so that your message is added to the same case.

Your subject: {{ subject or "(no subject)" }}

This is an automatic reply.
""",
    "sv": """\
{% if sender_name %}
Hej {{ sender_name }}!
{% else %}
Hej!
{% endif %}

Tack för ditt mejl. Vi har tagit emot det och registrerat det under ärendenummer \
{{ reference }}.

En av våra medarbetare återkommer till dig så snart som möjligt.
{% if response_time %}
Beräknad svarstid: {{ response_time }}
{% endif %}
{% if office_hours %}
Våra öppettider: {{ office_hours }}
{% endif %}

Om du skriver till oss igen i samma ärende, behåll gärna [#{{ reference }}] i ämnesraden \
så att ditt meddelande kopplas till rätt ärende.

Ditt ämne: {{ subject or "(inget ämne)" }}

Det här är ett automatiskt svar.
""",
    "de": """\
{% if sender_name %}
Guten Tag {{ sender_name }},
{% else %}
Guten Tag,
{% endif %}

vielen Dank für Ihre E-Mail. Wir haben sie erhalten und unter der Vorgangsnummer \
{{ reference }} erfasst.

Unser Team wird sich so bald wie möglich bei Ihnen melden.
{% if response_time %}
Voraussichtliche Antwortzeit: {{ response_time }}
{% endif %}
{% if office_hours %}
Unsere Geschäftszeiten: {{ office_hours }}
{% endif %}

Wenn Sie uns in derselben Angelegenheit erneut schreiben, behalten Sie bitte \
[#{{ reference }}] in der Betreffzeile bei, damit Ihre Nachricht dem richtigen Vorgang \
zugeordnet wird.

Ihr Betreff: {{ subject or "(kein Betreff)" }}

Dies ist eine automatisch versandte Nachricht.
""",
    "fr": """\
{% if sender_name %}
Bonjour {{ sender_name }},
{% else %}
Bonjour,
{% endif %}

Nous vous remercions de votre message. Nous l'avons bien reçu et l'avons enregistré sous \
la référence {{ reference }}.

Un membre de notre équipe vous répondra dans les meilleurs délais.
{% if response_time %}
Délai de réponse prévu\u00a0: {{ response_time }}
{% endif %}
{% if office_hours %}
Nos horaires d'ouverture\u00a0: {{ office_hours }}
{% endif %}

Si vous nous écrivez de nouveau au sujet de cette demande, merci de conserver \
[#{{ reference }}] dans l'objet de votre message afin qu'il soit rattaché au bon dossier.

Objet de votre message\u00a0: {{ subject or "(sans objet)" }}

Ceci est une réponse automatique.
""",
    "es": """\
{% if sender_name %}
Hola, {{ sender_name }}:
{% else %}
Hola:
{% endif %}

Gracias por su correo electrónico. Lo hemos recibido y registrado con la referencia \
{{ reference }}.

Un miembro de nuestro equipo le responderá lo antes posible.
{% if response_time %}
Tiempo de respuesta previsto: {{ response_time }}
{% endif %}
{% if office_hours %}
Nuestro horario de atención: {{ office_hours }}
{% endif %}

Si vuelve a escribirnos sobre este mismo asunto, le rogamos que mantenga \
[#{{ reference }}] en el asunto para que su mensaje se asocie al mismo caso.

Asunto de su mensaje: {{ subject or "(sin asunto)" }}

Este es un mensaje automático.
""",
}
