"""What a candidate secret value looks like: entropy, character classes, and the one placeholder test.

Placeholders (documented choice, applied to every rule): a value is not reported when it holds an obvious
stand-in: the word EXAMPLE in any case, `your...`, `placeholder`, `redacted`, `changeme`, `dummy`, a run of
four or more `x` or `*`, an `<angle bracket>` or template marker (`${`, `{{`), or when its random part is a
single repeated character. Sequential fixtures (`abcdef123456...`) are NOT placeholders: a leaked key can
look like anything, and only markers nobody generates at random are safe to skip.
"""

from __future__ import annotations

import math
from collections import Counter

from extproc.detectors.patterns import compile_re2

_PLACEHOLDER = compile_re2(
    r"example|your|placeholder|redacted|changeme|dummy|x{4,}|\*{3,}|<[\w .-]*>|\$\{|\{\{", ignore_case=True)


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values()) if value else 0.0


def classes(value: str) -> int:
    """How many of upper case, lower case and digits occur."""
    return sum(any(f(c) for c in value) for f in (str.isupper, str.islower, str.isdigit))


def is_placeholder(value: str) -> bool:
    bare = value.strip("-_.=+/")
    return len(set(bare)) <= 1 or _PLACEHOLDER.search(value) is not None
