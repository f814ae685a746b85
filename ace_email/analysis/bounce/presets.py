"""Words of particular MTAs and providers whose meaning is known outright, checked before the
general reason rules (as Sisimai's per-MTA modules do): qmail, Exim, Exchange, Gmail and
Google Workspace, OpenSMTPD, IMail, Lotus Notes, Orange and La Poste, Office 365, ...

Orange and La Poste (France) end each reply with a code such as "LPN007_416" or "OFR_506";
its last three digits name the failure.
"""

from __future__ import annotations

import re

from ace_email.analysis.bounce.phrases import Phrases

PRESETS: tuple[tuple[str, Phrases], ...] = (
    ("speeding", Phrases(words=("has sent to too many recipients this hour",
                                "is receiving mail too quickly",
                                "rate that prevents additional messages from being delivered"))),
    ("mesgtoobig", Phrases(words=("resolver.rst.recipsizelimit", "line limit exceeded"))),
    ("filtered", Phrases(words=("refused due to recipient preferences",))),
    ("rejected", Phrases(words=("groups.google.com/support",))),
    ("suspend", Phrases(words=("account that you tried to reach is inactive",
                               "account that you tried to reach is disabled",
                               "the user(s) account is disabled", "account is disabled."))),
    ("notaccept", Phrases(words=("couldn't find a mail exchanger or ip address",
                                 "an mx or srv record indicated no smtp service",
                                 "no mx found for domain",
                                 "doesn't receive email according to the administrator"))),
    ("hostunknown", Phrases(ordered=(("dns lookup failure: host ", " not found"),))),
    ("networkerror", Phrases(words=("network error on destination mxs", "dns query failed",
                                    "wasn't able to establish an smtp connection",
                                    "host not found, try again"),
                             ordered=(("dns error:", "dns type", "lookup of"),))),
    ("expired", Phrases(words=("could not deliver for the last", "envelope expired",
                               "message expired, connection refused", "delivery failed 20 attempts",
                               "was not delivered within", "remote host is not responding",
                               "host not reachable",
                               "the recipient server did not accept our requests to connect"),
                        ordered=(("message could not be delivered for ", " days"),))),
    ("blocked", Phrases(words=("but my name was rejected",
                               "client host blocked for spamming issues"))),
    ("mailboxfull", Phrases(words=("user mailbox exceeds allowed size", "mailbox is full"))),
    ("userunknown", Phrases(
        words=("invalid final delivery userid", "user not listed in public name & address book",
               "ディレクトリのリストにありません", "ディレクトリには見つかりません",
               "this user doesn't have a yahoo.com account",
               "resolver.adr.recipientnotfound", "resolver.adr.recipnotfound"),
        ordered=(("unable to deliver message to", "(and other recipients in the same domain"),),
    )),
    ("securityerror", Phrases(words=("please turn on smtp authentication",))),
    ("syntaxerror", Phrases(words=("malformed address:",))),
    ("systemerror", Phrases(words=("remote server is misconfigured", "duplicated message-id",
                                   "remote server does not support tls",
                                   "loop alert"))),
    ("contenterror", Phrases(words=("duplicate header",))),
)  # fmt: skip

_ORANGE_CODE = re.compile(r"\b(?:lpn|lpnaaa|ofr|ouk)\d*[_-](\d{3})\b", re.IGNORECASE)
_ORANGE_REASONS = {
    "101": "blocked", "102": "blocked", "103": "blocked", "104": "toomanyconn",
    "305": "securityerror", "401": "authfailure", "402": "securityerror", "403": "rejected",
    "405": "rejected", "415": "rejected", "416": "userunknown", "417": "mailboxfull",
    "420": "suspend", "421": "rejected", "426": "suspend", "505": "systemerror",
    "506": "spamdetected", "510": "blocked", "514": "mesgtoobig", "517": "authfailure",
    "630": "policyviolation", "999": "blocked",
}  # fmt: skip


def preset(text: str) -> str:
    """The reason particular words settle outright (lower-case `text`); "" if none."""
    for match in _ORANGE_CODE.finditer(text):
        found = _ORANGE_REASONS.get(match.group(1))
        if found:
            return found
    for reason, phrases in PRESETS:
        if phrases.match(text):
            return reason
    return ""
