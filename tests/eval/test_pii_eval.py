"""PII detector evaluation on the third-party data in ../shared/data (see its SOURCES.md).

    .venv/bin/pytest -m eval -s tests/eval/test_pii_eval.py

Prints recall on positives per source / type, flag rates on invalid look-alikes and on text without PII,
and writes the tables to docs/eval/pii.md. Misses and flags are listed so they can be studied.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from extproc.detectors import get
from extproc.detectors.national_id import NationalIdParams

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REPORT = Path(__file__).resolve().parents[2] / "docs" / "eval" / "pii.md"
NAMES = ["email", "phone", "payment_card", "iban", "us_ssn", "national_id", "ip_address"]
SPAN_TYPES = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "CREDIT_CARD": "payment_card",
              "IBAN_CODE": "iban", "US_SSN": "us_ssn", "IP_ADDRESS": "ip_address"}
PRACTICAL_EMAIL = {"ISEMAIL_VALID_CATEGORY", "ISEMAIL_DNSWARN"}
NOT_NATIONAL_IDS = {"IBAN", "BIC/SWIFT (not PII alone)", "NZ bank account", "CZ bank account"}

ISEMAIL, PHONES = "isemail_address_tests", "libphonenumber_example_numbers"
CONTEXT, SYNTH, STDNUM = "presidio_context_sentences", "presidio_research_synthetic", "python_stdnum_identifiers"

pytestmark = pytest.mark.eval


class Tally:
    """Counts per (table, source, slice, detector); keeps a few example texts per row."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.examples: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)

    def add(self, key: tuple[str, str, str, str], hit: bool, text: str, keep_if: bool) -> None:
        self.rows[key][0] += hit
        self.rows[key][1] += 1
        if keep_if and len(self.examples[key]) < 5:
            self.examples[key].append(text[:90])


def load(folder: str, source: str) -> list[dict]:
    with open(DATA / folder / f"{source}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def whole(findings, text: str) -> bool:  # type: ignore[no-untyped-def]
    return any(f.start == 0 and f.end == len(text) for f in findings)


def eval_isemail(detectors, tally: Tally) -> None:  # type: ignore[no-untyped-def]
    for row in load("pii", ISEMAIL):
        text, found = row["text"], detectors["email"].find(row["text"])
        if row["label"] == 1:
            group = "practical (VALID, DNSWARN)" if row["category"] in PRACTICAL_EMAIL else "exotic RFC forms"
            tally.add(("recall", ISEMAIL, group, "email"), whole(found, text), text,
                      not whole(found, text))
        else:
            tally.add(("look-alikes", ISEMAIL, "ISEMAIL_ERR: any finding", "email"),
                      bool(found), text, bool(found))
            tally.add(("look-alikes", ISEMAIL, "ISEMAIL_ERR: whole string", "email"),
                      whole(found, text), text, whole(found, text))


def eval_phone_examples(detectors, tally: Tally) -> None:  # type: ignore[no-untyped-def]
    for row in load("pii", PHONES):
        hit = whole(detectors["phone"].find(row["text"]), row["text"])
        tally.add(("recall", PHONES, "all", "phone"), hit, row["text"], not hit)
        tally.add(("recall", PHONES, row["category"], "phone"), hit, row["text"], False)
        tally.add(("recall", PHONES, row["type"], "phone"), hit, row["text"], False)


def eval_context_sentences(detectors, tally: Tally) -> None:  # type: ignore[no-untyped-def]
    for row in load("pii", CONTEXT):
        name = SPAN_TYPES.get(row["type"])
        if name:
            hit = bool(detectors[name].find(row["text"]))
            tally.add(("recall", CONTEXT, row["type"], name), hit, row["text"], not hit)


def eval_synthetic(detectors, tally: Tally) -> None:  # type: ignore[no-untyped-def]
    for row in load("pii", SYNTH):
        text = row["text"]
        for name in set(SPAN_TYPES.values()):
            found = detectors[name].find(text)
            spans = [s for s in row["spans"] if SPAN_TYPES.get(s["type"]) == name]
            for span in spans:
                hits = [f for f in found if f.start < span["end"] and span["start"] < f.end]
                exact = any(f.start == span["start"] and f.end == span["end"] for f in hits)
                tally.add(("recall", SYNTH, span["type"], name), bool(hits),
                          span["value"], not hits)
                tally.add(("recall", SYNTH, f"{span['type']} (exact span)", name),
                          exact, span["value"], bool(hits) and not exact)
            for finding in found:
                outside = not any(finding.start < s["end"] and s["start"] < finding.end for s in spans)
                tally.add(("outside spans", SYNTH, "findings", name), outside,
                          text[finding.start:finding.end], outside)


def eval_stdnum(detectors, loose_ids, tally: Tally) -> None:  # type: ignore[no-untyped-def]
    for row in load("pii", STDNUM):
        text, kind = row["text"], row["type"]
        if kind == "IBAN":
            found = detectors["iban"].find(text)
            table = "recall" if row["label"] == 1 else "look-alikes"
            hit = whole(found, text) if row["label"] == 1 else bool(found)
            tally.add((table, STDNUM, "IBAN", "iban"), hit, text, hit != row["label"])
        elif kind.startswith("BIC"):
            for name in NAMES:
                flagged = bool(detectors[name].find(text))
                tally.add(("look-alikes", STDNUM, "BIC/SWIFT", name), flagged, text, flagged)
        elif kind not in NOT_NATIONAL_IDS:
            modes = (("default", detectors["national_id"]), ("context_for_weak=false", loose_ids))
            for mode, detector in modes:
                hit = whole(detector.find(text), text)
                keep = not hit and mode == "default"
                tally.add(("national ids", mode, kind, "national_id"), hit, text, keep)


def eval_non_pii(detectors, tally: Tally) -> None:  # type: ignore[no-untyped-def]
    sources = [("benign", path.stem) for path in sorted((DATA / "benign").glob("*.jsonl"))]
    sources.append(("secrets", "high_entropy_non_secrets"))
    for folder, source in sources:
        group = "benign prompts" if folder == "benign" else source
        for row in load(folder, source):
            for name in NAMES:
                found = detectors[name].find(row["text"])
                sample = "; ".join(row["text"][f.start:f.end] for f in found[:3])
                tally.add(("no PII", group, "records flagged", name), bool(found), sample, bool(found))


def render(tally: Tally) -> str:
    titles = {"recall": "Recall on positives (hits / records)",
              "look-alikes": "Flags on invalid look-alikes (flagged / records)",
              "national ids": "National IDs (python-stdnum test numbers, bare, no context words)",
              "outside spans": "Findings outside the annotated spans (synthetic sentences)",
              "no PII": "Records flagged in text without PII"}
    lines = []
    for table, title in titles.items():
        lines += [f"### {title}", "", "| source | slice | detector | hits | records | rate |",
                  "|---|---|---|---|---|---|"]
        for (tab, source, part, name), (hits, total) in sorted(tally.rows.items()):
            if tab == table:
                share = f"{100 * hits / total:.1f} %"
                lines.append(f"| {source} | {part} | {name} | {hits} | {total} | {share} |")
        lines.append("")
    lines += ["### Examples (misses, flags)", ""]
    for key, texts in sorted(tally.examples.items()):
        lines.append(f"- {' / '.join(key)}: " + ", ".join(f"`{t!r}`" for t in texts))
    return "\n".join(lines) + "\n"


# (goal, rows pooled, "min" recall or "max" flag rate, goal, regression floor the test enforces)
GOALS = [
    ("valid e-mails found", [("recall", ISEMAIL, "practical (VALID, DNSWARN)", "email"),
                             ("recall", SYNTH, "EMAIL_ADDRESS", "email")], "min", 0.99, 0.98),
    ("valid phone numbers found", [("recall", PHONES, "all", "phone")], "min", 0.99, 0.99),
    ("valid IBANs found", [("recall", STDNUM, "IBAN", "iban"),
                           ("recall", SYNTH, "IBAN_CODE", "iban")], "min", 0.99, 0.99),
    ("invalid e-mails claimed valid (whole string)",
     [("look-alikes", ISEMAIL, "ISEMAIL_ERR: whole string", "email")], "max", 0.05, 0.05),
    ("invalid e-mails with any finding (a valid address inside)",
     [("look-alikes", ISEMAIL, "ISEMAIL_ERR: any finding", "email")], "max", 0.05, 0.125),
    ("invalid IBANs and BICs flagged as IBAN", [("look-alikes", STDNUM, "IBAN", "iban"),
                                                ("look-alikes", STDNUM, "BIC/SWIFT", "iban")],
     "max", 0.05, 0.0),
    ("BICs flagged as a phone number", [("look-alikes", STDNUM, "BIC/SWIFT", "phone")],
     "max", 0.05, 0.0),
]


def pooled(tally: Tally, keys: list[tuple[str, str, str, str]]) -> tuple[int, int]:
    return sum(tally.rows[key][0] for key in keys), sum(tally.rows[key][1] for key in keys)


def render_goals(tally: Tally) -> str:
    lines = ["### Goals", "", "| goal | measured | target | met |", "|---|---|---|---|"]
    for goal, keys, kind, target, _ in GOALS:
        hits, total = pooled(tally, keys)
        value = hits / total
        met = value >= target if kind == "min" else value <= target
        sign = ">=" if kind == "min" else "<="
        lines.append(f"| {goal} | {hits}/{total} = {100 * value:.1f} % | {sign} {100 * target:.0f} % | "
                     f"{'yes' if met else 'NO'} |")
    return "\n".join(lines) + "\n\n"


def test_pii_eval() -> None:
    if not (DATA / "pii").is_dir():
        pytest.skip(f"no evaluation data at {DATA}")
    detectors = {name: get(name)() for name in NAMES}
    loose_ids = get("national_id")(NationalIdParams(context_for_weak=False))
    tally = Tally()
    eval_isemail(detectors, tally)
    eval_phone_examples(detectors, tally)
    eval_context_sentences(detectors, tally)
    eval_synthetic(detectors, tally)
    eval_stdnum(detectors, loose_ids, tally)
    eval_non_pii(detectors, tally)
    report = render_goals(tally) + render(tally)
    print(report)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    header = REPORT.read_text(encoding="utf-8").split("<!-- generated -->")[0] if REPORT.exists() else ""
    REPORT.write_text(header + "<!-- generated -->\n\n" + report, encoding="utf-8")

    for goal, keys, kind, _, floor in GOALS:  # regression guards at the measured level; targets in the report
        hits, total = pooled(tally, keys)
        assert (hits / total >= floor) if kind == "min" else (hits / total <= floor), goal
