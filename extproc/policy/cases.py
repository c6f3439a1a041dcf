"""`extproc policy test`: a policy's own test cases, runnable in CI.

Cases file (default: the policy path with `.tests.yaml` in place of `.yaml`):

    cases:
      - name: a key in a prompt is denied
        direction: request          # request | response
        text: "my key is sk-proj-..."
        expect: deny                # allow | annotate | redact | deny
        redacted: "..."             # optional: the exact text after redaction
"""

from __future__ import annotations

import yaml

from extproc.scan import evaluate_text, load


def run_cases(policy_path: str, cases_path: str | None) -> int:
    cases_path = cases_path or policy_path.rsplit(".", 1)[0] + ".tests.yaml"
    policy = load(policy_path)
    with open(cases_path, encoding="utf-8") as handle:
        cases = (yaml.safe_load(handle) or {}).get("cases", [])
    failures = 0
    for number, case in enumerate(cases, 1):
        problem = _check(policy, case)
        name = case.get("name", f"case {number}")
        print(f"{'FAIL' if problem else 'ok  '} {name}" + (f": {problem}" if problem else ""))
        failures += bool(problem)
    print(f"{len(cases) - failures} passed, {failures} failed")
    return 1 if failures or not cases else 0


def _check(policy, case: dict) -> str | None:  # type: ignore[no-untyped-def]
    result = evaluate_text(policy, case["text"], case.get("direction", "request"), case.get("role"))
    if result.action != case["expect"]:
        rules = sorted({h.rule.id for h in result.hits})
        return f"expected {case['expect']}, got {result.action} (rules: {', '.join(rules) or 'none'})"
    if "redacted" in case and result.redacted != case["redacted"]:
        return f"redacted text differs: got {result.redacted!r}"
    return None
