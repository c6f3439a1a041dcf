"""HTML tags that load or link something outside the allowlist, or that are never safe."""

from __future__ import annotations

import html

from extproc.detectors._links.grammar import (
    ATTR,
    CONTAINER_MAX,
    CSS_STRING,
    CSS_URL,
    TAG_MAX,
    TAG_NAME,
    TAG_START,
    TEXT_MAX,
    may_change,
)
from extproc.detectors._links.text_index import Hit, Index
from extproc.detectors._links.urls import UrlPolicy

# Tags a renderer must never keep, tags removed with their content, and attributes holding URLs.
_ALWAYS_UNSAFE_TAGS = frozenset({"script", "style", "base", "meta", "object", "embed", "applet", "frameset",
                                 "animate", "set", "handler", "listener", "portal"})
CONTAINERS = frozenset({"script", "style", "iframe", "object", "applet"})
_URL_ATTRS = frozenset({"src", "href", "xlink:href", "srcset", "imagesrcset", "action", "formaction", "data",
                        "poster", "background", "lowsrc", "dynsrc", "longdesc", "cite", "codebase",
                        "manifest", "icon", "profile", "archive", "classid", "ping", "usemap", "itemtype",
                        "content"})
_LIST_ATTRS = frozenset({"srcset", "imagesrcset"})  # comma-separated `url descriptor`
_SPACE_LIST_ATTRS = frozenset({"ping", "archive"})
_NAVIGATION_ONLY = frozenset({"ping", "action", "formaction", "cite", "longdesc", "usemap", "itemtype"})
_LINK_TAGS = frozenset({"a", "area"})
# Known element names: over-long tags of these are removed (other names only if they carry attributes).
_RESOURCE_TAGS = frozenset({"a", "area", "audio", "body", "button", "embed", "form", "frame", "iframe",
                            "image", "img", "input", "link", "object", "picture", "source", "svg", "table",
                            "td", "th", "track", "use", "video", "math", "feimage", "script", "style", "base",
                            "meta"})
_CSS_ALWAYS = ("expression(", "@import", "behavior", "-moz-binding", "javascript:", "\\")


class HtmlRules:
    def __init__(self, urls: UrlPolicy, images_only: bool) -> None:
        self._urls = urls
        self._images_only = images_only

    def find(self, index: Index) -> list[Hit]:
        hits: list[Hit] = []
        for match in TAG_START.finditer(index.text):
            hit = self._tag_hit(index, match.start())
            if hit is not None:
                hits.append(hit)
        return hits

    def _tag_hit(self, index: Index, s: int) -> Hit | None:
        text = index.text
        close = index.tag_end(s)
        if close is None or close + 1 - s > TAG_MAX:
            return self._unclosed_hit(index, s)
        g = close + 1
        name, unsafe = self.tag_unsafe(text[s:g])
        if not unsafe and may_change(text[s + 1 : g]):
            # A finding inside could change an attribute when replaced (`<a href=[t](..)javascript:>`), or
            # run past the `>` and let the tag swallow the text after it (`<img src=ok <script>..</script>
            # onerror=...>`).
            return Hit(s, g, "unsafe_html", "html")
        if not unsafe:
            return None
        end, inner = g, None
        if name in CONTAINERS:
            closing = index.closing(name, g, s + CONTAINER_MAX)
            if closing is not None:
                end = closing[1]
        elif name == "a":
            closing = index.closing(name, g, g + TEXT_MAX)
            if closing is not None:
                end, inner = closing[1], (g, closing[0])
        return Hit(s, end, "unsafe_html", "pair" if inner else "html", inner)

    @staticmethod
    def _unclosed_hit(index: Index, s: int) -> Hit | None:
        """A tag that does not close within bound: remove what we saw if it can matter."""
        text = index.text
        if index.n - s <= TAG_MAX:
            return None
        name = text[s + 1 : min(index.run_end("name", s + 1), s + 16)].lower()
        if name in _RESOURCE_TAGS or text.find("=", s, s + TAG_MAX) >= 0:
            return Hit(s, s + TAG_MAX, "unsafe_html", "html")
        return None

    def tag_unsafe(self, tag: str) -> tuple[str, bool]:
        """The lower-case name of a whole tag (`<` to `>`) and whether it is unsafe."""
        raw_name = TAG_NAME.match(tag, 1).group()
        name = raw_name.lower()
        if name in _ALWAYS_UNSAFE_TAGS:
            return name, True
        body = tag[1 + len(raw_name) : -1]
        for attr in ATTR.finditer(body):
            attr_name = attr.group(1).lower()
            value = next((v for v in attr.groups()[1:] if v is not None), "")
            if self._attr_unsafe(name, attr_name, value):
                return name, True
        return name, False

    def _attr_unsafe(self, name: str, attr_name: str, value: str) -> bool:
        if attr_name.startswith("on") and len(attr_name) > 2 or attr_name == "srcdoc":
            return True
        if attr_name == "style":
            return self._style_unsafe(value)
        if attr_name not in _URL_ATTRS or (attr_name == "content" and name != "meta"):
            return False
        if self._images_only and (attr_name in _NAVIGATION_ONLY or (
                attr_name in ("href", "xlink:href") and name in _LINK_TAGS)):
            return False
        # old Internet Explorer took backticks for quotes: read the value both ways
        urls = _attr_urls(attr_name, value) + _attr_urls(attr_name, value.strip("`"))
        return any(self._urls.unsafe(url, markdown=False) for url in urls)

    def _style_unsafe(self, value: str) -> bool:
        for style in {value, html.unescape(value)}:
            lowered = style.lower()
            if any(marker in lowered for marker in _CSS_ALWAYS):
                return True
            urls = [next(g for g in m.groups() if g is not None) for m in CSS_URL.finditer(style)]
            if "image-set(" in lowered or "image(" in lowered:
                urls += [next(g for g in m.groups() if g is not None) for m in CSS_STRING.finditer(style)]
            if any(self._urls.unsafe(url, markdown=False) for url in urls):
                return True
        return False


def _attr_urls(name: str, value: str) -> list[str]:
    if name in _LIST_ATTRS:
        return [part.split()[0] if part.split() else "" for part in value.split(",")]
    if name in _SPACE_LIST_ATTRS:
        return value.split() or [""]
    if name == "content":  # <meta http-equiv=refresh content="0; url=...">
        lowered = value.lower()
        return [value[lowered.index("url=") + 4 :].strip("'\" ")] if "url=" in lowered else []
    return [value]
