"""An email's HTML as the desk shows it: sanitised with nh3 (Ammonia) so no script, event
handler, `javascript:` link, form or style attribute survives, and served into a sandboxed
frame under a Content-Security-Policy that fetches nothing remote unless the agent asks."""

from __future__ import annotations

import html

import nh3

# What a message may keep: structure, text and images; links open outside the frame.
_TAGS = set(nh3.ALLOWED_TAGS) | {"img", "center", "font"}
_ATTRIBUTES = {
    **{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
    "img": {"src", "alt", "width", "height"},
    "a": {"href", "title"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align"},
    "font": {"color"},
}
_SCHEMES = {"http", "https", "mailto", "cid", "data"}

FRAME_CSP_LOCAL = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox allow-popups "
    "allow-popups-to-escape-sandbox; base-uri 'none'; form-action 'none'"
)
FRAME_CSP_REMOTE = (
    "default-src 'none'; img-src data: http: https:; style-src 'unsafe-inline' http: https:; "
    "font-src http: https:; sandbox allow-popups allow-popups-to-escape-sandbox; "
    "base-uri 'none'; form-action 'none'"
)


def sanitised(markup: str) -> str:
    return nh3.clean(
        markup,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )


def frame_document(markup: str | None, text: str) -> str:
    """The frame's whole page: the sanitised HTML, else the plain text escaped."""
    body = sanitised(markup) if markup else f"<pre>{html.escape(text)}</pre>"
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        "<style>body{font:14px/1.45 system-ui,sans-serif;margin:12px;color:#222}"
        "img{max-width:100%}pre{white-space:pre-wrap}</style></head>"
        f"<body>{body}</body></html>"
    )
