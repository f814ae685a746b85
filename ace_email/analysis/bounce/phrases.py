"""How the words of a bounce reason are written down: lower-case phrases, and phrases in parts
that must appear in order ("user ", " does not exist"). The reasons and the sense of each are
Sisimai's (libsisimai.org); the lists, gathered from real bounces, are in `phrases_recipient`,
`phrases_sender` and `phrases_transport`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phrases:
    """The words of one reason: any of `words`, or all of one of `ordered` in order, unless
    one of `unless` is there."""

    words: tuple[str, ...] = ()
    ordered: tuple[tuple[str, ...], ...] = ()
    unless: tuple[str, ...] = ()

    def match(self, text: str) -> bool:
        """Whether lower-case `text` says this."""
        if not text or any(word in text for word in self.unless):
            return False
        return any(word in text for word in self.words) or any(
            aligned(text, parts) for parts in self.ordered
        )


def aligned(text: str, parts: tuple[str, ...]) -> bool:
    """Whether all `parts` appear in `text`, in this order, without overlapping."""
    pos = 0
    for part in parts:
        found = text.find(part, pos)
        if found < 0:
            return False
        pos = found + len(part)
    return True
