"""Closed-loop HTTP load with wrk (POST bodies through a Lua script); results parsed from a JSON line the
script's done() prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass

_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(headers)s
local f = assert(io.open(%(body)q, "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"p50_us\\":%%d,\\"p90_us\\":%%d,\\"p99_us\\":%%d," ..
    "\\"mean_us\\":%%.1f,\\"max_us\\":%%d,\\"connect\\":%%d,\\"read\\":%%d,\\"write\\":%%d,\\"status\\":%%d," ..
    "\\"timeout\\":%%d,\\"bytes\\":%%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    summary.bytes))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50: float  # seconds
    p99: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def write_script(directory: str, name: str, headers: dict[str, str], body: bytes) -> str:
    body_path = os.path.join(directory, f"{name}.body")
    with open(body_path, "wb") as handle:
        handle.write(body)
    lua_headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    script = os.path.join(directory, f"{name}.lua")
    with open(script, "w") as handle:
        handle.write(_SCRIPT.replace("%(headers)s", lua_headers).replace("%(body)q", json.dumps(body_path))
                     .replace("%%", "%"))
    return script


def run(url: str, script: str, conns: int, duration: float, threads: int | None = None) -> WrkResult:
    threads = threads or min(conns, 2)
    argv = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{max(1, round(duration))}s", "--timeout", "10s",
            "-s", script, url]
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            data = json.loads(line[len("BENCHJSON "):])
            errors = data["connect"] + data["read"] + data["write"] + data["status"] + data["timeout"]
            return WrkResult(data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1e6, data["p99_us"] / 1e6,
                             errors)
    raise RuntimeError(f"wrk printed no result (exit {out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")
