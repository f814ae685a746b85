"""Unit tests of ace_email.analysis.language: language detection among a contact centre's
languages."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from ace_email.analysis.language import DEFAULT_LANGUAGES, detect_language, supported_languages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, my order has not arrived yet. Could you please help me?", "en"),
        ("Hej! Min beställning har inte kommit än. Kan ni hjälpa mig?", "sv"),
        ("Guten Tag, meine Bestellung ist noch nicht angekommen. Können Sie helfen?", "de"),
        ("Bonjour, ma commande n'est toujours pas arrivée. Pouvez-vous m'aider ?", "fr"),
        ("Hola, mi pedido todavía no ha llegado. ¿Me pueden ayudar?", "es"),
    ],
)
def test_detects_languages(text: str, expected: str) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize("text", ["", "1234", "   ", "ok", "!!! ??? 42", "\x00\x01"])
def test_none_for_too_little_text(text: str) -> None:
    assert detect_language(text) is None


def test_restricted_to_the_given_languages() -> None:
    text = "Guten Tag, meine Bestellung ist noch nicht angekommen."
    assert detect_language(text, ["en", "sv"]) in ("en", "sv", None)
    assert detect_language(text, ["DE", " en "]) == "de"
    assert detect_language(text, ("de",)) == "de"


def test_unknown_or_no_languages_give_none() -> None:
    assert detect_language("Hello, how are you today?", ["xx", "klingon"]) is None
    assert detect_language("Hello, how are you today?", []) is None


def test_low_confidence_gives_none() -> None:
    assert detect_language("Hello, how are you today?", min_confidence=1.01) is None


def test_defaults_are_known_to_the_model() -> None:
    assert set(DEFAULT_LANGUAGES) <= supported_languages()


def test_concurrent_use_from_threads() -> None:
    texts = [
        "Hello, my order has not arrived yet.",
        "Hej! Min beställning har inte kommit än.",
    ] * 20
    language_sets = [DEFAULT_LANGUAGES, ("en", "sv"), ("sv", "en", "de")] * 14

    def detect(pair: tuple[str, tuple[str, ...]]) -> str | None:
        return detect_language(pair[0], pair[1])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(detect, zip(texts, language_sets, strict=False)))
    assert results == ["en", "sv"] * 20


@pytest.mark.parametrize(
    "text",
    [
        "Здравствуйте! Мой заказ до сих пор не пришёл. Помогите, пожалуйста.",
        "您好\uff0c我的订单还没有到\uff0c请帮帮我\u3002",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
    ],
)
def test_none_for_text_in_another_language(text: str) -> None:
    assert detect_language(text) is None


def test_region_suffixes_are_ignored() -> None:
    assert (
        detect_language("Onde está a minha encomenda? Ainda não chegou.", ["pt-BR", "es_ES"])
        == "pt"
    )
