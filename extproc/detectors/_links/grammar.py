"""Bounds and regular expressions of the constructs `unsafe_links` looks for.

The Markdown expressions are built together with the language of all their prefixes: `full` matches a
construct, `pre` matches every prefix of one (the empty string and the construct itself included). The prefix
form tells the streaming hold-back exactly whether the text at the end could still grow into a construct.
"""

from __future__ import annotations

from dataclasses import dataclass

from extproc.detectors.patterns import compile_re2

URL_MAX = 2048  # longest URL considered; a longer one is unsafe whatever its host
TEXT_MAX = 512  # link text, image alt, reference label, `<a>` content
TAG_MAX = 4096  # one HTML tag, `<` to `>`
CONTAINER_MAX = 8192  # `<script ...>...</script>` and the like, as a whole
TAIL_MAX = 3072  # `](` or `]:` through the end of destination, title and `)`


@dataclass(frozen=True, slots=True)
class Re:
    full: str
    pre: str


def escape_char(char: str) -> str:
    return f"\\x{{{ord(char):x}}}"


def _atom(char_class: str) -> Re:
    return Re(char_class, f"(?:{char_class})?")


def _lit(text: str) -> Re:
    return _seq(*(_atom(escape_char(char)) for char in text))


def _seq(*parts: Re) -> Re:
    if len(parts) == 1:
        return parts[0]
    pre = "|".join("".join(p.full for p in parts[:i]) + part.pre for i, part in enumerate(parts))
    return Re("".join(p.full for p in parts), f"(?:{pre})")


def _alt(*parts: Re) -> Re:
    return Re("(?:" + "|".join(p.full for p in parts) + ")", "(?:" + "|".join(p.pre for p in parts) + ")")


def _star(part: Re) -> Re:
    return Re(f"(?:{part.full})*", f"(?:{part.full})*{part.pre}")


def _opt(part: Re) -> Re:
    return Re(f"(?:{part.full})?", part.pre)


def _plus(part: Re) -> Re:
    return _seq(part, _star(part))


def _group(name: str, part: Re) -> Re:
    """Capture `part` in the full form (the prefix form has no groups)."""
    return Re(f"(?P<{name}>{part.full})", part.pre)


def _parens(inner: Re) -> Re:
    return _seq(_lit("("), inner, _lit(")"))


def _quoted(open_: str, close: str) -> Re:
    inner = _atom(f"[^{escape_char(open_)}{escape_char(close)}\\\\]")
    return _seq(_lit(open_), _star(_alt(inner, _seq(_lit("\\"), _atom(r"[\s\S]")))), _lit(close))


# Markdown (CommonMark): `](` dest title `)` and `]:` dest title end-of-line.
_SP = _atom(r"[ \t]")
_NL = _lit("\n")
_WS = _seq(_star(_SP), _opt(_seq(_NL, _star(_SP))))  # spaces, at most one line ending
_WS1 = _alt(_seq(_plus(_SP), _opt(_seq(_NL, _star(_SP)))), _seq(_NL, _star(_SP)))  # at least one
_DEST_CHAR = _alt(_atom(r"[^\s()\\\x00-\x1f\x7f]"), _seq(_lit("\\"), _atom(r"[^\s]")))
_RAW0 = _star(_DEST_CHAR)
_RAW1 = _star(_alt(_DEST_CHAR, _parens(_RAW0)))
_RAW2 = _star(_alt(_DEST_CHAR, _parens(_RAW1)))
_RAW_ITEM = _alt(_DEST_CHAR, _parens(_RAW2))  # balanced parentheses, three levels deep
_RAW = _star(_RAW_ITEM)
_POINTY = _seq(_lit("<"), _star(_alt(_atom(r"[^<>\n\\]"), _seq(_lit("\\"), _atom(r"[^\n]")))), _lit(">"))
_TITLE = _alt(_quoted('"', '"'), _quoted("'", "'"), _quoted("(", ")"))
_INLINE = _seq(_lit("]("), _WS, _alt(_group("pointy", _POINTY), _group("raw", _RAW)),
               _opt(_seq(_WS1, _TITLE)), _WS, _lit(")"))
_DEF = _seq(_lit("]:"), _WS, _alt(_group("pointy", _POINTY), _group("raw", _seq(_RAW_ITEM, _RAW))),
            _opt(_seq(_WS1, _TITLE)), _star(_SP), _NL)
_AUTOLINK = _seq(_lit("<"), _atom("[A-Za-z]"), _star(_atom(r"[A-Za-z0-9+.\-]")), _lit(":"),
                 _star(_atom(r"[^\s<>\x00-\x1f\x7f]")), _lit(">"))

INLINE_RE = compile_re2(_INLINE.full)
INLINE_PRE = compile_re2(_INLINE.pre)
DEF_RE = compile_re2(_DEF.full)
DEF_PRE = compile_re2(_DEF.pre)
AUTOLINK_PRE = compile_re2(_AUTOLINK.pre)
HEAD_RE = compile_re2(r"\]\(" + _WS.full + "(" + _RAW.full + ")")  # what a lenient renderer would link
DEF_HEAD_RE = compile_re2(r"\]:" + _WS.full + "(" + _RAW.full + ")")
AUTOLINK_START = compile_re2(r"<[A-Za-z][A-Za-z0-9+.\-]*:")
MD_ESCAPE = compile_re2(r"\\([!-/:-@\[-`{-~])")

# HTML and CSS, read the way the HTML tokenizer reads them.
TAG_START = compile_re2(r"<[A-Za-z]")
TAG_NAME = compile_re2(r"[^\s/>]*")
ATTR = compile_re2(r"([^\s/>=][^\s/>=]*|=[^\s/>=]*)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]*)))?")
TAG_LIKE = compile_re2(r"<[^<>]*>")
CSS_URL = compile_re2(
    r"(?i)(?:url|image|image-set|src|cross-fade)\(\s*(?:\"([^\"]*)\"|'([^']*)'|([^)\"'\s]*))")
CSS_STRING = compile_re2(r"\"([^\"]*)\"|'([^']*)'")

SCHEME = compile_re2(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_IPV6_LITERAL = compile_re2(r"(?://|@)\[[0-9A-Fa-f:.]+\]")


def may_change(text: str) -> bool:
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
