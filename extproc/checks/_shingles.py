"""Word-shingle fingerprints of hidden context (system prompts, tool schemas) and the per-exchange detector that
finds their echo in output text. Used by the `context_leak` check; never registered as a detector.

Text is cut into tokens: runs of letters and digits, lower-cased, at most `MAX_TOKEN` characters (a longer run
is several tokens). A shingle is `n` consecutive tokens with no separator longer than `MAX_SEPARATOR`
characters between them; only its 64-bit hash is kept, never the hidden text itself.

Matching: each output window whose hash is known is a hit. Hits chain into one echo while the next hit starts at
most `max_gap` unmatched tokens after the tokens the chain covers (a substituted, inserted or deleted word only
breaks the shingles around it) and while the chain spans at most `max_span` characters (a longer echo becomes
several adjacent findings). A chain is reported when its hits' credit reaches `min_shingles`. Credit is 1 per
shingle, except for hidden texts too short to give `min_shingles` shingles: their shingles share the full
credit, so echoing the whole of a short system prompt is enough.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from extproc.detectors.base import Detector
from extproc.detectors.hold import hold_anchored
from extproc.model import Finding

MAX_TOKEN = 32
MAX_SEPARATOR = 32
SYSTEM, TOOLS = "system_prompt_echo", "tool_schema_echo"


class Token(NamedTuple):
    start: int
    end: int
    word: str


def tokens(text: str) -> list[Token]:
    """Tokens of `text` with their character offsets; linear time, no regular expression needed."""
    table = {ord(c): " " for c in set(text) if not c.isalnum()}
    spaced = text.translate(table)
    out: list[Token] = []
    pos = 0
    for word in spaced.split():  # only " " is left between words
        pos = spaced.find(word, pos)
        if len(word) <= MAX_TOKEN:
            out.append(Token(pos, pos + len(word), word.lower()))
        else:
            out.extend(Token(pos + cut, pos + min(cut + MAX_TOKEN, len(word)), word[cut : cut + MAX_TOKEN].lower())
                       for cut in range(0, len(word), MAX_TOKEN))
        pos += len(word)
    return out


def run_starts(toks: list[Token]) -> list[int]:
    """For each token, the index of the first token of its run (runs are cut by long separators)."""
    starts: list[int] = []
    for i, tok in enumerate(toks):
        joined = i > 0 and tok.start - toks[i - 1].end <= MAX_SEPARATOR
        starts.append(starts[-1] if joined else i)
    return starts


def shingles(text: str, size: int) -> list[tuple[str, ...]]:
    toks = tokens(text)
    runs = run_starts(toks)
    words = [t.word for t in toks]
    return [tuple(words[i : i + size]) for i in range(len(toks) - size + 1) if runs[i + size - 1] <= i]


def shingle_hashes(text: str, size: int) -> list[int]:
    return [hash(shingle) for shingle in shingles(text, size)]


@dataclass(slots=True)
class Fingerprints:
    """Shingle hashes by window size -> (credit, label)."""

    n: int
    min_shingles: int
    min_words: int
    by_size: dict[int, dict[int, tuple[float, str]]]
    # First words of the known shingles: an output window starting with any other word cannot match, so the
    # scan hashes only the few windows that start with one of these.
    first_words: set[str] = field(default_factory=set)

    def add(self, text: str, label: str, short_whole: bool) -> None:
        """Add one hidden text. Texts shorter than n words are kept whole when `short_whole` (system prompts)
        and have at least `min_words` words; otherwise they are too short to tell apart from ordinary prose."""
        size = self.n
        found = shingles(text, size)
        if not found and short_whole:
            size = len(tokens(text))
            found = shingles(text, size) if size >= self.min_words else []
        if not found:
            return
        self.first_words.update(shingle[0] for shingle in found)
        hashes = [hash(shingle) for shingle in found]
        credit = max(1.0, self.min_shingles / len(set(hashes)))
        table = self.by_size.setdefault(size, {})
        for value in hashes:
            known = table.get(value)
            if known is None or known[0] < credit:
                table[value] = (credit, label)

    def __len__(self) -> int:
        return sum(len(t) for t in self.by_size.values())


class _Chain:
    __slots__ = ("credit", "end", "first", "labels")

    def __init__(self, first: int, end: int, credit: float, label: str) -> None:
        self.first, self.end, self.credit, self.labels = first, end, credit, {label}


class ContextEcho(Detector):
    """Finds echoes of one exchange's hidden context (and its canary) in output text."""

    name: ClassVar[str] = "context_leak"
    owasp: ClassVar[tuple[str, ...]] = ("LLM07:2025", "LLM08:2026")

    def __init__(self, prints: Fingerprints, max_gap: int, max_span: int, placeholder: str,
                 canary: str | None = None) -> None:
        super().__init__()
        self.prints, self.max_gap, self.max_span = prints, max_gap, max_span
        self.placeholder, self.canary = placeholder, canary

    # ---- find -----------------------------------------------------------------------------------------
    def find(self, text: str) -> list[Finding]:
        toks = tokens(text)
        found = [self._finding(toks, chain) for chain in self._chains(toks, len(toks))
                 if chain.credit >= self.prints.min_shingles]
        return found + self._canaries(text)

    def _finding(self, toks: list[Token], chain: _Chain) -> Finding:
        label = SYSTEM if SYSTEM in chain.labels else TOOLS
        return Finding(self.name, label, toks[chain.first].start, toks[chain.end - 1].end,
                       replacement=self._replacement(label))

    def _replacement(self, label: str) -> str:
        return self.placeholder.replace("{LABEL}", label.upper()).replace("{label}", label)

    def _canaries(self, text: str) -> list[Finding]:
        if not self.canary:
            return []
        out, at = [], text.find(self.canary)
        while at != -1:
            out.append(Finding(self.name, "canary", at, at + len(self.canary),
                               replacement=self._replacement("canary")))
            at = text.find(self.canary, at + len(self.canary))
        return out

    def _hits(self, toks: list[Token], done: int) -> list[tuple[int, int, float, str]]:
        """(first token, end token, credit, label) of every known window lying in the first `done` tokens."""
        runs = run_starts(toks)
        words = [t.word for t in toks]
        first_words = self.prints.first_words
        hits = []
        for i in range(done):
            if words[i] not in first_words:
                continue
            best = None
            for size, table in self.prints.by_size.items():
                end = i + size
                if end <= done and runs[end - 1] <= i:
                    known = table.get(hash(tuple(words[i:end])))
                    if known is not None and (best is None or known[0] > best[2]):
                        best = (i, end, known[0], known[1])
            if best is not None:
                hits.append(best)
        return hits

    def _chains(self, toks: list[Token], done: int) -> list[_Chain]:
        chains: list[_Chain] = []
        for first, end, credit, label in self._hits(toks, done):
            last = chains[-1] if chains else None
            if last is not None and first <= last.end + self.max_gap \
                    and toks[end - 1].end - toks[last.first].start <= self.max_span:
                last.end = max(last.end, end)
                last.credit += credit
                last.labels.add(label)
            else:
                chains.append(_Chain(first, end, credit, label))
        return chains

    # ---- hold -----------------------------------------------------------------------------------------
    def hold(self, text: str) -> int:
        """Hold from the earliest token a future echo could start at: the start of an open chain (one a
        future window could still join) or the first token a not-yet-complete window could start at."""
        canary_hold = hold_anchored(text, [self.canary], len(self.canary)) if self.canary else 0
        toks = tokens(text)
        if not toks:
            return canary_hold
        # The last token may still grow when it touches the end of the text.
        done = len(toks) - 1 if toks[-1].end == len(text) else len(toks)
        future = self._first_future_start(toks, done, len(text))
        start = len(text) if future >= len(toks) else toks[future].start
        chains = self._chains(toks, done)
        if chains:
            chain = chains[-1]
            begin = toks[chain.first].start
            if chain.end + self.max_gap >= future and len(text) - begin <= self.max_span:
                start = min(start, begin)
        return max(canary_hold, len(text) - start)

    def _first_future_start(self, toks: list[Token], done: int, length: int) -> int:
        """The lowest token index a window not yet complete (one holding a token at index >= done) can start."""
        if done == len(toks) and length - toks[-1].end > MAX_SEPARATOR:
            return done  # a long trailing separator: no window can span it
        future = max(0, done - self.prints.n + 1)
        future = max(future, run_starts(toks)[min(done, len(toks) - 1)] if done < len(toks)
                     else run_starts(toks)[-1])
        # A window can only start at a word some shingle starts with (or, for the last token, which may still
        # grow, at a prefix of one): the words before the first such token are final.
        first = self.prints.first_words
        while future < len(toks):
            word = toks[future].word
            if word in first or (future >= done and any(w.startswith(word) for w in first)):
                break
            future += 1
        return future
