"""The encoder stage of the prompt_injection detector: per-window probabilities of one text, cached and
bounded by the exchange's window budget."""

from __future__ import annotations

from extproc.detectors._injection.encoder import Encoder, Head
from extproc.detectors._injection.verdicts import Scores, VerdictCache, WindowBudget, exchange_budget


class EncoderStage:
    def __init__(self, encoder: Encoder, head: Head, cache: VerdictCache) -> None:
        self.encoder = encoder
        self.head = head
        self.cache = cache

    def scores(self, text: str, max_windows: int) -> Scores:
        """(start, end, probability) for the windows of `text` that ran. Windows beyond the exchange's budget
        are left out (the signatures still cover them), and such a partial result is not cached."""
        key = self.cache.key(text)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        windows = self.encoder.windows(text)
        budget = exchange_budget() or WindowBudget()  # offline scans: the budget is per text
        granted = budget.take(len(windows), max_windows)
        if not granted:
            return ()
        probs = self.head.probabilities(self.encoder.embed(windows[:granted]))
        scores = tuple((w.start, w.end, float(p)) for w, p in zip(windows, probs))
        if granted == len(windows):
            self.cache.put(key, scores)
        return scores
