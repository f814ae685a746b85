"""Why a delivery failed, in Sisimai's vocabulary, and whether retrying the address can help.

The decision follows the order Sisimai (libsisimai.org, BSD-2-Clause) uses, written here from
its documentation and RFC 3463: a reason the words of a known MTA settle outright (`presets`);
else each reason in turn checks the diagnostic text, the status code and the SMTP command it
failed at; else the words alone; else the status code's meaning (RFC 3463 subject and detail);
else what the action says (delayed: expired). Sisimai has no Python port, so this is a
reimplementation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ace_email.analysis.bounce.codes import is_temporary, reply_in, status_in
from ace_email.analysis.bounce.phrases_recipient import RECIPIENT_PHRASES
from ace_email.analysis.bounce.phrases_sender import SENDER_PHRASES
from ace_email.analysis.bounce.phrases_transport import TRANSPORT_PHRASES

REASONS = (
    "userunknown", "mailboxfull", "filtered", "blocked", "rejected", "policyviolation",
    "authfailure", "expired", "hostunknown", "suspend", "toomanyconn", "mesgtoobig",
    "spamdetected", "securityerror", "systemerror", "networkerror", "mailererror", "notaccept",
    "norelaying", "exceedlimit", "hasmoved", "onhold", "contenterror", "virusdetected",
    "syntaxerror", "speeding", "badreputation", "requireptr", "notcompliantrfc", "systemfull",
    "undefined",
)  # fmt: skip
PHRASES = {**RECIPIENT_PHRASES, **SENDER_PHRASES, **TRANSPORT_PHRASES}

# Reasons a status code names too loosely to settle a non-SMTP diagnostic: its words decide.
_VAGUE = frozenset(
    (
        *("undefined", "onhold", "systemerror", "securityerror", "expired", "networkerror"),
        *("hostunknown", "userunknown"),
    )
)
# Hard: the address itself is wrong; no retry can reach it.
_HARD = frozenset(["userunknown", "hostunknown", "hasmoved"])
_BEFORE_DATA = frozenset(["CONN", "EHLO", "HELO", "MAIL", "RCPT"])
_SPAM_WORD = re.compile(r"\bspam|\bube\b|unsolicited")

# RFC 3463 codes and what they mean as a reason.
_STATUS_REASON: dict[str, str] = {
    "2.1.5": "delivered",
    "4.1.6": "hasmoved", "4.1.7": "rejected", "4.1.8": "rejected", "4.1.9": "systemerror",
    "4.2.1": "blocked", "4.2.2": "mailboxfull", "4.2.3": "exceedlimit", "4.2.4": "filtered",
    "4.3.1": "systemfull", "4.3.2": "notaccept", "4.3.3": "systemerror", "4.3.5": "systemerror",
    "4.4.1": "expired", "4.4.2": "networkerror", "4.4.3": "systemerror", "4.4.4": "networkerror",
    "4.4.5": "systemfull", "4.4.6": "networkerror", "4.4.7": "expired", "4.4.8": "networkerror",
    "4.5.3": "systemerror", "4.5.5": "systemerror", "4.6.0": "contenterror",
    "4.6.2": "contenterror", "4.6.5": "contenterror", "4.7.1": "blocked", "4.7.2": "blocked",
    "4.7.5": "securityerror", "4.7.6": "securityerror", "4.7.7": "securityerror",
    "4.7.12": "securityerror", "4.7.15": "securityerror", "4.7.16": "mesgtoobig",
    "4.7.24": "authfailure", "4.7.25": "requireptr", "4.7.26": "authfailure",
    "5.1.0": "userunknown", "5.1.1": "userunknown", "5.1.2": "hostunknown",
    "5.1.3": "userunknown", "5.1.4": "filtered", "5.1.6": "hasmoved", "5.1.7": "rejected",
    "5.1.8": "rejected", "5.1.9": "systemerror", "5.1.10": "notaccept", "5.2.0": "filtered",
    "5.2.1": "filtered", "5.2.2": "mailboxfull", "5.2.3": "exceedlimit", "5.2.4": "filtered",
    "5.3.0": "systemerror", "5.3.1": "systemfull", "5.3.2": "notaccept", "5.3.3": "systemerror",
    "5.3.4": "mesgtoobig", "5.3.5": "systemerror", "5.4.0": "networkerror",
    "5.4.3": "systemerror", "5.4.4": "hostunknown", "5.5.2": "syntaxerror",
    "5.5.3": "toomanyconn", "5.5.4": "systemerror", "5.5.5": "systemerror",
    "5.5.6": "syntaxerror", "5.6.0": "contenterror", "5.6.1": "contenterror",
    "5.6.2": "contenterror", "5.6.3": "contenterror", "5.6.5": "contenterror",
    "5.6.6": "contenterror", "5.6.7": "contenterror", "5.6.8": "contenterror",
    "5.6.9": "contenterror", "5.7.0": "securityerror", "5.7.1": "securityerror",
    "5.7.2": "securityerror", "5.7.3": "securityerror", "5.7.4": "securityerror",
    "5.7.5": "securityerror", "5.7.6": "securityerror", "5.7.7": "securityerror",
    "5.7.8": "securityerror", "5.7.9": "securityerror", "5.7.10": "securityerror",
    "5.7.11": "securityerror", "5.7.13": "suspend", "5.7.14": "securityerror",
    "5.7.15": "securityerror", "5.7.16": "mesgtoobig", "5.7.17": "hasmoved",
    "5.7.18": "hasmoved", "5.7.19": "securityerror", "5.7.20": "authfailure",
    "5.7.21": "authfailure", "5.7.22": "authfailure", "5.7.23": "authfailure",
    "5.7.24": "authfailure", "5.7.25": "requireptr", "5.7.26": "authfailure",
    "5.7.27": "notaccept", "5.7.28": "spamdetected", "5.7.29": "authfailure",
}  # fmt: skip


def status_reason(status: str | None) -> str:
    """The reason an RFC 3463 status code names by itself; "" for a vague one."""
    return _STATUS_REASON.get(status or "", "")


@dataclass(frozen=True)
class Evidence:
    """What a report says of one recipient, as the reason decision reads it."""

    diagnostic: str = ""
    status: str | None = None
    reply_code: int | None = None
    command: str | None = None
    action: str = ""
    diagnostic_type: str = "SMTP"
    preset: str = ""

    @property
    def text(self) -> str:
        """The diagnostic in lower case, a space either side (phrases may end in one)."""
        return f" {self.diagnostic.lower()} "


def _says(reason: str, text: str) -> bool:
    return PHRASES[reason].match(text)


def _by_status_or_words(reason: str) -> Callable[[Evidence], bool]:
    def probe(e: Evidence) -> bool:
        return status_reason(e.status) == reason or _says(reason, e.text)

    return probe


def _mesgtoobig(e: Evidence) -> bool:
    named = status_reason(e.status)
    if named == "mesgtoobig":
        return True
    if named == "exceedlimit" or e.status == "5.2.3":
        return False
    return _says("mesgtoobig", e.text)


def _suspend(e: Evidence) -> bool:
    return e.reply_code == 525 or _says("suspend", e.text)


def _norelaying(e: Evidence) -> bool:
    if e.command in ("CONN", "EHLO", "HELO"):
        return False
    return _says("norelaying", e.text)


def _userunknown(e: Evidence) -> bool:
    named = status_reason(e.status)
    if named == "suspend":
        return False
    if named == "userunknown":
        others = ("norelaying", "blocked", "mailboxfull", "hasmoved", "rejected", "notaccept")
        return not any(_says(other, e.text) for other in others)
    # Sisimai asks for the RCPT command here; when neither the report nor the status code
    # says more, an unknown user is still far likelier refused at RCPT than after DATA.
    if e.command == "RCPT" or (e.command is None and not named):
        return _says("userunknown", e.text)
    return False


def _filtered(e: Evidence) -> bool:
    named = status_reason(e.status)
    if named == "suspend":
        return False
    if named != "filtered" and e.command in _BEFORE_DATA:
        return False
    return _says("filtered", e.text) or _says("userunknown", e.text)


def _contenterror(e: Evidence) -> bool:
    named = status_reason(e.status)
    # A content rejection under a media status (X.6.Y) is spam only when the words say so.
    if _spamdetected(e) and (named != "contenterror" or _SPAM_WORD.search(e.text)):
        return False
    return named == "contenterror" or _says("contenterror", e.text)


def _rejected(e: Evidence) -> bool:
    named = status_reason(e.status) or "undefined"
    if named == "rejected":
        return True
    if e.command == "MAIL":
        return _says("rejected", e.text)
    if e.command == "DATA":
        return named != "userunknown" and _says("rejected", e.text)
    if named in ("undefined", "onhold", "securityerror", "systemerror"):
        return _says("rejected", e.text)
    return False


def _hostunknown(e: Evidence) -> bool:
    if status_reason(e.status) == "hostunknown":
        return not _says("networkerror", e.text)
    return _says("hostunknown", e.text)


def _spamdetected(e: Evidence) -> bool:
    if not e.status:
        return False
    if status_reason(e.status) == "spamdetected":
        return True
    if e.command in _BEFORE_DATA:
        return False
    return _says("spamdetected", e.text)


def _words(reason: str) -> Callable[[Evidence], bool]:
    def probe(e: Evidence) -> bool:
        return _says(reason, e.text)

    return probe


# First pass: each reason checks the whole evidence, in this order.
_PROBES: tuple[tuple[str, Callable[[Evidence], bool]], ...] = (
    ("mailboxfull", _by_status_or_words("mailboxfull")),
    ("mesgtoobig", _mesgtoobig),
    ("exceedlimit", _by_status_or_words("exceedlimit")),
    ("suspend", _suspend),
    ("hasmoved", _words("hasmoved")),
    ("norelaying", _norelaying),
    ("authfailure", _by_status_or_words("authfailure")),
    ("userunknown", _userunknown),
    ("filtered", _filtered),
    ("requireptr", _by_status_or_words("requireptr")),
    ("notcompliantrfc", _words("notcompliantrfc")),
    ("badreputation", _words("badreputation")),
    ("contenterror", _contenterror),
    ("rejected", _rejected),
    ("hostunknown", _hostunknown),
    ("spamdetected", _spamdetected),
    ("speeding", _words("speeding")),
    ("toomanyconn", _by_status_or_words("toomanyconn")),
    ("blocked", _by_status_or_words("blocked")),
)
# Second pass, when the first found nothing or the status is vague: the words alone.
_WORDS_ONLY = (
    "mailboxfull", "authfailure", "badreputation", "speeding", "spamdetected", "virusdetected",
    "policyviolation", "norelaying", "systemerror", "networkerror", "suspend", "contenterror",
    "systemfull", "notaccept", "expired", "securityerror", "mailererror",
)  # fmt: skip


def _second_pass(e: Evidence) -> str:
    named = status_reason(e.status)
    if named and named not in _VAGUE and e.diagnostic_type != "SMTP":
        return named
    for reason in _WORDS_ONLY:
        if _says(reason, e.text):
            return reason
    if named:
        return named
    subject = (e.status or "")[:3]
    if subject in ("5.6", "4.6"):
        return "contenterror"
    if subject in ("5.7", "4.7"):
        return "securityerror"
    if e.diagnostic_type.upper().startswith("X-UNIX"):
        return "mailererror"
    if e.reply_code is not None and (400 < e.reply_code < 408 or 500 < e.reply_code < 508):
        return "syntaxerror"
    if e.action in ("delayed", "expired"):
        return "expired"
    if e.command in ("CONN", "EHLO", "HELO"):
        return "blocked"
    return ""


def decide(e: Evidence) -> str:
    """The reason of one failed recipient, in Sisimai's vocabulary. A preset (the words of a
    known MTA or provider) settles it outright."""
    if e.preset:
        return e.preset
    if (e.status or "").startswith("2."):
        return "delivered"
    # Sisimai reads these only in SMTP diagnostics; a mailer's (X-Unix, X-Postfix) is about
    # a local program instead.
    if not e.diagnostic_type.upper().startswith(("X-UNIX", "X-POSTFIX")):
        for reason, probe in _PROBES:
            if probe(e):
                return reason
    reason = _second_pass(e)
    if reason in ("", "undefined") and e.action == "delayed":
        reason = "expired"
    if reason and reason != "undefined":
        return reason
    return "onhold" if e.diagnostic.strip() else "undefined"


def is_hard(reason: str, status: str | None, diagnostic: str) -> bool:
    """Whether retrying the address can never help: Sisimai's rule. The address is wrong
    (userunknown, hostunknown, hasmoved), or the domain accepts no mail at all (notaccept)
    and the failure is not a temporary one."""
    if reason in _HARD:
        return True
    if reason != "notaccept":
        return False
    evidence = f"{status or ''} {diagnostic}".strip()
    if not evidence:
        return True
    code = status_in(evidence)
    if code is None:
        reply = reply_in(evidence)
        code = str(reply) if reply else None
    return (code or "").startswith("5") or not is_temporary(evidence)
