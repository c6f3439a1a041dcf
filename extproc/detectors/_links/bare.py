"""Bare `scheme://...` and `www....` URLs in text (with `bare_urls: true`)."""

from __future__ import annotations

from extproc.detectors._links.grammar import URL_MAX, escape_char
from extproc.detectors._links.text_index import Hit, Index
from extproc.detectors._links.urls import UrlPolicy
from extproc.detectors.patterns import compile_re2

_TRIM_TRAILING = ".,:;!?*_~"


class BareUrls:
    def __init__(self, urls: UrlPolicy) -> None:
        self._urls = urls
        schemes = sorted(urls.schemes | {"http", "https"}, key=len, reverse=True)
        self.anchors = tuple([f"{s}://" for s in schemes] + ["www."])  # what starts a bare URL
        self.anchor_re = compile_re2(
            "(?i)(?:" + "|".join("".join(escape_char(c) for c in a) for a in self.anchors) + ")")
        self.longest_anchor = max(map(len, self.anchors))

    def find(self, index: Index) -> list[Hit]:
        text, hits = index.text, []
        for match in self.anchor_re.finditer(text):
            q = match.start()
            end = index.run_end("url", q)
            if end - q > URL_MAX:
                hits.append(Hit(q, q + URL_MAX, "unsafe_url", "bare"))
                continue
            run = _trim_url(text[q:end])
            if len(run) <= match.end() - q:
                continue  # nothing after `https://` or `www.`
            url = ("http://" + run) if run[:4].lower() == "www." else run
            if self._urls.unsafe(url, markdown=False):
                hits.append(Hit(q, q + len(run), "unsafe_url", "bare"))
        return hits


def _trim_url(run: str) -> str:
    """GitHub's autolink end: trailing punctuation and unbalanced closing parentheses are not part of it."""
    while run:
        if run[-1] in _TRIM_TRAILING or run[-1] == ")" and run.count(")") > run.count("("):
            run = run[:-1]
        else:
            break
    return run
