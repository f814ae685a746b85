"""Bounce analysis: what a delivery-status notification, a non-standard bounce, a delay or
success notice, or a feedback report says about a message we sent.

`bounce_of` reads a parsed message and returns a `Bounce` (kind, the Message-ID of the message
it reports on, and per recipient: address, RFC 3463 status, SMTP reply code, reason in
Sisimai's vocabulary, whether the failure is hard, the server's words), or None when the message
is no such report. It is pure (no I/O, no clock) and never raises.

RFC 3464 reports and RFC 5965 feedback reports are read field by field; other bounces (qmail,
Exim, Sendmail, Exchange, Gmail, Yahoo, ...) by the layout of their prose, with GNU Mailman's
`flufl.bounce` as the last resort for the failed addresses. The reasons and the hard/soft rule
are Sisimai's (libsisimai.org), reimplemented here: Sisimai has no Python port.

Modules: `codes` (status and reply codes), `phrases` with `phrases_recipient`, `phrases_sender`
and `phrases_transport` (what servers say, per reason), `presets` (words of particular MTAs),
`reasons` (the reason and hardness decision), `dsn` (RFC 3464 fields), `arf` (feedback
reports), `ses` (Amazon SES notifications), `prose` (the human-readable text), `signals`
(whether a message is a bounce at all), `structure` (the MIME parts), `original` (the reported
message), `recipient` (one recipient's verdict), `report` (the Bounce).
"""

from ace_email.analysis.bounce.report import bounce_of, bounce_of_bytes
from ace_email.analysis.bounce.signals import may_be_report

__all__ = ["bounce_of", "bounce_of_bytes", "may_be_report"]
