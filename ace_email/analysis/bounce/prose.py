"""The human-readable part of a bounce: where the returned message starts, which addresses the
text reports as failed, the paragraph it says about each, the SMTP command a failure came at,
and whether the text speaks of a delay rather than a failure.

Bounces that are not RFC 3464 reports (qmail, Exim, Sendmail v5, Exchange 2003, Gmail, Yahoo,
...) say all of this in prose only, each in its own layout; the rules here are shared ones:
an address that starts or ends a line, or follows "RCPT TO:", heads the paragraph about it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

_ADDRESS = re.compile(
    r"(?<![\w.+-])([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24})"
    r"(?![\w-])",
)
# Lines that open the copy of the returned message, in the words of common MTAs.
_RETURNED = re.compile(
    r"^[\s>*=_-]*(?:"
    r"-+\s*this is a copy of the message|-+\s*below this line is a copy of the message"
    r"|-+\s*original message\b|-+\s*unsent message follows|-+\s*returned message"
    r"|original message follows|-+\s*the header of the original message"
    r"|message headers follow|included is a copy of the message header"
    r"|-+\s*original mail as follows|original mail as follows|-+\s*original message header"
    r"|the original message headers? (?:is|are|was|were) (?:included|attached|as follows)"
    r"|-+\s*message header follows|-+\s*original mail header|-+\s*forwarded message"
    r"|\*+\s*end of message\s*\*+|-+\s*the following is a copy of"
    r"|-+\s*copy of the message|a copy of the original message (?:is|was) (?:attached|below)"
    r"|-+original message"
    r")",
    re.IGNORECASE | re.MULTILINE,
)
_HEADER_LINE = re.compile(
    r"^(?:received|return-path|message-id|x-[\w-]+|dkim-signature|date|from|to|subject|"
    r"mime-version|content-type|delivered-to|authentication-results):",
    re.IGNORECASE,
)
_COMMANDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("CONN", re.compile(r"after initial connection|said at connect|connection rejected|"
                        r"refused to talk to me|while connected to", re.IGNORECASE)),
    ("EHLO", re.compile(r"in reply to (?:ehlo|helo) command|after (?:ehlo|helo)\b|"
                        r"my name was rejected|"
                        r">>> (?:ehlo|helo)\b|our (?:ehlo|helo)\b|\[(?:ehlo|helo)\]|"
                        r"(?:ehlo|helo) command rejected", re.IGNORECASE)),
    ("MAIL", re.compile(r"in reply to mail from command|after mail from|>>> mail from|"
                        r"our mail from|\[mail_from\]|mail from command|sender was rejected",
                        re.IGNORECASE)),
    ("RCPT", re.compile(r"in reply to rcpt to command|after rcpt to|>>> rcpt to|"
                        r"our rcpt to|\[rcpt_to\]|rcpt command|rejected recipient|"
                        r"sent <<< rcpt to|after rcpt\b", re.IGNORECASE)),
    ("DATA", re.compile(r"in reply to end of data command|in reply to data command|"
                        r"after end of data|after data\b|>>> data\b|our data\b|\[data\]|"
                        r"end of data command|for text command|data command",
                        re.IGNORECASE)),
)  # fmt: skip
_DELAY = re.compile(
    r"this is (?:only )?a warning message only|this is (?:only )?a warning message|"
    r"has not yet been delivered|delivery (?:has been|is) delayed|message (?:has been|is) delayed|"
    r"will (?:continue|keep) (?:to )?try|still trying|delayed \d+ (?:minutes|hours|days)|"
    r"no action is required on your part|will be retried|delivery attempts will continue",
    re.IGNORECASE,
)
# Lines that name an address without reporting on it: where a recipient came from.
_NOT_A_HEAD = re.compile(
    r"\s*\(?(?:ultimately\s+)?(?:generated\s+(?:from|by)|expanded\s+from|forwarded\s+(?:from|by))\b",
    re.IGNORECASE,
)
_TALKING = re.compile(r"(?:\.\.\.\s*)?while talking to\b", re.IGNORECASE)
# Words before an address that is someone to ask for help, not a failed recipient.
_HELP_DESK = re.compile(
    r"(?:contact|write to|send (?:e-?)?mail to|e-?mail us at|reach us at|questions to|"
    r"support at|help at)[\s:,]*<?\s*$",
    re.IGNORECASE,
)
# SMTP commands named in capitals, as transcripts and terse reports do ("-------SMTP command
# DATA"); not inside an address or a host name.
_COMMAND_WORD = re.compile(r"(?<![\w.@-])(HELO|EHLO|MAIL FROM|RCPT TO|RCPT|DATA)(?![\w.@-])")
_SENDER_COMMAND = re.compile(r"mail from:?\s*<([^<>\s]*)>", re.IGNORECASE)
# Lines of text read as what is said about one address at most.
PARAGRAPH_LINES = 12
# Distinct addresses a text is read for at most.
ADDRESS_LIMIT = 50
_WORDS = re.compile(r"[^\W\d_]{3}")
# What a paragraph about a failed address says: a code, or words of failure.
_TELLING = re.compile(
    r"(?<![\w.])[245]\d\d(?![\w.])|[245]\.\d{1,3}\.\d{1,3}|unknown|invalid|not found|no such"
    r"|full|quota|reject|denied|disabled|not exist|doesn't|does not|blocked|refused|expired"
    r"|timed? ?out|error|fail|unable|cannot|can't|couldn't|unavailable|not accept|inactive"
    r"|suspend|not deliver|undeliver|unreachable|not reachable|giving up|too ",
    re.IGNORECASE,
)


@dataclass
class Failure:
    """An address the text reports as failed, and what it says about it."""

    address: str
    paragraph: str = ""


def explanation(text: str) -> str:
    """The part of a bounce's text before the copy of the returned message."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    match = _RETURNED.search(text)
    end = match.start() if match else len(text)
    # A header block (three header lines in a row, one of them Received, Return-Path or
    # Message-ID) also opens the copy, when no line announced it.
    lines = text[:end].split("\n")
    offset = 0
    for index, line in enumerate(lines):
        run = lines[index : index + 3]
        if (
            len(run) == 3
            and all(_HEADER_LINE.match(item) or item[:1] in (" ", "\t") for item in run)
            and _HEADER_LINE.match(line)
            and any(re.match(r"(?:received|return-path|message-id):", r, re.I) for r in run)
        ):
            return text[:offset]
        offset += len(line) + 1
    return text[:end]


def addresses_in(text: str) -> list[str]:
    """Every address in a text, in order of appearance, each once."""
    seen: dict[str, None] = {}
    for match in _ADDRESS.finditer(text):
        seen.setdefault(match.group(1).strip("."), None)
    return list(seen)


def _heads_line(line: str, address: str) -> bool:
    """Whether `address` heads this line: starts it, ends it, or follows RCPT TO."""
    if _NOT_A_HEAD.match(line):
        return False
    at = line.lower().find(address.lower())
    if at >= 0 and _HELP_DESK.search(line[:at]):
        return False
    stripped = line.strip().strip("\"'")
    lower, addr = stripped.lower(), address.lower()
    start = re.sub(
        r"^(?:[>*\-\s]|\d+\)|[245]\d\d[ -]|rcpt to:?|to:|recipient:|recipient address:)+",
        "",
        lower,
    )
    if start.startswith((addr, f"<{addr}>", f'"{addr}"', f"'{addr}'")):
        return True
    end = lower.rstrip(" .:;,)]>\"'")
    if end.endswith(addr):
        return True
    return f"rcpt to:<{addr}>" in lower.replace(" ", "") or f"to <{addr}>" in lower


def failures(text: str, exclude: Collection[str]) -> list[Failure]:
    """The addresses a bounce's explanation reports as failed, with the paragraph about each."""
    excluded = {a.lower() for a in exclude}
    lines = text.split("\n")
    heads: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        for address in addresses_in(line):
            lower = address.lower()
            if lower in excluded or _automatic(lower) or _is_sender_line(line, lower):
                continue
            if _heads_line(line, address):
                heads.append((index, address))
    if not heads:
        for index, line in enumerate(lines):
            for address in addresses_in(line):
                lower = address.lower()
                usable = lower not in excluded and not _automatic(lower)
                if usable and not _is_sender_line(line, lower):
                    heads.append((index, address))
    found: dict[str, Failure] = {}
    keyed = [(index, address.lower()) for index, address in heads]
    for index, address in heads:
        key = address.lower()
        if key in found:
            continue
        if len(found) >= ADDRESS_LIMIT:
            break
        stop = next((i for i, k in keyed if i > index and k != key), len(lines))
        others = {i for i, k in keyed if k != key}
        found[key] = Failure(address, _paragraph(lines, index, address, stop, others))
    reported = [f for f in found.values() if _TELLING.search(f.paragraph)]
    # An address whose paragraph says nothing of a failure, beside ones whose paragraphs do,
    # is someone the text names for another reason (a help desk, in whatever language).
    return reported or list(found.values())


def _automatic(address: str) -> bool:
    local = address.split("@", 1)[0]
    return local == "mailer-daemon"


def _is_sender_line(line: str, address: str) -> bool:
    for match in _SENDER_COMMAND.finditer(line):
        if match.group(1).lower() == address:
            return True
    lower = line.lower()
    return bool(re.match(r"\s*(?:from|sender|original sender|return-path)\s*:", lower))


def _transcript_before(lines: list[str], index: int, heads: set[int]) -> list[str]:
    """The SMTP dialogue a Sendmail summary line ("554 <addr>... Remote protocol error")
    follows: back to its "While talking to ..." line, within the same block."""
    before: list[str] = []
    for at in range(index - 1, max(index - 8, -1), -1):
        line = lines[at].strip()
        if not line or at in heads:
            return []
        before.insert(0, line)
        if _TALKING.match(line):
            return before
    return []


def _paragraph(
    lines: list[str], index: int, address: str, stop: int, heads: set[int] | None = None
) -> str:
    """What the text says about the address heading line `index`, up to line `stop` (where
    the next address's paragraph starts), at most PARAGRAPH_LINES lines."""
    rest = re.sub(re.escape(address), " ", lines[index], flags=re.IGNORECASE)
    taken = [lines[index].strip()] if _WORDS.search(rest) else []
    if re.match(r"\s*[245]\d\d[ -]", lines[index]):
        # A Sendmail summary line ends the block about its address: the dialogue is above.
        return " ".join([*_transcript_before(lines, index, heads or set()), *taken])
    for line in lines[index + 1 : stop]:
        if len(taken) >= PARAGRAPH_LINES:
            break
        if line.strip():
            taken.append(line.strip())
    if not any(_WORDS.search(part) for part in taken):
        before: list[str] = []
        for line in reversed(lines[:index]):
            if not line.strip():
                if before:
                    break
                continue
            before.insert(0, line.strip())
        taken = before[-PARAGRAPH_LINES:] + taken
    return " ".join(part for part in taken if part)


def command_in(text: str) -> str | None:
    """The SMTP command a failure came at, as the text names it."""
    found: tuple[int, str] | None = None
    for name, pattern in _COMMANDS:
        for match in pattern.finditer(text):
            if found is None or match.start() > found[0]:
                found = (match.start(), name)
    return found[1] if found else None


def command_word(text: str) -> str | None:
    """The SMTP command a text names in capitals (the last one named); None if none."""
    found = _COMMAND_WORD.findall(text)
    if not found:
        return None
    return str(found[-1]).split()[0]


def speaks_of_delay(text: str) -> bool:
    """Whether a bounce's explanation says delivery is only delayed."""
    return bool(_DELAY.search(text))
