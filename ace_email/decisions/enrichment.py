"""An email's analysis completed around its rules: before them, the values the account's
patterns extract (`data`), its language where keyword categories tip an unsure call, and the
keyword categories it is in (`categories`, `matched_words`), so that conditions can ask for
them; after them, the rule, its category, the rule's own data and a rule's quarantine.

Pure functions of the analysis, the decoded text and the configuration: the worker's intake
and the `analyse` preview both use them, so a preview shows what the worker does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ace_email.analysis.keywords import (
    Category,
    CategoryMatch,
    EmailWords,
    language_evidence,
    match_categories,
)
from ace_email.analysis.language import detect_language
from ace_email.analysis.mime.text import LANGUAGE_BODY_LIMIT
from ace_email.contracts.message import Analysis
from ace_email.decisions.extraction import extract
from ace_email.decisions.rules import Decision


def enrich(
    analysis: Analysis,
    text: str,
    *,
    patterns: Mapping[str, str],
    categories: Sequence[Category],
    languages: Sequence[str] | None,
) -> Analysis:
    """`analysis` with the `data` its account's `patterns` find in the subject, else in `text`
    (the decoded body), and the keyword `categories` it is in.

    `languages` are those the detector chooses among (None: the analysis detected none, and
    the language stays as it is). Where words of a language's categories occur, the language
    is detected again with them as evidence (see `detect_language`) before the categories are
    matched.
    """
    data = extract(patterns, analysis.subject, text) if patterns else {}
    language = analysis.language
    found = CategoryMatch()
    if categories:
        words = EmailWords.of(analysis.subject, text)
        if languages:
            language = _language(analysis, text, words, categories, languages)
        found = match_categories(categories, words, language)
    return analysis.model_copy(
        update={
            "data": data,
            "language": language,
            "categories": found.categories,
            "matched_words": found.matched_words,
        }
    )


def _language(
    analysis: Analysis,
    text: str,
    words: EmailWords,
    categories: Sequence[Category],
    languages: Sequence[str],
) -> str | None:
    """The email's language, with its categories' keywords as evidence; detected again only
    where they speak for a language other than the one found."""
    evidence = language_evidence(categories, words)
    if not evidence:
        return analysis.language
    if evidence.get(analysis.language or "", 0) == max(evidence.values()):
        return analysis.language
    sample = f"{analysis.subject}\n{text[:LANGUAGE_BODY_LIMIT]}"
    return detect_language(sample, languages, evidence=evidence) or analysis.language


def routed(analysis: Analysis, decision: Decision, *, released: bool = False) -> Analysis:
    """`analysis` with what its rules decided: the rule, the category, the matched rule's data
    over the account's, and the rule's quarantine (none for a message an operator released)."""
    routing = decision.routing
    reason = routing.quarantine_reason if not released else None
    return analysis.model_copy(
        update={
            "rule": routing.rule,
            "category": routing.category,
            "data": {**analysis.data, **decision.data},
            "quarantine_reason": f"rule '{routing.rule}': {reason}" if reason else None,
        }
    )
