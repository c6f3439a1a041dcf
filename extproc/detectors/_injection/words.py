"""The word-level linear classifier of prompt_injection (the fast stage before the encoder, off by default):
logistic regression over word unigrams, bigrams and 5-character prefixes in character windows, each window's
feature counts scaled by 1/sqrt(count); window sums come from prefix sums, so scoring is linear in the text.
Trained by tools/train_injection.py; ships as a gzipped JSON weight table."""

from __future__ import annotations

import gzip
import json
import math
import string
from bisect import bisect_left, bisect_right
from functools import cache
from importlib import resources

WINDOW = 256
STRIDE = 128
MODEL_FILE = "injection_model.json.gz"
_PUNCT = str.maketrans(dict.fromkeys(string.punctuation, " "))


def tokens(low: str) -> tuple[list[str], list[int]]:
    """Word tokens and their start offsets; CJK runs become one token per character."""
    spaced = low.translate(_PUNCT)
    words, starts, pos = [], [], 0
    for word in spaced.split():
        pos = spaced.find(word, pos)
        if word.isascii() or not any("\u2e80" <= c <= "\u9fff" for c in word):
            words.append(word)
            starts.append(pos)
        else:
            words.extend(word)
            starts.extend(range(pos, pos + len(word)))
        pos += len(word)
    return words, starts


def token_features(words: list[str]) -> list[tuple[str, ...]]:
    """Features anchored at each token: unigram, bigram with the previous token, 5-char prefix of long words."""
    feats: list[tuple[str, ...]] = []
    prev = "^"
    for word in words:
        word = word[:24]
        pair = ("u" + word, "b" + prev + " " + word)
        feats.append((*pair, "p" + word[:5]) if len(word) > 6 else pair)
        prev = word
    return feats


def windows(length: int) -> list[tuple[int, int]]:
    """Character windows covering `length`: any span of at most WINDOW - STRIDE characters lies in one."""
    if length <= WINDOW:
        return [(0, length)]
    starts = [*range(0, length - WINDOW, STRIDE), length - WINDOW]
    return [(s, s + WINDOW) for s in starts]


def window_tokens(starts: list[int], words: list[str], win: tuple[int, int]) -> tuple[int, int]:
    """Token index range [i, j) of the tokens lying wholly inside `win`."""
    i = bisect_left(starts, win[0])
    j = bisect_right(starts, win[1] - 1)
    while j > i and starts[j - 1] + len(words[j - 1]) > win[1]:
        j -= 1
    return i, j


class Model:
    """Linear weights over `token_features`, regrouped so scoring needs no feature strings."""

    def __init__(self, bias: float, weights: dict[str, float]) -> None:
        self.bias = bias
        self.weights = weights
        self._unigram = {k[1:]: v for k, v in weights.items() if k[0] == "u"}
        self._prefix = {k[1:]: v for k, v in weights.items() if k[0] == "p"}
        self._bigram = {tuple(k[1:].split(" ", 1)): v for k, v in weights.items() if k[0] == "b"}

    def window_probabilities(self, low: str, wins: list[tuple[int, int]]) -> list[float]:
        words, starts = tokens(low)
        sums, counts = self._prefix_sums(words)
        probs = []
        for win in wins:
            i, j = window_tokens(starts, words, win)
            n = counts[j] - counts[i]
            z = self.bias + (sums[j] - sums[i]) / math.sqrt(n) if n else -math.inf
            probs.append(1.0 / (1.0 + math.exp(-z)) if z > -500 else 0.0)
        return probs

    def _prefix_sums(self, words: list[str]) -> tuple[list[float], list[int]]:
        """Running sums of feature weights and feature counts per token (same features as token_features)."""
        unigram, prefix, bigram = self._unigram.get, self._prefix.get, self._bigram.get
        memo: dict[str, float] = {}
        sums, counts, prev = [0.0], [0], "^"
        for word in words:
            word = word[:24]
            weight = memo.get(word)
            if weight is None:
                weight = memo[word] = unigram(word, 0.0) + (prefix(word[:5], 0.0) if len(word) > 6 else 0.0)
            sums.append(sums[-1] + weight + bigram((prev, word), 0.0))
            counts.append(counts[-1] + (3 if len(word) > 6 else 2))
            prev = word
        return sums, counts


@cache
def model() -> Model:
    """The shipped classifier, loaded once per process."""
    data = json.loads(gzip.decompress(resources.files("extproc").joinpath("data", MODEL_FILE).read_bytes()))
    if data.get("format") != 1 or data.get("window") != WINDOW or data.get("stride") != STRIDE:
        raise ValueError(f"{MODEL_FILE}: unsupported format or window settings")
    return Model(float(data["bias"]), data["weights"])
