"""`extproc policy test`: a policy's own test cases, runnable in CI.

Cases file (default: the policy path with `.tests.yaml` in place of `.yaml`):

    cases:
      - name: a key in a prompt is denied
        direction: request          # request | response
        text: "my key is sk-proj-..."
        expect: deny                # allow | annotate | redact | deny
        redacted: "..."             # optional: the exact text after redaction

A case with `exchange:` instead of `text:` runs a whole request (and optionally a response) through the
service in-process; see `extproc.exchange_cases` for its fields.
"""

from __future__ import annotations

import yaml

from extproc.exchange_cases import run_exchange
from extproc.scan import evaluate_text, load


class CasesError(ValueError):
    """A cases file that cannot be run; the message names the file and the case."""


def run_cases(policy_path: str, cases_path: str | None) -> int:
    cases_path = cases_path or policy_path.rsplit(".", 1)[0] + ".tests.yaml"
    policy = load(policy_path)
    cases = read_cases(cases_path)
    failures = 0
    for number, case in enumerate(cases, 1):
        problem = _check(policy, case)
        name = case.get("name", f"case {number}")
        print(f"{'FAIL' if problem else 'ok  '} {name}" + (f": {problem}" if problem else ""))
        failures += bool(problem)
    print(f"{len(cases) - failures} passed, {failures} failed")
    return 1 if failures or not cases else 0


def read_cases(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise CasesError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    cases = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(cases, list) or not cases:
        raise CasesError(f"{path}: expected a mapping with a non-empty `cases:` list")
    for number, case in enumerate(cases, 1):
        problem = _case_problem(case)
        if problem:
            raise CasesError(f"{path}: case {number}: {problem}")
    return cases


def _case_problem(case: object) -> str | None:
    if not isinstance(case, dict):
        return "expected a mapping with `text:` or `exchange:` and `expect:`"
    outcomes = TEXT_OUTCOMES + EXCHANGE_OUTCOMES if "exchange" in case else TEXT_OUTCOMES
    if case.get("expect") not in outcomes:
        return f"`expect:` must be one of {', '.join(outcomes)}"
    if "exchange" in case:
        return _exchange_problem(case["exchange"])
    if not isinstance(case.get("text"), str):
        return "needs a string `text:` (or an `exchange:` mapping)"
    if case.get("direction", "request") not in ("request", "response"):
        return "`direction:` must be request or response"
    return None


TEXT_OUTCOMES = ("allow", "annotate", "redact", "deny")
EXCHANGE_OUTCOMES = ("reject", "error")  # what the gateway answers itself: bad input (4xx), failures (5xx)
_EXCHANGE_FIELDS = {"path": str, "headers": dict, "request": dict, "response": dict, "stream": list}


def _exchange_problem(exchange: object) -> str | None:
    if not isinstance(exchange, dict) or not isinstance(exchange.get("request"), dict):
        return "`exchange:` must be a mapping with a `request:` mapping"
    for name, kind in _EXCHANGE_FIELDS.items():
        if name in exchange and not isinstance(exchange[name], kind):
            return f"`exchange.{name}` must be a {'string' if kind is str else kind.__name__.replace('dict', 'mapping')}"
    headers = exchange.get("headers", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        return "`exchange.headers` must map names to string values"
    return None


def _check(policy, case: dict) -> str | None:  # type: ignore[no-untyped-def]
    if "exchange" in case:
        return _check_exchange(policy, case)
    result = evaluate_text(policy, case["text"], case.get("direction", "request"), case.get("role"))
    if result.action != case["expect"]:
        rules = sorted({h.rule.id for h in result.hits})
        return f"expected {case['expect']}, got {result.action} (rules: {', '.join(rules) or 'none'})"
    if "redacted" in case and result.redacted != case["redacted"]:
        return f"redacted text differs: got {result.redacted!r}"
    return None


def _check_exchange(policy, case: dict) -> str | None:  # type: ignore[no-untyped-def]
    result = run_exchange(policy, case["exchange"])
    if result.decision != case["expect"]:
        return f"expected {case['expect']}, got {result.decision} (code: {result.code or 'none'})"
    for key in ("status", "code"):
        if key in case and getattr(result, key) != case[key]:
            return f"expected {key} {case[key]!r}, got {getattr(result, key)!r}"
    for name, value in (case.get("request_body") or {}).items():
        sent = (result.request_body or {}).get(name)
        if sent != value:
            return f"expected the request body's {name!r} to be {value!r}, got {sent!r}"
    return None
