"""Pure functions over raw RFC 822 messages: content key, headline, analysis, body text.

Every public function here takes the raw bytes of one message as a mail server stored it and
never raises, whatever those bytes are: empty, binary, truncated, with NUL bytes, invalid
UTF-8, unknown charsets, broken MIME, or headers of a megabyte. Where the standard library's
strict parser (`policy.default`) raises or would be too slow, a lenient path takes over
(`policy.compat32`, `email.utils.getaddresses`, or a byte-level header reader) and the
fallback is recorded in `Analysis.problems`.

All text put into the models is decoded, stripped of control characters (no CR, LF or NUL)
and bounded in length; an `Analysis` serialises to well under 16 KB of JSON.

The package's modules: `text` (limits, decoding, cleaning), `head` (the header block as bytes,
the content key), `headers` (fields, addresses, the headline), `automatic` (automatic-mail
reasons), `parts` (MIME structure, attachments, body text), `summary` (the analysis).
"""

from ace_email.analysis.mime.automatic import automatic_reasons
from ace_email.analysis.mime.head import message_key
from ace_email.analysis.mime.headers import headline
from ace_email.analysis.mime.parts import attachment_payload, body_html, body_text
from ace_email.analysis.mime.summary import (
    analyse,
    decoded_header_fields,
    header_addresses,
    subject_reference,
)
from ace_email.analysis.mime.text import (
    BODY_TEXT_LIMIT,
    JSON_BUDGET,
    more_marker,
    omitted,
)

__all__ = [
    "BODY_TEXT_LIMIT",
    "JSON_BUDGET",
    "analyse",
    "attachment_payload",
    "automatic_reasons",
    "body_html",
    "body_text",
    "decoded_header_fields",
    "header_addresses",
    "headline",
    "message_key",
    "more_marker",
    "omitted",
    "subject_reference",
]
