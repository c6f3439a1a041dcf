"""Policies for tests, compiled from YAML text."""

from extproc.policy.compile import CompiledPolicy
from extproc.policy.reload import compile_text

SECRET_PATTERN = "sk-[A-Za-z0-9]{20,40}"


def policy(yaml_text: str) -> CompiledPolicy:
    return compile_text(yaml_text, "<test>")


def regex_rule(rule_id: str, action: str, direction: str = "both", mode: str = "enforce",
               pattern: str = SECRET_PATTERN, label: str = "test_secret", max_length: int = 43) -> str:
    return f"""
  - id: {rule_id}
    detector: regex
    direction: {direction}
    action: {action}
    mode: {mode}
    params:
      patterns: [{{label: {label}, pattern: "{pattern}", max_length: {max_length}}}]
"""


def policy_text(*rule_texts: str) -> str:
    """A policy file's text holding the given rules (e.g. from `regex_rule`)."""
    return "version: 1\nrules:\n" + "".join(rule_texts)


def rules(*rule_texts: str) -> CompiledPolicy:
    return policy(policy_text(*rule_texts))
