"""Prompt-injection / jailbreak detector: RE2 signatures for known techniques plus a contextual encoder.

The text is normalised (NFKC, zero-width and tag characters dropped, Latin look-alikes inside Latin words
folded). The encoder (int8 ONNX all-MiniLM-L6-v2 with a logistic head, extproc/detectors/_injection/) scores
overlapping token windows, so an injection inside a long RAG document is scored on its own window instead of
being diluted by the whole text. Per window:

    score = 1 - (1 - signatures) * (1 - model),  signatures = noisy-OR of the weights of matches in it

The threshold depends on the message role (`role_thresholds`; tool results and documents are held to a
stricter one than user turns). Window scores are cached per message text (chat clients resend the history)
and bounded per exchange (`max_windows`); windows past the budget are covered by the signatures alone. The
word-level classifier (`classifier`, _injection/words.py) is the third layer; each can be switched off.
"""

from __future__ import annotations

import base64
import binascii
import math
import unicodedata
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, model_validator

from extproc.detectors import register
from extproc.detectors._injection.stage import EncoderStage
from extproc.detectors._injection.verdicts import VerdictCache
from extproc.detectors._injection.words import (  # noqa: F401
    MODEL_FILE,
    STRIDE,
    WINDOW,
    Model,
    model,
    token_features,
    tokens,
    window_tokens,
    windows,
)
from extproc.detectors.base import Detector
from extproc.detectors.patterns import compile_re2
from extproc.model import Finding

# tools/train_injection_head.py (also written to injection_head.json): the lowest thresholds of the combined
# score whose leave-one-source-out false-positive rate on benign training rows is <= 1 % (user turns) and
# <= 3 % (every other role: tool results, documents, system text should carry no instructions at all).
DEFAULT_THRESHOLD = 0.984
DEFAULT_ROLE_THRESHOLDS = {"user": 0.996}

_GAP = r"(?:\S+\s+){0,3}?"  # up to three words
_OLD = r"(?:previous|prior|preceding|above|earlier|former|original|initial|old|existing|system|all|any|every)"
_RULES = (
    r"(?:instructions?|directions|directives?|prompts?|rules|guidelines|commands|orders|constraints|programming"
    r"|restrictions|guardrails|policies|safeguards|filters|context|conversation|messages|text|tasks?)\b"
)
_IGNORE = r"\b(?:ignore|disregard|forget|override|neglect|discard|abandon|pay no attention to|do not follow|don't follow|stop following)\s+"
_EXTRACT = r"\b(?:repeat|print|reveal|show|display|output|dump|leak|spell out|write out|tell me|give me|share|list)\b"
# (technique, weight, pattern): a weight at or above the default threshold is enough on its own, lower ones
# need support from the classifier or from other matches in the same window.
SIGNATURES: tuple[tuple[str, float, str], ...] = (
    ("instruction_override", 0.95, rf"{_IGNORE}{_GAP}{_OLD}\s+(?:\S+\s+){{0,2}}?{_RULES}"),
    ("instruction_override", 0.95, rf"{_IGNORE}(?:everything|all|anything)\s+(?:that\s+)?(?:you(?:'ve| have| were| was)? (?:been )?(?:told|taught|learned|given)|above|before|so far|previously)"),
    ("instruction_override", 0.95, r"\b(?:ignorier|vergiss|missachte)\w*\s+(?:\S+\s+){0,3}?(?:anweisungen|instruktionen|befehle|vorgaben|regeln)\b"),
    ("instruction_override", 0.95, r"\b(?:ignora|olvida|ignorez|ignore|oubliez|oublie)\s+(?:\S+\s+){0,3}?(?:instrucciones|consignes|instructions)\s+(?:anteriores|previas|précédentes|antérieures)"),
    ("instruction_override", 0.6, rf"{_IGNORE}(?:your|these|those|the|my)\s+(?:\S+\s+){{0,2}}?{_RULES}"),
    ("instruction_override", 0.5, r"\b(?:new|updated|real|actual|true|secret|override)\s+(?:instructions?|task|directive|orders)\s*:"),
    ("instruction_override", 0.3, r"\b(?:from now on|henceforth|starting now)\b"),
    ("role_hijack", 0.8, r"\bfrom now on,? you (?:are going to|will|must|shall) (?:act|pretend|be|respond|behave|roleplay|answer as)\b"),
    ("role_hijack", 0.85, r"\b(?:freed|released|liberated|broken free) from (?:the |all |any )?(?:typical )?(?:confines|restrictions|rules|shackles|limitations|chains)\b"),
    ("role_hijack", 0.6, r"\bwith(?:out)? no (?:rules|limits|limitations|restrictions|filters|censorship) (?:or|and|whatsoever)\b"),
    ("role_hijack", 0.95, r"\b(?:developer|god|jailbreak|jailbroken|unrestricted|dan|sudo|debug) mode\b"),
    ("role_hijack", 0.4, r"\byou are (?:now|no longer|free from|not bound|released)\b"),
    ("role_hijack", 0.7, r"\b(?:act|behave|respond|pretend|roleplay)\b(?: as| like| to be)?[^.\n]{0,30}\b(?:unrestricted|unfiltered|uncensored|jailbroken|amoral|unethical|no (?:rules|limits|restrictions|filters))\b"),
    ("role_hijack", 0.5, r"\b(?:without|free (?:of|from)|not bound by|no longer bound by) (?:any )?(?:ethical|moral|content|safety)? ?(?:restrictions|guidelines|filters|limitations|boundaries|polic(?:y|ies))\b"),
    ("dan_persona", 0.95, r"\bdo anything now\b|\bdan\b[^.\n]{0,60}\b(?:jailbreak|no restrictions|can do anything)\b"),
    ("dan_persona", 0.35, r"\b(?:stay|remain|break(?:ing)?) (?:in|out of) character\b|\bopenai(?:'s)? (?:content )?polic(?:y|ies)\b"),
    ("system_prompt_extraction", 0.95, rf"{_EXTRACT}[^.\n]{{0,30}}\b(?:system|initial|original|hidden|secret|pre-?prompt|developer) (?:prompt|instructions?|message)\b"),
    ("system_prompt_extraction", 0.75, r"\b(?:repeat|print|output|reveal|show|write|copy)\b[^.\n]{0,25}\b(?:everything|all|the (?:text|words|instructions)|your (?:instructions|prompt|rules))\b[^.\n]{0,25}\b(?:above|before this|so far|you were given|verbatim)\b"),
    ("system_prompt_extraction", 0.8, r"\b(?:instructions|directions|rules|guidelines|prompt|orders)\b (?:that )?(?:you've|you have|you were|you've been|you have been) (?:been )?(?:given|told|programmed with)\b"),
    ("system_prompt_extraction", 0.5, r"\b(?:what|which) (?:are|were|is) your (?:instructions|rules|system prompt|initial prompt)\b"),
    ("delimiter_injection", 0.85, r"<\|(?:im_start|im_end|system|endoftext|eot_id|start_header_id|end_header_id)\|>|<<sys>>|\[/?inst\]"),
    ("delimiter_injection", 0.7, r"</?(?:system|sys|instructions?|admin|developer|im_start)>|(?:^|\n)\s*(?:#{2,}|\[)\s*(?:system|new instructions?|instruction)\s*[:\]]"),
    ("delimiter_injection", 0.5, r"\b(?:end|begin|start) of (?:the )?(?:system|user|original) (?:prompt|message|instructions?|input)\b|\bsystem (?:instructions?|prompt|message) (?:begins|starts|follows)\b|(?:^|\n)\s*system\s*:\s*"),
    ("encoded_payload", 0.8, r"\b(?:decode|decipher|decrypt|translate|convert)\b[^.\n]{0,40}\b(?:base64|b64|rot13|rot-13|hex|binary|morse|caesar)\b[^.\n]{0,60}\b(?:follow|execute|obey|do|run|perform|carry out|answer)\b"),
)
_BASE64 = compile_re2(r"[A-Za-z0-9+/]{24,252}={0,2}")
_DROP_CHARS = frozenset(map(chr, [0x00AD, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, *range(0xE0000, 0xE0080)]))
_LOOKALIKE = dict(zip("аеорсухіјѕԁɡνοτ", "aeopcyxijsdgvot"))
_MIXED = compile_re2("[a-zA-Z][аеорсухіјѕԁɡνοτ]|[аеорсухіјѕԁɡνοτ][a-zA-Z]")
_COMPILED = tuple((tech, w, compile_re2(p, ignore_case=True)) for tech, w, p in SIGNATURES)
_ANY = compile_re2("|".join(f"(?:{p})" for _, _, p in SIGNATURES), ignore_case=True)


def normalise(text: str) -> tuple[str, str, list[int] | None]:
    """(normalised text, its lowercase form for the classifier, map to `text` offsets or None if identical)."""
    if text.isascii():
        return text, text.lower(), None
    special = frozenset(c for c in set(text) if c in _DROP_CHARS or c in _LOOKALIKE or _NFKC(c) != c)
    norm, offsets = _rewrite(text, special) if special else (text, None)
    low = norm.lower()
    low = low if len(low) == len(norm) else "".join(c.lower() if len(c.lower()) == 1 else c for c in norm)
    return norm, low.translate(_SEPARATORS), offsets


def _rewrite(text: str, special: frozenset[str]) -> tuple[str, list[int]]:
    """Rewrite only the characters that change, copying the runs between them."""
    parts: list[str] = []
    offsets: list[int] = []
    last = 0
    for i in [i for i, c in enumerate(text) if c in special]:
        parts.append(text[last:i])
        offsets.extend(range(last, i))
        last, ch = i + 1, text[i]
        if ch in _DROP_CHARS:
            continue
        if ch in _LOOKALIKE and _MIXED.search(text, max(0, i - 1), i + 2):
            ch = _LOOKALIKE[ch]
        parts.append(_NFKC(ch))
        offsets.extend([i] * len(parts[-1]))
    parts.append(text[last:])
    offsets.extend(range(last, len(text)))
    return "".join(parts), offsets


_SEPARATORS = {  # non-ASCII punctuation, symbols (emoji too), spaces and controls become a space
    c: " " for c in (*range(128, 0x3100), *range(0xFE00, 0x10000), *range(0x1F000, 0x1FB00))
    if not chr(c).isalnum() and unicodedata.category(chr(c))[0] in "PSZC"
}
_NFKC = cache(lambda ch: unicodedata.normalize("NFKC", ch))


@cache
def encoder_stage() -> EncoderStage:
    """The shipped encoder with one verdict cache shared by every rule of the process."""
    from extproc.detectors._injection.encoder import shipped

    return EncoderStage(*shipped(), VerdictCache())


def signature_hits(norm: str) -> list[tuple[str, float, int, int]]:
    """(technique, weight, start, end) of every signature match, including inside decoded base64 runs."""
    hits = _matches(norm)
    for _, m in zip(range(8), _BASE64.finditer(norm)):  # bounded decoding work
        inner = _matches(_decoded(m.group()))
        if inner:
            hits.append(("encoded_payload", max(w for _, w, _, _ in inner), m.start(), m.end()))
    return hits


def _decoded(run: str) -> str:
    try:
        decoded = base64.b64decode(run + "=" * (-len(run) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded if all(c.isprintable() or c.isspace() for c in decoded) else ""


def _matches(text: str) -> list[tuple[str, float, int, int]]:
    # One pass of the union first: most texts match nothing, and one RE2 scan is far cheaper than 25.
    if not text or not _ANY.search(text):
        return []
    return [(tech, w, m.start(), m.end()) for tech, w, rx in _COMPILED for m in rx.finditer(text)]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(DEFAULT_THRESHOLD, gt=0.0, le=1.0,
                             description="report windows scoring at least this, in roles without their own")
    role_thresholds: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_ROLE_THRESHOLDS),
        description="per message role (user, tool, system, ...): its own threshold; other roles use `threshold`")
    signatures: bool = Field(True, description="use the RE2 technique signatures")
    classifier: bool = Field(True, description="use the shipped word-level linear classifier")
    encoder: bool = Field(True, description="use the shipped contextual encoder (int8 ONNX MiniLM)")
    max_windows: int = Field(64, ge=0, le=4096, description="encoder windows per exchange (cached texts are free)")

    @model_validator(mode="after")
    def _one_layer(self) -> Params:
        if not (self.signatures or self.classifier or self.encoder):
            raise ValueError("at least one of signatures, classifier and encoder must be enabled")
        bad = {role: t for role, t in self.role_thresholds.items() if not 0.0 < t <= 1.0}
        if bad:
            raise ValueError(f"role_thresholds must lie in (0, 1]: {sorted(bad)}")
        return self

    def threshold_for(self, role: str | None) -> float:
        return self.role_thresholds.get(role, self.threshold) if role is not None else self.threshold


@register
class PromptInjection(Detector):
    """Scores instruction override, role hijack, prompt extraction, personas, fake delimiters, encoded payloads."""

    name = "prompt_injection"
    owasp = ("LLM01:2025", "LLM01:2026")
    Params = Params
    max_span = WINDOW

    def __init__(self, params: BaseModel | None = None) -> None:
        super().__init__(params)
        self._model = model() if self.params.classifier else None
        self._stage = encoder_stage() if self.params.encoder else None
        self.blocking = self._stage is not None  # the session scans its requests off the event loop

    def find(self, text: str) -> list[Finding]:
        return self.find_in_role(text, None)

    def find_in_role(self, text: str, role: str | None) -> list[Finding]:
        if not text.strip():
            return []
        threshold = self.params.threshold_for(role)
        norm, low, offsets = normalise(text)
        wins, probs, labels = self._windows(norm, low)
        hits = signature_hits(norm) if self.params.signatures else []
        scores = [  # noisy-OR of the window's model score and every signature match overlapping it
            1 - (1 - p) * math.prod(1 - w for _, w, s, e in hits if win[0] < e and s < win[1])
            for p, win in zip(probs, wins)
        ]
        found = self._signature_findings(hits, wins, scores, threshold)
        found += self._window_findings(hits, wins, scores, labels, threshold)
        return [self._finding(label, s, e, score, offsets, len(text)) for label, s, e, score in found]

    def _windows(self, norm: str, low: str) -> tuple[list[tuple[int, int]], list[float], list[str]]:
        """Scored windows of every enabled model: character windows of the word model, token windows of the
        encoder (an encoder window's score is the noisy-OR of its probability and the best word-model window
        overlapping it, as tools/train_injection_head.py combines them); with no model, character windows
        scored 0 so signature matches still land in one."""
        wins: list[tuple[int, int]] = []
        probs: list[float] = []
        if self._model is not None or self._stage is None:
            wins = windows(len(norm))
            probs = self._model.window_probabilities(low, wins) if self._model else [0.0] * len(wins)
        labels = ["prompt_injection:classifier"] * len(wins)
        char = list(zip(wins, probs))
        for start, end, p in self._stage.scores(norm, self.params.max_windows) if self._stage else ():
            word = max((q for (s, e), q in char if s < end and start < e), default=0.0)
            wins.append((start, end))
            probs.append(1 - (1 - p) * (1 - word))
            labels.append("prompt_injection:encoder")
        if not wins:  # the budget ran out before this text: signatures only
            wins, probs, labels = [(0, len(norm))], [0.0], ["prompt_injection:classifier"]
        return wins, probs, labels

    def _signature_findings(self, hits, wins, scores, threshold):  # type: ignore[no-untyped-def]
        overlap = [max((sc for w, sc in zip(wins, scores) if w[0] < e and s < w[1]), default=weight)
                   for _, weight, s, e in hits]
        found = [(f"prompt_injection:{t}", s, e, sc) for (t, _, s, e), sc in zip(hits, overlap)]
        return [f for f in found if f[3] >= threshold]

    def _window_findings(self, hits, wins, scores, labels, threshold):  # type: ignore[no-untyped-def]
        """Best non-overlapping windows above threshold that hold no signature match (those are reported)."""
        order = sorted(range(len(wins)), key=lambda k: -scores[k])
        taken: list[tuple[int, int]] = [(s, e) for _, _, s, e in hits]
        out = []
        for k in order:
            (start, end), score = wins[k], scores[k]
            if score < threshold:
                break
            if not any(s < end and start < e for s, e in taken):
                taken.append((start, end))
                out.append((labels[k], start, end, score))
        return out

    def _finding(self, label: str, start: int, end: int, score: float, offsets, size: int) -> Finding:  # type: ignore[no-untyped-def]
        if offsets is not None:
            start, end = offsets[start], offsets[end - 1] + 1
        end = min(end, start + self.max_span, size)
        return Finding(self.name, label, start, end, score=round(min(score, 1.0), 4))
