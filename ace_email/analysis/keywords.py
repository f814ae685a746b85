"""Keyword categories: which of the configured categories an email's words put it in, and
which words did it; and how far those words speak for a language.

Matching, for each category in order:
- The email's subject and text (their first `TEXT_LIMIT` characters) are split into words:
  runs of Unicode letters and digits, lower-cased; words longer than `WORD_LIMIT` are not
  words anyone writes in a keyword and are skipped.
- Words and keywords are compared by their Snowball stems ("invoices", "invoiced" and
  "invoice" share one), in the category's own `language` when it has one, else in the email's;
  an email of unknown language, or of a language without a stemmer, has its words compared as
  written (lower-cased).
- A keyword of several words (a phrase) matches those stems one after another.
- A category matches when any of its `keywords` occurs (with none given, only `required`
  count), every one of its `required` occurs, and none of its `prohibited` does.
- A category with a `language` applies to emails in that language and to emails whose language
  is unknown (its keywords, in that language, are themselves a sign of it); never to emails
  in another language.

Keywords are stemmed once per configuration and language, and words once per process (both
in bounded caches), so an email costs one split and one stemming pass per language its
categories need. Never raises on any text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any

import snowballstemmer  # type: ignore[import-untyped]
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

TEXT_LIMIT = 20_000
WORD_LIMIT = 40
MATCHED_WORDS_LIMIT = 10
MAX_CATEGORIES = 100
MAX_TERMS = 200

# ISO 639-1 code -> Snowball algorithm.
STEMMERS: Mapping[str, str] = MappingProxyType(
    {
        "ar": "arabic",
        "hy": "armenian",
        "eu": "basque",
        "ca": "catalan",
        "cs": "czech",
        "da": "danish",
        "nl": "dutch",
        "en": "english",
        "eo": "esperanto",
        "et": "estonian",
        "fi": "finnish",
        "fr": "french",
        "de": "german",
        "el": "greek",
        "hi": "hindi",
        "hu": "hungarian",
        "id": "indonesian",
        "ga": "irish",
        "it": "italian",
        "lt": "lithuanian",
        "ne": "nepali",
        "no": "norwegian",
        "nb": "norwegian",
        "nn": "norwegian",
        "fa": "persian",
        "pl": "polish",
        "pt": "portuguese",
        "ro": "romanian",
        "ru": "russian",
        "sr": "serbian",
        "st": "sesotho",
        "es": "spanish",
        "sv": "swedish",
        "ta": "tamil",
        "tr": "turkish",
        "yi": "yiddish",
    }
)

_WORD = re.compile(r"[^\W_]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Term = tuple[str, ...]
"""A keyword as stems: one for a word, several for a phrase."""


def primary_language(code: str) -> str:
    """The primary ISO 639-1 code, lower case: "pt-BR" and "PT" are both "pt"."""
    return code.strip().lower().replace("_", "-").split("-")[0]


def stemmer_name(language: str | None) -> str | None:
    """The Snowball algorithm for an ISO 639-1 code; None for none or one without a stemmer."""
    return STEMMERS.get(primary_language(language)) if language else None


def words_of(text: str) -> list[str]:
    """The words of the first `TEXT_LIMIT` characters of `text`, lower-cased, in order."""
    return [w for w in _WORD.findall(text[:TEXT_LIMIT].lower()) if len(w) <= WORD_LIMIT]


@functools.lru_cache(maxsize=100_000)
def _stem(algorithm: str, word: str) -> str:
    # A stemmer keeps state while it works: one each (they cost well under a microsecond).
    return str(snowballstemmer.stemmer(algorithm).stemWord(word))


def stem(algorithm: str | None, word: str) -> str:
    """`word` (lower case) reduced to its stem by `algorithm`; as it is without one."""
    return _stem(algorithm, word) if algorithm else word


@functools.lru_cache(maxsize=4096)
def _terms(keywords: tuple[str, ...], algorithm: str | None) -> tuple[Term, ...]:
    stemmed = (tuple(stem(algorithm, w) for w in words_of(k)) for k in keywords)
    return tuple(term for term in stemmed if term)


def _has_word(value: str) -> str:
    if not words_of(value):
        raise ValueError(f"{value!r} has no letters or digits to match")
    if len(value) > 200:
        raise ValueError(f"{value[:40]!r}... is longer than 200 characters")
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _known_language(value: str) -> str:
    code = primary_language(value)
    if code not in STEMMERS:
        raise ValueError(
            f"unknown language {value!r}: give an ISO 639-1 code with a stemmer "
            f"({', '.join(sorted(STEMMERS))})"
        )
    return code


def _one_line_name(value: str) -> str:
    if _CONTROL.search(value) or value != value.strip():
        raise ValueError(f"{value!r}: a name is one line without leading or trailing spaces")
    return value


Terms = Annotated[
    tuple[Annotated[str, AfterValidator(_has_word)], ...],
    BeforeValidator(_as_list),
    Field(max_length=MAX_TERMS),
]


class Category(BaseModel):
    """A keyword category: a name for emails whose words include its keywords."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_one_line_name)]
    language: Annotated[str, AfterValidator(_known_language)] | None = Field(
        default=None, description="ISO 639-1: its keywords are in it, it applies to email in it"
    )
    keywords: Terms = Field(default=(), description="any of them must occur")
    required: Terms = Field(default=(), description="all of them must occur")
    prohibited: Terms = Field(default=(), description="none of them may occur")


@dataclass(frozen=True)
class _Stemmed:
    """An email's words as stems of one language, with where each stem occurs."""

    stems: tuple[str, ...]
    at: Mapping[str, tuple[int, ...]]

    @classmethod
    def of(cls, words: Sequence[str], algorithm: str | None) -> _Stemmed:
        stems = tuple(stem(algorithm, w) for w in words)
        at: dict[str, list[int]] = {}
        for index, value in enumerate(stems):
            at.setdefault(value, []).append(index)
        return cls(stems, {k: tuple(v) for k, v in at.items()})

    def find(self, term: Term) -> list[int]:
        """Where `term` begins, each place it occurs."""
        starts = self.at.get(term[0], ())
        if len(term) == 1:
            return list(starts)
        return [i for i in starts if self.stems[i : i + len(term)] == term]


@dataclass
class EmailWords:
    """The words of one email (its subject, then its text), and their stems per language,
    each computed once."""

    words: list[str]
    _stemmed: dict[str | None, _Stemmed] = field(default_factory=dict)

    @classmethod
    def of(cls, subject: str, text: str) -> EmailWords:
        return cls(words_of(f"{subject}\n{text[:TEXT_LIMIT]}"))

    def stemmed(self, algorithm: str | None) -> _Stemmed:
        found = self._stemmed.get(algorithm)
        if found is None:
            found = self._stemmed[algorithm] = _Stemmed.of(self.words, algorithm)
        return found


@dataclass(frozen=True)
class CategoryMatch:
    """The categories an email is in, in configuration order, and per category the words
    (or phrases) that put it there: as written, lower-cased, at most `MATCHED_WORDS_LIMIT`."""

    categories: list[str] = field(default_factory=list)
    matched_words: dict[str, list[str]] = field(default_factory=dict)


def match_categories(
    categories: Sequence[Category], words: EmailWords, language: str | None
) -> CategoryMatch:
    """The categories whose keywords `words` include, for an email in `language` (None:
    unknown); see the module's description for the rules."""
    found = CategoryMatch()
    email_language = primary_language(language) if language else None
    for category in categories:
        if category.language and email_language and category.language != email_language:
            continue
        algorithm = stemmer_name(category.language or email_language)
        spans = _spans(category, words.stemmed(algorithm), algorithm)
        if spans is None:
            continue
        found.categories.append(category.name)
        phrases = (" ".join(words.words[start : start + length]) for start, length in spans)
        found.matched_words[category.name] = list(dict.fromkeys(phrases))[:MATCHED_WORDS_LIMIT]
    return found


def _spans(
    category: Category, stemmed: _Stemmed, algorithm: str | None
) -> list[tuple[int, int]] | None:
    """Where the keywords and required words that made `category` match occur, in order of
    appearance; None when it does not match."""
    if not (category.keywords or category.required):
        return None
    if any(stemmed.find(term) for term in _terms(category.prohibited, algorithm)):
        return None
    spans: set[tuple[int, int]] = set()
    for term in _terms(category.required, algorithm):
        starts = stemmed.find(term)
        if not starts:
            return None
        spans.update((start, len(term)) for start in starts)
    any_keyword = not category.keywords
    for term in _terms(category.keywords, algorithm):
        starts = stemmed.find(term)
        any_keyword = any_keyword or bool(starts)
        spans.update((start, len(term)) for start in starts)
    return sorted(spans) if any_keyword else None


def language_evidence(categories: Sequence[Category], words: EmailWords) -> dict[str, int]:
    """Per language, how many keywords and required words of its categories occur in
    `words` (stemmed in that language); languages with none are left out."""
    counts: dict[str, int] = {}
    for category in categories:
        if not category.language:
            continue
        algorithm = stemmer_name(category.language)
        stemmed = words.stemmed(algorithm)
        terms = _terms((*category.keywords, *category.required), algorithm)
        hits = sum(1 for term in terms if stemmed.find(term))
        if hits:
            counts[category.language] = counts.get(category.language, 0) + hits
    return counts


def category_problems(categories: Sequence[Category], languages: Sequence[str]) -> list[str]:
    """Faults that need all categories or the analysis languages, as "categories[i].key: fault"."""
    problems: list[str] = []
    if len(categories) > MAX_CATEGORIES:
        problems.append(
            f"categories: {len(categories)} categories; at most {MAX_CATEGORIES} are allowed"
        )
    first: dict[str, int] = {}
    detected = sorted({primary_language(code) for code in languages})
    for index, category in enumerate(categories):
        where = f"categories[{index}]"
        if category.name in first:
            problems.append(
                f"{where}.name: {category.name!r} is already the name of "
                f"categories[{first[category.name]}]; names must be unique"
            )
        first.setdefault(category.name, index)
        if not (category.keywords or category.required):
            problems.append(
                f"{where}.keywords: {category.name!r} has neither keywords nor required "
                "words; give at least one of them"
            )
        if category.language and category.language not in detected:
            problems.append(
                f"{where}.language: {category.language!r} is not among analysis.languages "
                f"({', '.join(detected)}); no email would be found to be in it"
            )
    return problems
