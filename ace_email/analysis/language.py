"""The language of a text, by py3langid restricted to the languages a contact centre serves.

The model (about 1 s to load) is read once per process, on first use; identifiers restricted
to one language set share its tables and are built once per set. The unrestricted model has
a veto: a text it finds to be in none of the wanted languages gets no language. Other evidence
(words of a language's keyword categories, say) may tip a call the model is unsure of, or
finds close, but never overrides a clear one. Never raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, cast

DEFAULT_LANGUAGES = ("en", "sv", "de", "fr", "es", "da", "no", "fi", "nl", "it", "pt")
MIN_LETTERS = 3
# A text is in none of the wanted languages when the unrestricted model gives them together
# less than this probability (Russian or Chinese text would otherwise come out as, say, "sv").
MIN_WANTED_MASS = 0.05
# Enough text for a confident guess; more only costs time.
TEXT_LIMIT = 4000
# A language with evidence for it is chosen when the model's best guess is unsure, or leads it
# by less than this probability.
CLOSE_MARGIN = 0.3

__all__ = ["DEFAULT_LANGUAGES", "detect_language", "supported_languages"]


class _Identifier(Protocol):
    """The part of `py3langid.langid.LanguageIdentifier` used here."""

    nb_ptc: object
    nb_pc: object
    nb_classes: list[str]
    tk_nextmove: object
    tk_output: object
    tk_row: object

    @property
    def labels(self) -> list[str]: ...

    def set_languages(self, langs: Sequence[str] | None = None) -> None: ...

    def classify(self, text: str) -> tuple[str, float]: ...

    def rank(self, text: str) -> list[tuple[str, float]]: ...


_lock = threading.Lock()
_model: _Identifier | None = None
_restricted: dict[tuple[str, ...], _Identifier | None] = {}


def _load_model() -> _Identifier:
    """The unrestricted model, loaded on first use; call with `_lock` held."""
    global _model
    if _model is None:
        from py3langid.langid import (  # type: ignore[import-untyped]
            MODEL_FILE,
            LanguageIdentifier,
        )

        _model = cast(_Identifier, LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True))
    return _model


def _identifier(languages: tuple[str, ...]) -> _Identifier | None:
    """An identifier restricted to `languages` (known codes only), or None if none is known."""
    found = _restricted.get(languages)
    if found is not None or languages in _restricted:
        return found
    with _lock:
        if languages in _restricted:
            return _restricted[languages]
        model = _load_model()
        known = set(model.labels)
        wanted = sorted({code for code in languages if code in known})
        identifier: _Identifier | None = None
        if wanted:
            # A copy sharing the model's tables, then cut down to the wanted languages.
            factory = cast(Callable[..., _Identifier], type(model))
            identifier = factory(
                model.nb_ptc,
                model.nb_pc,
                model.nb_classes,
                model.tk_nextmove,
                model.tk_output,
                norm_probs=True,
                tk_row=model.tk_row,
            )
            identifier.set_languages(wanted)
        _restricted[languages] = identifier
        return identifier


def preload() -> None:
    """Load the model now (a worker does it at its start, on a thread of its own), so that the
    first emails' analysis does not wait 2-3 s for it with every activity thread."""
    with _lock:
        _load_model()


def supported_languages() -> frozenset[str]:
    """The language codes the model knows (loads the model)."""
    with _lock:
        return frozenset(_load_model().labels)


def _normalise(languages: Sequence[str]) -> tuple[str, ...]:
    """Lower-case primary codes: "pt-BR" and "PT" are both "pt"."""
    return tuple(
        sorted({str(code).strip().lower().replace("_", "-").split("-")[0] for code in languages})
    )


def detect_language(
    text: str,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
    *,
    min_confidence: float = 0.5,
    evidence: Mapping[str, int] | None = None,
) -> str | None:
    """The ISO 639-1 code of the language `text` is written in, among `languages`.

    `languages` are ISO 639-1 codes; region suffixes are ignored ("pt-BR" is "pt").

    None when the text has fewer than three letters, when the best guess's probability
    (among `languages` only) is below `min_confidence`, when the text looks written in a
    language not among `languages`, or when no code in `languages` is known to the model.

    `evidence` counts, per language, words of `text` known to be of it (a category's keywords).
    The language among `languages` with the most (ties: the likelier) is chosen when the best
    guess is below `min_confidence` or leads it by less than `CLOSE_MARGIN`; the veto above
    still holds.
    """
    try:
        sample = text[:TEXT_LIMIT]
        if sum(1 for char in sample if char.isalpha()) < MIN_LETTERS:
            return None
        identifier = _identifier(_normalise(languages))
        if identifier is None:
            return None
        if evidence:
            ranked = [(str(code), float(p)) for code, p in identifier.rank(sample)]
            language, probability = ranked[0]
            tipped = _tipped(ranked, evidence, min_confidence)
        else:
            language, probability = identifier.classify(sample)
            tipped = None
        if tipped is None and probability < min_confidence:
            return None
        wanted = set(identifier.nb_classes)
        model = _model  # loaded by _identifier
        if model is None:
            return None
        if sum(p for code, p in model.rank(sample) if code in wanted) < MIN_WANTED_MASS:
            return None
        return tipped or str(language)
    except Exception:
        return None


def _tipped(
    ranked: Sequence[tuple[str, float]], evidence: Mapping[str, int], min_confidence: float
) -> str | None:
    """The language the evidence tips an unsure or close call to; None if it does not."""
    probability = dict(ranked)
    counted = {
        code: count
        for code, count in ((_normalise([c])[0], n) for c, n in evidence.items())
        if count > 0 and code in probability
    }
    if not counted:
        return None
    favoured = max(counted, key=lambda code: (counted[code], probability[code]))
    best = ranked[0][1]
    if best < min_confidence or best - probability[favoured] < CLOSE_MARGIN:
        return favoured
    return None
