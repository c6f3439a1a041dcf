"""Offline evaluation of text with a policy: `extproc scan` and `extproc policy test` use this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

import orjson

from extproc.policy.compile import CompiledPolicy
from extproc.policy.engine import decide, scan_text
from extproc.policy.reload import compile_text, default_policy_text
from extproc.redact import apply_spans
from extproc.rules import Hit

ROLE_OF_DIRECTION = {"request": "user", "response": "assistant"}


@dataclass
class TextResult:
    hits: list[Hit]
    action: str
    redacted: str


def load(policy_path: str | None) -> CompiledPolicy:
    if policy_path is None:
        return compile_text(default_policy_text(), "default policy")
    with open(policy_path, encoding="utf-8") as handle:
        return compile_text(handle.read(), policy_path)


def evaluate_text(policy: CompiledPolicy, text: str, direction: str, role: str | None = None) -> TextResult:
    """Every rule of `direction` (ignoring path/model/header matches) applied to one text."""
    rules = policy._by_direction[direction]
    hits = scan_text(rules, text, role or ROLE_OF_DIRECTION[direction], direction)
    decision = decide(hits)
    redacted = text if decision.refusal is not None else apply_spans(text, decision.spans.get(0, []))
    return TextResult(hits, decision.action, redacted)


def scan_lines(policy_path: str | None, direction: str, source: IO[str], sink: IO[str]) -> int:
    policy = load(policy_path)
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
            text = record["text"]
            if not isinstance(text, str):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            sink.write(orjson.dumps({"line": number, "error": "expected a JSON object with a string `text`"}).decode())
            sink.write("\n")
            continue
        result = evaluate_text(policy, text, direction, record.get("role"))
        sink.write(orjson.dumps(_result_json(result)).decode() + "\n")
    return 0


def _result_json(result: TextResult) -> dict:
    findings = [
        {"rule": h.rule.id, "detector": h.finding.detector, "label": h.finding.label, "start": h.finding.start,
         "end": h.finding.end, "score": round(h.finding.score, 4), "mode": h.rule.mode}
        for h in result.hits
    ]
    return {"findings": findings, "action": result.action, "redacted": result.redacted}
