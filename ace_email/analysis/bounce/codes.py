"""SMTP codes in the words of a report: RFC 3463 enhanced status codes ("5.1.1") and RFC 5321
reply codes (550), found in free text, normalised, and chosen between when there are several."""

from __future__ import annotations

import re

# An enhanced status code: class 2, 4 or 5, subject 0-7, detail 0-999. Not preceded by a digit,
# a dot or a "v"/"V" (version numbers), not followed by another digit or a dot and a digit
# (an IPv4 address or a longer version).
_STATUS = re.compile(r"(?<![\w.])([245])\.([0-7])\.(\d{1,3})(?![\d]|\.\d)", re.ASCII)
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])", re.ASCII)
# A reply code standing as a word: "550 ", "550-", "550:", "(550)", "#550", at the end.
_REPLY = re.compile(r"(?<![\w.#-])([245][0-5]\d)(?=[\s\-:;,.)\]]|$)", re.ASCII)
_REPLY_CODES = frozenset(
    [
        *(211, 214, 220, 221, 235, 250, 251, 252, 253),
        *(421, 422, 430, 432, 450, 451, 452, 453, 454, 455, 456, 458, 459),
        *(500, 501, 502, 503, 504, 520, 521, 523, 524, 525, 530, 533, 534, 535, 538),
        *(550, 551, 552, 553, 554, 555, 556, 557),
    ]
)
# Sendmail's summary line quoting the remote server: "554 <a@example.org>... 550 Host unknown".
_QUOTED_REPLY = re.compile(r"(?<!\w)[245]\d\d\s+<[^<>\s]*>\.\.\.\s+([245][0-5]\d)(?=\s)", re.ASCII)
_FIELD_STATUS = re.compile(r"\s*([245])\s*\.\s*(\d{1,3})\s*\.\s*(\d{1,3})", re.ASCII)


def normal_status(value: str | None) -> str | None:
    """The X.Y.Z of a Status: field value ("5.1.1 (user unknown)", "5. 1. 1", "550 5.1.1");
    None if it has none. A bare reply code ("550") is not a status."""
    if not value:
        return None
    match = _FIELD_STATUS.match(value)
    if match is None or int(match.group(2)) > 7:
        found = statuses_in(value[:200])
        return found[0] if found else None
    klass, subject, detail = match.groups()
    return f"{klass}.{int(subject)}.{int(detail)}"


def statuses_in(text: str, klass: str | None = None) -> list[str]:
    """Every enhanced status code in `text`, in order, IPv4 addresses masked first."""
    if not text:
        return []
    masked = _IPV4.sub("x.x.x.x", text)
    found = [f"{k}.{s}.{int(d)}" for k, s, d in _STATUS.findall(masked)]
    return [code for code in found if klass is None or code[0] == klass]


def _has_zero(code: str) -> bool:
    """A code vague in part: "5.1.0", "5.0.3"."""
    return code.endswith(".0") or ".0." in code


def is_zero(code: str) -> bool:
    """A code that says no more than its class: "5.0.0", "4.0.0"."""
    return code.endswith(".0.0")


def status_in(text: str, klass: str | None = None, failure: bool = False) -> str | None:
    """The telling enhanced status code of a text: the first one that is not X.0.0 nor the
    ambiguous 4.4.7, else the first one; the first of each pair is kept unless the later one
    says more (see `prefer`). With `failure`, success codes (2.X.Y) are passed over when the
    text has a failure code too."""
    codes = statuses_in(text, klass)
    if failure and any(code[0] in "45" for code in codes):
        codes = [code for code in codes if code[0] in "45"]
    if not codes:
        return None
    specific = [c for c in codes if not is_zero(c) and c != "4.4.7"]
    ordered = specific or codes
    chosen = ordered[0]
    for code in ordered[1:]:
        chosen = prefer(chosen, code, None) or chosen
    return chosen


def reply_in(text: str, klass: str | None = None, failure: bool = False) -> int | None:
    """The first SMTP reply code standing as a word in `text` (of the class when given). With
    `failure`, positive replies (2yz, 3yz) are passed over when there is a negative one."""
    if not text or "x-unix" in text.lower():
        return None
    masked = _IPV4.sub("x.x.x.x", text)
    quoted = _QUOTED_REPLY.search(masked)
    first = quoted.group(1)[0] if quoted else ""
    if quoted and (klass is None or first == klass) and (not failure or first in "45"):
        return int(quoted.group(1))
    found = [
        int(m.group(1))
        for m in _REPLY.finditer(masked)
        if int(m.group(1)) in _REPLY_CODES and (klass is None or m.group(1)[0] == klass)
    ]
    if failure and any(code >= 400 for code in found):
        found = [code for code in found if code >= 400]
    return found[0] if found else None


_CONTINUED = re.compile(r"\b([245]\d\d)-(?:([245]\.\d{1,3}\.\d{1,3})\s)?")


def joined_reply(text: str) -> str:
    """A multi-line SMTP reply as one line: "550-5.7.1 Our system 550-5.7.1 has detected 550
    5.7.1 spam" becomes "550 5.7.1 Our system has detected spam", so that phrases split
    across its lines are found."""
    match = _CONTINUED.search(text)
    if match is None:
        return text
    reply, status = match.group(1), match.group(2)
    prefixes = [f"{reply}-{status} ", f"{reply} {status} "] if status else []
    body = text[match.start() :]
    for prefix in [*prefixes, f"{reply}-", f"{reply} "]:
        body = body.replace(prefix, "")
    head = f"{reply} {status} " if status else f"{reply} "
    return f"{text[: match.start()]}{head}{body}"


def prefer(field: str | None, in_text: str | None, reply: int | None) -> str | None:
    """The better of a Status: field and a code found in the diagnostic text.

    A code whose class agrees with the reply code wins; a specific code wins over X.0.0 and
    X.Y.0; codes that only say "syntax", "system" or "expired" give way to the text's code;
    "5.1.1" stays unless the text's code is as vague as it.
    """
    if not field:
        return in_text
    if not in_text or field == in_text:
        return field
    reply_class = str(reply)[0] if reply else ""
    if reply_class and field[0] != in_text[0]:
        if reply_class == field[0]:
            return field
        if reply_class == in_text[0]:
            return in_text
    if is_zero(field):
        return field if is_zero(in_text) else in_text
    if _has_zero(field) and not _has_zero(in_text):
        return in_text
    if is_zero(in_text):
        return field
    if field in ("4.4.7", "4.7.0") or field.startswith("5.3."):
        return in_text
    if field[1:4] in (".5.1", ".5.2", ".5.4", ".5.5"):
        return in_text
    if field == "5.1.1":
        return field if in_text.startswith("5.5.") or ".0" in in_text else in_text
    if field == "5.1.3" and in_text.startswith("5.7."):
        return in_text
    return field


def agree(status: str | None, reply: int | None, text: str) -> int | None:
    """The reply code kept beside a status: one of the same class, from the text if the given
    one disagrees; None when the text has none of that class."""
    if status is None or reply is None or str(reply)[0] == status[0]:
        return reply
    return reply_in(text, status[0])


def is_temporary(text: str) -> bool:
    """Whether a status or diagnostic text says the failure is temporary."""
    code = status_in(text)
    if code is None:
        reply = reply_in(text)
        code = str(reply) if reply else None
    if code is not None and code.startswith("4"):
        return True
    lower = text.lower()
    return " temporar" in lower or " persistent" in lower
