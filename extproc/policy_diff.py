"""`extproc policy diff ACTIVE CANDIDATE --traffic FILE`: replay recorded exchanges through two policies and
show where their decisions differ, offline, before a candidate goes live (or into `serve --shadow-policy`).

FILE holds JSON lines: audit records that carry an `exchange` (written for exchanges where a rule with
`capture: true` hit), or bare exchanges in the `policy test` exchange format (`path`, `request`, `response` or
`stream`, `headers`)."""

from __future__ import annotations

from collections import Counter
from typing import Any, TextIO

import orjson

from extproc.exchange_cases import ExchangeResult, run_exchange
from extproc.policy.compile import CompiledPolicy


def exchanges(lines: TextIO) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = orjson.loads(line)
        exchange = record.get("exchange", record) if isinstance(record, dict) else None
        if isinstance(exchange, dict) and isinstance(exchange.get("request"), (dict, list)):
            out.append((number, exchange))
    return out


def outcome(result: ExchangeResult) -> tuple[str, tuple[str, ...]]:
    return result.decision, tuple(result.rules)


def diff(active: CompiledPolicy, candidate: CompiledPolicy, lines: TextIO, out: TextIO) -> int:
    """Print one line per exchange whose decision or rules differ, then a summary; the number that differ."""
    changed_rules: Counter[str] = Counter()
    differing = total = 0
    for number, exchange in exchanges(lines):
        total += 1
        (a_decision, a_rules), (c_decision, c_rules) = (outcome(run_exchange(p, exchange))
                                                        for p in (active, candidate))
        if (a_decision, set(a_rules)) == (c_decision, set(c_rules)):
            continue
        differing += 1
        changed_rules.update(set(a_rules) ^ set(c_rules))
        out.write(f"line {number} {exchange.get('path', '')}: {a_decision} -> {c_decision}"
                  f" (rules {','.join(a_rules) or '-'} -> {','.join(c_rules) or '-'})\n")
    by_rule = ", ".join(f"{rule}: {count}" for rule, count in sorted(changed_rules.items()))
    out.write(f"{differing} of {total} exchanges differ" + (f"; by rule: {by_rule}" if by_rule else "") + "\n")
    return differing
