"""False positives and recall of the `context_leak` echo detector on the public texts in ../shared/data.

Run: .venv/bin/pytest -m eval tests/eval/test_context_leak_eval.py -s

The data has no (system prompt, answer) pairs, so pairs are built from it: the longer benign prompts (at least
30 words) play system prompts; every other text of the data set (benign, harmful, prompt-injection and
output-leak texts, ~9.9k) plays an answer and is scanned against each system prompt's fingerprints. Texts of
the same source often share boilerplate (task templates, jailbreak wrappers), so this is harsher than real
answers, which rephrase rather than copy. Recall: each system prompt is echoed with one word in 12 replaced,
behind a sentence of preamble.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from extproc.checks._shingles import SYSTEM, ContextEcho, Fingerprints, shingle_hashes, tokens

ROOT = Path(__file__).resolve().parents[2]
DATA = next((p for p in (ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data") if p.is_dir()),
            ROOT.parent / "shared" / "data")
SETTINGS = ((8, 4, 5), (8, 3, 5), (6, 4, 5), (10, 4, 5))  # (shingle_words, min_shingles, max_gap_words)


def _rows() -> list[dict]:
    rows = []
    for path in sorted(DATA.glob("*/*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return rows


def _detector(prompt: str, n: int, min_shingles: int, gap: int) -> ContextEcho:
    prints = Fingerprints(n, min_shingles, 6, {})  # min_words as the default
    prints.add(prompt, SYSTEM, short_whole=True)
    return ContextEcho(prints, gap, 2000, "[{LABEL}]")


def _edited(prompt: str, rng: random.Random) -> str:
    words = prompt.split()
    return "Of course, here is what I was told: " + " ".join(
        "zebra" if i % 12 == 6 else w for i, w in enumerate(words))


@pytest.mark.eval
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not present")
def test_context_leak_false_positives_and_recall():
    rows = _rows()
    benign = [r["text"] for r in rows if r["source"] in ("arena_hard_prompts", "self_instruct_prompts")]
    answers = [r["text"] for r in rows]
    long_prompts = [t for t in benign if len(tokens(t)) >= 30]
    short_prompts = [r["text"] for r in rows if r["source"].endswith("_prompts") and 6 <= len(tokens(r["text"])) < 16]
    print(f"\n{len(answers)} answers; system prompts: {len(long_prompts)} of >= 30 words, {len(short_prompts)} "
          "of 6-15 words")
    print("| prompts | n | min_shingles | max_gap | pairs sharing a shingle | pairs fired | FP rate | recall |")
    print("|---|---|---|---|---|---|---|---|")
    for setting in SETTINGS:
        _row("long", long_prompts, answers, *setting)
    _row("short", short_prompts, answers, *SETTINGS[0])


def _row(kind: str, prompts: list[str], answers: list[str], n: int, min_shingles: int, gap: int) -> None:
    """One table row. Only answers sharing a shingle with the prompt can fire, so only those are scanned."""
    rng = random.Random(5)
    indexes: dict[int, dict[int, set[int]]] = {}
    fired = recalled = shared = 0
    for prompt in prompts:
        detector = _detector(prompt, n, min_shingles, gap)
        size = min(n, len(tokens(prompt)))
        index = indexes.get(size) or indexes.setdefault(size, _index(answers, size))
        candidates = set().union(*(index.get(h, set()) for h in shingle_hashes(prompt, size)))
        candidates = {i for i in candidates if answers[i] != prompt}
        shared += len(candidates)
        fired += sum(1 for i in candidates if detector.find(answers[i]))
        echo = _edited(prompt, rng) if kind == "long" else f"Sure, I was told: {prompt}"
        recalled += bool(detector.find(echo))
    pairs = len(prompts) * (len(answers) - 1)
    print(f"| {kind} | {n} | {min_shingles} | {gap} | {shared} | {fired} | {fired / pairs:.1e} "
          f"| {recalled}/{len(prompts)} |")
    if (n, min_shingles, gap) == SETTINGS[0]:
        assert recalled >= 0.95 * len(prompts)
        assert fired / pairs < 1e-4


def _index(answers: list[str], size: int) -> dict[int, set[int]]:
    index: dict[int, set[int]] = {}
    for number, answer in enumerate(answers):
        for value in shingle_hashes(answer, size):
            index.setdefault(value, set()).add(number)
    return index
