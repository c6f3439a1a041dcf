"""`UrlPolicy`: is a URL safe under one rule's params.

A URL is safe when its scheme is listed and its host allowed, or when it is relative and relative URLs are
allowed. Every reading counts: as written, with HTML character references (and, in Markdown, backslash
escapes) decoded, and its authority read both the RFC 3986 way and the browsers' (WHATWG) way.
"""

from __future__ import annotations

import html
from typing import Protocol

from extproc.detectors._links.grammar import MD_ESCAPE, SCHEME, URL_MAX
from extproc.detectors._links.hosts import normalize_host

_SPECIAL_SCHEMES = frozenset({"http", "https", "ftp", "ws", "wss", "file"})
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_CACHE_MAX = 4096


class UrlParams(Protocol):
    allowed_domains: list[str]  # normalised by `hosts.normalize_allowed`
    allow_relative: bool
    schemes: list[str]


class UrlPolicy:
    def __init__(self, params: UrlParams) -> None:
        self._exact = frozenset(d for d in params.allowed_domains if not d.startswith("*."))
        self._suffixes = tuple(d[1:] for d in params.allowed_domains if d.startswith("*."))
        self.schemes = frozenset(params.schemes)
        self._allow_relative = params.allow_relative
        self._cache: dict[str, bool] = {}

    def unsafe(self, url: str, markdown: bool) -> bool:
        """True if any reasonable reading of `url` leaves the allowlist (or cannot be parsed)."""
        key = ("m" if markdown else "h") + url
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        readings = {url, html.unescape(url)}
        if markdown:
            unescaped = MD_ESCAPE.sub(lambda m: m.group(1), url)
            readings |= {unescaped, html.unescape(unescaped)}
        result = any(self._reading_unsafe(reading) for reading in readings)
        if len(self._cache) > _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = result
        return result

    def _reading_unsafe(self, url: str) -> bool:
        url = url.strip(_C0_AND_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
        if len(url) > URL_MAX:
            return True
        scheme_match = SCHEME.match(url)
        if scheme_match:
            scheme = scheme_match.group(1).lower()
            if scheme not in self.schemes:
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
        # userinfo ends at the last `@` for browsers, at the first for some other parsers
        for host_port in {authority.rpartition("@")[2], authority.partition("@")[2] or authority}:
            split = _host_and_port(host_port)
            if split is None:
                return False
            host, port = split
            if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
                return False
            normalized = normalize_host(host)
            if normalized is None or not self._host_allowed(normalized):
                return False
        return True

    def _host_allowed(self, host: str) -> bool:
        return host in self._exact or any(host.endswith(suffix) for suffix in self._suffixes)


def _host_and_port(host_port: str) -> tuple[str, str] | None:
    """`host[:port]` or `[ipv6][:port]` split in two; None if the brackets are wrong."""
    if not host_port.startswith("["):
        host, _, port = host_port.partition(":")
        return host, port
    close = host_port.find("]")
    if close < 0:
        return None
    host, port = host_port[: close + 1], host_port[close + 1 :]
    if port[:1] not in ("", ":"):
        return None
    return host, port[1:]


def _until(text: str, stops: str) -> str:
    for index, char in enumerate(text):
        if char in stops:
            return text[:index]
    return text
