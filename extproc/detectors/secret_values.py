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


_CLOG = [0.0] + [c * math.log2(c) for c in range(1, 4097)]


def entropy(value: str) -> float:
    """Shannon entropy in bits per character: log2(n) - sum(c log2 c) / n over the character counts c."""
    n = len(value)
    if n == 0:
        return 0.0
    counts = Counter(value).values()
    total = sum(map(_CLOG.__getitem__, counts)) if n < len(_CLOG) else sum(c * math.log2(c) for c in counts)
    return math.log2(n) - total / n


_UPPER, _LOWER, _DIGITS = frozenset(string.ascii_uppercase), frozenset(string.ascii_lowercase), frozenset(string.digits)


def classes(value: str) -> int:
    """How many of upper case, lower case and digits (ASCII) occur."""
    chars = set(value)
    return bool(chars & _UPPER) + bool(chars & _LOWER) + bool(chars & _DIGITS)


def is_placeholder(value: str) -> bool:
    bare = value.strip("-_.=+/")
    return len(set(bare)) <= 1 or _PLACEHOLDER.search(value) is not None
