"""Hot reload: poll the policy file's content hash, compile a changed file off the event loop, swap the
compiled policy atomically, keep the last good one when the new file is invalid.

A changed file is loaded only once two polls in a row read the same content, so a write in progress (a file
rewritten in place, read while truncated) is never loaded. A reload that would leave no rules at all is
rejected like an invalid file (a restart is needed to run an empty policy); one that removes rules logs them.

Polling the path (not inotify on the file) follows Kubernetes ConfigMap updates, which swap a `..data`
symlink rather than writing the file in place. Sessions take `holder.current` once at stream start, so
in-flight exchanges keep the policy they started with.
"""

from __future__ import annotations

import asyncio
import hashlib
from importlib import resources

from extproc import logs, metrics, shapes
from extproc.policy.compile import CompiledCheck, CompiledPolicy, CompiledRule, compile_policy
from extproc.policy.load import PolicyError, load_policy_text

_log = logs.get("extproc.policy")
# A replaced policy's checks may hold connections (Redis). Exchanges that started under it keep using it, so
# its checks are closed only after the longest stream Envoy allows (stream_idle_timeout in our configs).
RETIRE_AFTER_SECONDS = 600.0


def default_policy_text() -> str:
    return resources.files("extproc.policies").joinpath("default.yaml").read_text(encoding="utf-8")


def compile_text(text: str, source: str) -> CompiledPolicy:
    return compile_policy(load_policy_text(text, source))


class PolicyHolder:
    def __init__(self, path: str | None, role: str = "active") -> None:
        self.path = path
        self.role = role  # "shadow": a candidate policy (serve --shadow-policy); its state is not published
        text = self._read() if path else default_policy_text()
        self.current = compile_text(text, path or "default policy")
        self._hash = _sha(text)
        self._pending: str | None = None  # a changed content seen once, loaded if the next poll sees it again
        metrics.touch_alert_series(sorted(shapes.all_shapes()))
        self._publish()

    def _publish(self) -> None:
        if self.role == "active":
            _publish(self.current)

    def _read(self) -> str:
        assert self.path is not None
        with open(self.path, encoding="utf-8") as handle:
            return handle.read()

    async def reload_if_changed(self) -> bool:
        """One poll: reload when the content changed and has stayed the same since the previous poll; True if
        a new policy became active."""
        try:
            text = self._read()
        except OSError as exc:
            metrics.RELOADS.labels(result="unreadable").inc()
            _log.warning("policy_unreadable", path=self.path, error=type(exc).__name__)
            return False
        digest = _sha(text)
        if digest == self._hash:
            self._pending = None
            return False
        if digest != self._pending:
            self._pending = digest  # changed since the last poll: maybe a write in progress; wait for one more
            return False
        self._hash, self._pending = digest, None
        try:
            compiled = await asyncio.to_thread(compile_text, text, self.path or "")
            _refuse_dropping_everything(self.current, compiled, self.path or "")
        except PolicyError as exc:
            metrics.RELOADS.labels(result="invalid").inc()
            _log.error("policy_reload_rejected", path=self.path, error=str(exc), kept=self.current.digest[:12],
                       role=self.role)
            return False
        self._activate(compiled)
        return True

    def _activate(self, compiled: CompiledPolicy) -> None:
        retired, self.current = self.current, compiled
        asyncio.get_running_loop().call_later(RETIRE_AFTER_SECONDS, _close_checks_soon, retired)
        metrics.RELOADS.labels(result="ok").inc()
        self._publish()
        dropped = sorted(rule_ids(retired) - rule_ids(compiled))
        if dropped:
            _log.warning("policy_rules_dropped", path=self.path, rules=dropped, policy=compiled.digest[:12],
                         role=self.role)
        _log.info("policy_reloaded", path=self.path, policy=compiled.digest[:12], rules=len(compiled.rules),
                  role=self.role)

    async def watch(self, interval: float = 1.0) -> None:
        if not self.path:
            return
        while True:
            await asyncio.sleep(interval)
            await self.reload_if_changed()


_closing: set[asyncio.Task[None]] = set()


def _close_checks_soon(policy: CompiledPolicy) -> None:
    task = asyncio.get_running_loop().create_task(close_checks(policy))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def close_checks(policy: CompiledPolicy) -> None:
    """Release what a policy's checks hold (connections); a failure is logged, never raised."""
    for check in {id(rule.check): rule.check for rule in policy.checks}.values():
        try:
            await check.close()
        except Exception as exc:  # closing is best effort
            _log.warning("check_close_failed", check=check.name, error_type=type(exc).__name__)


def _publish(policy: CompiledPolicy) -> None:
    metrics.set_active_policy(policy.digest)
    rules: list[CompiledRule | CompiledCheck] = [*policy.rules, *policy.checks]
    metrics.touch_rule_series([(rule.id, rule.action, rule.mode) for rule in rules])


def rule_ids(policy: CompiledPolicy) -> set[str]:
    return {rule.id for rule in policy.rules} | {check.id for check in policy.checks}


def _refuse_dropping_everything(active: CompiledPolicy, new: CompiledPolicy, source: str) -> None:
    if rule_ids(active) and not rule_ids(new):
        raise PolicyError(f"{source}: the new policy has no rules and would drop all {len(rule_ids(active))} "
                          "active rules; restart the service to run an empty policy")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
