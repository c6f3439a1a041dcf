"""What a candidate secret value looks like: entropy, character classes, and the one placeholder test.

Placeholders (documented choice, applied to every rule): a value is not reported when it holds an obvious
stand-in: the word EXAMPLE in any case, `your...`, `placeholder`, `redacted`, `changeme`, `dummy`, a run of
four or more `x` or `*`, an `<angle bracket>` or template marker (`${`, `{{`), or when its random part is a
single repeated character. Sequential fixtures (`abcdef123456...`) are NOT placeholders: a leaked key can
look like anything, and only markers nobody generates at random are safe to skip.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter

# Checks on one short candidate value (at most a few hundred characters) use the standard library: these
# fixed patterns have no nested repetition, so they stay linear, and a call costs far less than through
# the RE2 wrapper. Whole texts are only ever scanned with RE2.
_PLACEHOLDER = re.compile(
    r"example|your|placeholder|redacted|changeme|dummy|x{4,}|\*{3,}|<[\w .-]*>|\$\{|\{\{", re.IGNORECASE)
WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+|[0-9]+")  # the words of a key name: DB_PASSWORD, tokenUrl
_NOT_ALNUM, _DIGIT_RUNS = re.compile("[^A-Za-z0-9]"), re.compile("[0-9]+|[A-Za-z]+")
_READABLE, _SHOUTED = re.compile("[A-Z]?[a-z]{3,}"), re.compile("(?<![A-Za-z])[A-Z]{3,}(?![a-z])")


_CLOG = [0.0] + [c * math.log2(c) for c in range(1, 4097)]


def entropy(value: str) -> float:
    """Shannon entropy in bits per character: log2(n) - sum(c log2 c) / n over the character counts c."""
    n = len(value)
    if n == 0:
        return 0.0
    if n >= len(_CLOG):
        return math.log2(n) - sum(c * math.log2(c) for c in Counter(value).values()) / n
    return math.log2(n) - sum(_CLOG[value.count(c)] for c in set(value)) / n  # short values: no Counter


_UPPER, _LOWER, _DIGITS = frozenset(string.ascii_uppercase), frozenset(string.ascii_lowercase), frozenset(string.digits)


def classes(value: str) -> int:
    """How many of upper case, lower case and digits (ASCII) occur."""
    chars = set(value)
    return bool(chars & _UPPER) + bool(chars & _LOWER) + bool(chars & _DIGITS)


def is_placeholder(value: str) -> bool:
    bare = value.strip("-_.=+/")
    return len(set(bare)) <= 1 or _PLACEHOLDER.search(value) is not None


def looks_random(value: str, min_entropy: float = 3.0) -> bool:
    """Letter/digit alternation, length and entropy: what separates `a1b2c3...` keys from words like
    `invalid123`, `difference` or `v2`; and few readable words, unlike `OAuth2Credentials` or
    `base64.urlsafe_b64encode` in code."""
    alnum = _NOT_ALNUM.sub("", value)
    if len(alnum) < 8 or entropy(value) < min_entropy:
        return False
    if alnum.isdigit():
        return len(alnum) >= 16
    switches = len(_DIGIT_RUNS.findall(alnum)) - 1  # runs of digits and of letters, less one
    return not wordy(value) and (switches >= 2 or (switches >= 1 and len(alnum) >= 16))


def wordy(value: str) -> bool:
    """Mostly runs of three or more lower-case letters whose letter pairs are those of English words (`th`,
    `er`, `on`...: most pairs of a word, few of random letters): an identifier made of words."""
    if "__" in value:  # a dunder or generated name: `____type__matcher__v3__.StringMatcher`
        return True
    if _SHOUTED.search(value):
        value = _SHOUTED.sub(lambda m: m.group().lower(), value)  # constants: `_FIELD2ATTR`, `KEY_READ`
    runs = [run.lower() for run in _READABLE.findall(value)]
    if sum(map(len, runs)) < 0.6 * len(_NOT_ALNUM.sub("", value)):
        return False
    pairs = [run[i : i + 2] for run in runs for i in range(len(run) - 1)]
    return sum(pair in _COMMON_PAIRS for pair in pairs) >= 0.5 * len(pairs)


# the ~110 most frequent letter pairs of English text (a fact of the language; one in six of all pairs)
_COMMON_PAIRS = frozenset(
    ["th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed", "is", "it", "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le", "ve", "co", "me", "de", "hi", "ri", "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll", "be", "ma", "si", "om", "ur", "ca", "el", "ta", "la", "ns", "di", "fo", "ho", "pe", "ec", "pr", "no", "ct", "us", "ac", "ot", "il", "tr", "ly", "nc", "et", "ut", "ss", "so", "rs", "un", "lo", "wa", "ge", "ie", "wh", "ee", "wi", "em", "ad", "ol", "rt", "po", "we", "na", "ul", "ni", "ts", "mo", "ow", "pa", "im", "mi", "ai", "sh", "ir", "su", "id", "os", "iv", "ia", "am", "fi", "ci", "vi"])
