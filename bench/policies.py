"""The policies the benchmark runs: none, the shipped default, and "full" (every registered detector, both
directions). Built at run time from the detector registry, so detectors added later are benchmarked too.

When a detector the default policy names (`secrets`) is not registered yet, its rules are replaced by a
`regex` stand-in with the same secret formats, and the result says so."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from extproc import detectors
from extproc.policy.load import PolicyError
from extproc.policy.reload import compile_text, default_policy_text

NONE_POLICY = "version: 1\nallow_empty: true\nrules: []\n"

# Stand-in for the `secrets` detector: the formats the leak check plants, as RE2 with bounded lengths.
SECRET_PATTERNS = [
    {"label": "openai_api_key", "pattern": r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,200}", "max_length": 210},
    {"label": "aws_access_key_id", "pattern": r"(?:AKIA|ASIA)[A-Z2-7]{16}", "max_length": 20},
    {"label": "github_token", "pattern": r"gh[pousr]_[A-Za-z0-9]{36}", "max_length": 40},
]
# What the regex rule of the full policy looks for when the real `secrets` detector exists.
USER_PATTERNS = [
    {"label": "ticket_id", "pattern": r"TICKET-[0-9]{4,8}", "max_length": 15},
    {"label": "internal_host", "pattern": r"[a-z0-9-]{1,40}\.corp\.internal", "max_length": 54},
]


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


def _dump(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_NoAliases, sort_keys=False, width=120)


@dataclass
class BenchPolicy:
    name: str
    text: str
    rules: int
    notes: list[str] = field(default_factory=list)


def _check(name: str, text: str, notes: list[str]) -> BenchPolicy:
    policy = compile_text(text, f"bench {name} policy")
    return BenchPolicy(name, text, len(policy.rules), notes)


def _secrets_standin(rule: dict) -> dict:
    rule = {k: v for k, v in rule.items() if k not in ("detector", "params")}
    return {**rule, "detector": "regex", "params": {"patterns": SECRET_PATTERNS}}


def default_policy() -> BenchPolicy:
    text = default_policy_text()
    try:
        return _check("default", text, [])
    except PolicyError:
        pass
    registered = detectors.registry()
    doc = yaml.safe_load(text)
    notes = []
    rules = []
    for rule in doc.get("rules", []):
        if rule["detector"] in registered:
            rules.append(rule)
        elif rule["detector"] == "secrets":
            rules.append(_secrets_standin(rule))
            notes.append(f"rule {rule['id']}: `secrets` detector not registered, regex stand-in used")
        else:
            notes.append(f"rule {rule['id']}: detector `{rule['detector']}` not registered, rule dropped")
    doc["rules"] = rules
    return _check("default", _dump(doc), notes)


def full_policy() -> BenchPolicy:
    """One rule per registered detector, direction both: redact (prompt_injection: annotate, so clean
    traffic is never refused but every detector still runs on every text), plus every governance check."""
    registered = detectors.registry()
    notes = []
    rules: list[dict] = []
    for name in sorted(registered):
        rule: dict = {"id": f"full-{name}", "detector": name, "direction": "both",
                      "action": "annotate" if name == "prompt_injection" else "redact"}
        if name == "regex":
            patterns = USER_PATTERNS if "secrets" in registered else SECRET_PATTERNS + USER_PATTERNS
            rule["params"] = {"patterns": patterns}
        try:
            compile_text(_dump({"version": 1, "rules": [rule]}), "probe")
        except PolicyError as exc:
            notes.append(f"detector {name} skipped: its rule does not compile ({str(exc)[:120]})")
            continue
        rules.append(rule)
    rules.extend(_governance_rules(notes))
    if "secrets" not in registered:
        notes.append("`secrets` detector not registered: the regex rule carries the secret formats")
    missing = sorted({"secrets", "email", "phone", "payment_card", "iban", "us_ssn", "national_id",
                      "ip_address", "prompt_injection", "regex"} - set(registered))
    if missing:
        notes.append("not registered (not benchmarked): " + ", ".join(missing))
    text = _dump({"version": 1, "rules": rules})
    return _check("full", text, notes)


# Governance checks that let the bench's traffic through while doing their full work on every exchange.
GOVERNANCE_RULES = [
    {"id": "full-models", "check": "models", "params": {"allow": ["*"], "floating_tags": []}},
    {"id": "full-tools", "check": "tools", "params": {"deny": ["bench_never_declared_*"]}},
    {"id": "full-context-leak", "check": "context_leak", "action": "redact"},
    {"id": "full-budgets", "check": "budgets",
     "params": {"windows": [{"tokens": 10**12, "window": "1h"}], "missing_identity": "anonymous"}},
]


def _governance_rules(notes: list[str]) -> list[dict]:
    kept = []
    for rule in GOVERNANCE_RULES:
        try:
            compile_text(_dump({"version": 1, "rules": [rule]}), "probe")
        except PolicyError as exc:
            notes.append(f"check {rule['check']} skipped: its rule does not compile ({str(exc)[:160]})")
            continue
        kept.append(rule)
    return kept


def none_policy() -> BenchPolicy:
    return _check("none", NONE_POLICY, [])


def all_policies() -> dict[str, BenchPolicy]:
    return {"none": none_policy(), "default": default_policy(), "full": full_policy()}
