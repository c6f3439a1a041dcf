"""tools/train_injection.py's leave-one-source-out folds: every training row is tested exactly once, never
in a fold that trains on it, and each fold tests one whole attack source."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("train_injection", ROOT / "tools" / "train_injection.py")
train_injection = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("train_injection", train_injection)  # dataclasses look their module up
_spec.loader.exec_module(train_injection)  # type: ignore[union-attr]


def _rows():
    Row = train_injection.Row
    rows = [Row(f"attack {s} {i}", 1, s, "c", None) for s in ("a", "b", "c") for i in range(4)]
    rows += [Row(f"benign {i}", 0, "bench", "c", None) for i in range(9)]
    return rows, list(range(len(rows)))  # every row its own cluster


def test_each_fold_tests_one_whole_attack_source_and_trains_on_the_rest():
    rows, groups = _rows()
    folds = train_injection.source_folds(rows, groups)
    assert len(folds) == 3
    tested = []
    for train, test in folds:
        assert not set(train) & set(test) and sorted(train + test) == list(range(len(rows)))
        sources = {rows[i].source for i in test if rows[i].label}
        assert len(sources) == 1 and not any(rows[i].source in sources for i in train if rows[i].label)
        tested += test
    assert sorted(tested) == list(range(len(rows)))  # benign rows too, each exactly once


def test_recall_at_fpr_counts_attacks_above_the_benign_cut():
    rows, _ = _rows()
    scores = [0.9] * 6 + [0.05] * 6 + [i / 100 for i in range(9)]  # benign top score 0.08
    assert train_injection.recall_at_fpr(rows, scores, 0.0) == 0.5
