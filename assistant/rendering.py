"""Answers as safe HTML: Markdown rendered on the server, then cleaned to an allow-list.

Nothing from a document or the model reaches the page as raw HTML: tags outside the list are
removed, no attribute survives but a link's href, and that only when it points at the app's own
document pages (a model told by a planted document to emit links elsewhere gets plain text).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import markdown
import nh3

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li",
    "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a", "hr",
}  # fmt: skip
_OWN_LINK_PREFIX = "/documents/"


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "a" and attribute == "href":
        return value if value.startswith(_OWN_LINK_PREFIX) and "//" not in value else None
    return None


# Marks for figures the sources do not contain (assistant.grounding.figures_unsupported). The
# spans are wrapped in two private-use characters in the Markdown source, which survive
# rendering and cleaning as plain text, and only then become this fixed markup: nothing the
# model writes can add a tag or an attribute (its own sentinel characters are removed first).
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKED = re.compile(f"{_OPEN}([^{_OPEN}{_CLOSE}<>]*){_CLOSE}")
_MARK_HTML = (
    '<mark class="unsupported" title="Not in the sources">\\1</mark>'
    ' <span class="unsupported-note">(not in the sources)</span>'
)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def answer_html(text: str, *, unsupported: Sequence[tuple[int, int]] = ()) -> str:
    """The answer as safe HTML; `unsupported` are (start, end) offsets into `text` of figures
    to mark as not in the sources."""
    # escape raw HTML in the Markdown source itself, then render, then clean what rendering made
    source = _marked_source(text, unsupported) if unsupported else _escape(text)
    rendered = markdown.markdown(source, extensions=["tables", "sane_lists"], output_format="html")
    cleaned = nh3.clean(
        rendered,
        tags=ALLOWED_TAGS,
        attributes={"a": {"href"}},
        attribute_filter=_attribute_filter,
        url_schemes=set(),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
    if not unsupported:
        return cleaned
    # A pair split by markup (a span across a link's text and target) is dropped, not repaired.
    return _MARKED.sub(_MARK_HTML, cleaned).replace(_OPEN, "").replace(_CLOSE, "")


# Markdown syntax a figure never spans: a mark there would change how the text renders (a
# sentinel inside a link target breaks the link), so such spans are left unmarked.
_SYNTAX = re.compile(r"\]\([^)]*\)|<[^>]*>|[\[\]`*|\n]")


def _marked_source(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """The escaped Markdown source with the sentinels around each span (clipped to the text;
    empty or overlapping spans and spans over Markdown syntax skipped) and none of the model's
    own sentinels."""
    syntax = [m.span() for m in _SYNTAX.finditer(text)]
    pieces: list[str] = []
    cursor = 0
    for start, end in sorted(spans):
        start, end = max(start, cursor, 0), min(end, len(text))
        if start >= end or any(a < end and start < b for a, b in syntax):
            continue
        pieces += [_clean(text[cursor:start]), _OPEN, _clean(text[start:end]), _CLOSE]
        cursor = end
    pieces.append(_clean(text[cursor:]))
    return "".join(pieces)


def _clean(text: str) -> str:
    return _escape(text.replace(_OPEN, "").replace(_CLOSE, ""))
