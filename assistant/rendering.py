"""Answers as safe HTML: Markdown rendered on the server, then cleaned to an allow-list.

Nothing from a document or the model reaches the page as raw HTML: tags outside the list are
removed, no attribute survives but a link's href, and that only when it points at the app's own
document pages (a model told by a planted document to emit links elsewhere gets plain text).
"""

from __future__ import annotations

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


def answer_html(text: str) -> str:
    # escape raw HTML in the Markdown source itself, then render, then clean what rendering made
    source = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    rendered = markdown.markdown(source, extensions=["tables", "sane_lists"], output_format="html")
    return nh3.clean(
        rendered,
        tags=ALLOWED_TAGS,
        attributes={"a": {"href"}},
        attribute_filter=_attribute_filter,
        url_schemes=set(),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
