"""Evaluation of the prompt_injection detector on ../shared/data; prints tables and rewrites the generated part
of docs/eval/prompt_injection.md.

    .venv/bin/pytest -m eval tests/eval/test_injection_eval.py -s

The held-out split is the training script's own (`split_of` in tools/train_injection.py), so "held-out" rows
were never trained on nor used to pick the threshold."""

import importlib.util
import json
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from extproc.detectors import prompt_injection as pi
from extproc.detectors._injection import encoder as enc

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "eval" / "prompt_injection.md"
BEGIN, END = "<!-- BEGIN GENERATED (tests/eval/test_injection_eval.py) -->", "<!-- END GENERATED -->"
HARD = {"notinject_hard_negatives", "xstest_safe"}
SWEEP = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
USER = pi.DEFAULT_ROLE_THRESHOLDS["user"]  # eval rows are prompts: user turns
LAYERS = ("all three", "combined", "signatures", "encoder", "words")


def _trainer():
    spec = importlib.util.spec_from_file_location("train_injection", ROOT / "tools" / "train_injection.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _harmful(data: Path, row_type):
    rows = []
    for path in sorted((data / "harmful").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                rec = json.loads(line)
                rows.append(row_type(rec["text"], 0, rec["source"], "harmful_no_wrapper", None))
    return rows


def _score(rows):
    low = {"threshold": 0.01, "role_thresholds": {}, "max_windows": 4096}
    layers = {
        "combined": pi.PromptInjection(pi.Params(**low, classifier=False)),
        "signatures": pi.PromptInjection(pi.Params(**low, encoder=False, classifier=False)),
        "encoder": pi.PromptInjection(pi.Params(**low, signatures=False, classifier=False)),
        "words": pi.PromptInjection(pi.Params(**low, signatures=False, encoder=False, classifier=True)),
        "all three": pi.PromptInjection(pi.Params(**low, classifier=True)),
    }
    scores = {name: [] for name in layers}
    for r in rows:  # layers inner: the encoder layers share one verdict cache, so each text is encoded once
        for name, d in layers.items():
            scores[name].append(max((f.score for f in d.find_in_role(r.text, "user")), default=0.0))
    return scores


def _rate(idx, scores, threshold=USER):
    hit = sum(scores[i] >= threshold for i in idx)
    return hit, len(idx)


def _table(groups, rows, scores, split, title):
    header = ("| source | label | rows | trained on | flagged (all three, default) | signatures + encoder | "
              "signatures only | encoder only | word model only |")
    lines = [f"### {title}", "", header, "|---|---|---|---|---|---|---|---|---|"]
    for key, idx in sorted(groups.items()):
        trained = sum(split[i] == "train" for i in idx)
        cells = []
        for name in LAYERS:
            hit, n = _rate(idx, scores[name])
            cells.append(f"{hit}/{n} = {hit / n:.1%}")
        lines.append(f"| {key[0]} | {key[1]} | {len(idx)} | {trained} | " + " | ".join(cells) + " |")
    return lines + [""]


def _summary(rows, scores, split, layer):
    held = [i for i in range(len(rows)) if split[i] == "heldout"]
    realistic = [i for i in held if rows[i].label == 0 and rows[i].category != "harmful_no_wrapper"
                 and rows[i].source not in HARD]
    positives = [i for i in held if rows[i].label == 1]
    no_mosscap = [i for i in positives if rows[i].source != "lakera_mosscap"]
    lines = [f"### Summary on held-out rows (never trained on): {layer}", "",
             ("| threshold | recall (all held-out attacks) | recall without mosscap | FPR realistic benign | "
             "NotInject accuracy | XSTest-safe accuracy |"), "|---|---|---|---|---|---|"]
    s = scores[layer]
    for t in sorted({*SWEEP, USER, pi.DEFAULT_THRESHOLD}):
        cells = []
        for idx in (positives, no_mosscap, realistic):
            hit, n = _rate(idx, s, t)
            cells.append(f"{hit}/{n} = {hit / n:.1%}")
        for src in ("notinject_hard_negatives", "xstest_safe"):
            idx = [i for i in held if rows[i].source == src]
            hit, n = _rate(idx, s, t)
            cells.append(f"{n - hit}/{n} = {(n - hit) / n:.1%}")
        mark = " (user default)" if t == USER else " (other roles)" if t == pi.DEFAULT_THRESHOLD else ""
        lines.append(f"| {t}{mark} | " + " | ".join(cells) + " |")
    return lines + [""]


def _write(lines):
    block = "\n".join([BEGIN, *lines, END])
    text = DOC.read_text() if DOC.exists() else "# prompt_injection detector: evaluation\n\n" + BEGIN + END + "\n"
    head, rest = text.split(BEGIN, 1)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(head + block + rest.split(END, 1)[1])


@pytest.mark.eval
@pytest.mark.timeout(3600)  # the encoder scores every row once: minutes on one core
def test_injection_eval():
    trainer = _trainer()
    if not trainer.DATA.exists():
        pytest.skip(f"{trainer.DATA} not found")
    rows = trainer.load_rows()
    split = trainer.split_of(rows)
    harmful = _harmful(trainer.DATA, trainer.Row)
    rows, split = rows + harmful, split + ["heldout"] * len(harmful)
    scores = _score(rows)
    by_source, by_cat, held_by_source = defaultdict(list), defaultdict(list), defaultdict(list)
    for i, r in enumerate(rows):
        by_source[(r.source, r.label)].append(i)
        if split[i] == "heldout":
            held_by_source[(r.source, r.label)].append(i)
            if r.label == 1 or r.source in HARD or r.source in ("bipia_indirect", "deepset_prompt_injections"):
                by_cat[(f"{r.source}: {r.category}", r.label)].append(i)
    intro = (f"Default thresholds: user turns {USER}, other roles {pi.DEFAULT_THRESHOLD}. Encoder windows "
             f"{enc.WINDOW_TOKENS} tokens (overlap {enc.STRIDE_TOKENS}); 'all three' is the default detector "
             "(signatures + word model + encoder); 'combined' is signatures + encoder. Tables use the user "
             "threshold.")
    lines = [intro, ""]
    for layer in LAYERS:
        lines += _summary(rows, scores, split, layer)
    lines += _table(held_by_source, rows, scores, split, "(a) Held-out split by source")
    lines += _table(by_cat, rows, scores, split, "(a') Held-out split by category")
    lines += _table(by_source, rows, scores, split, "(b) All data by source (the 'trained on' column counts training rows)")
    print("\n".join(lines))
    _write(lines)
    held_benign = [i for i in range(len(rows)) if split[i] == "heldout" and rows[i].label == 0
                   and rows[i].source not in HARD and rows[i].category != "harmful_no_wrapper"]
    hit, n = _rate(held_benign, scores["all three"])
    assert hit / n <= 0.02, "false-positive rate on held-out realistic benign prompts regressed"
