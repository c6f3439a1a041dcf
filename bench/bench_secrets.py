"""Throughput of the `secrets` detector on a few hundred KB of mixed text (prose, code, JSON, hashes, base64).

Compares the detector (anchor prefilter + RE2) with every rule pattern on RE2 without the prefilter and on
Python's `re`, and times `hold` the way the stream scanner calls it. Then CPU microseconds per character on
adversarial inputs (long base64 runs, repeated prefixes, keyword lists, every table prefix at once...), for
`find` and for a streamed `hold`: the budget is 1 us per character in the worst case.

Run: .venv/bin/python bench/bench_secrets.py
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import string
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout

from extproc.detectors.patterns import compile_re2
from extproc.detectors.secret_catalog import RULES
from extproc.detectors.secret_formats import PREFIXES
from extproc.detectors.secrets import SecretsDetector

RNG = random.Random(7)
WORDS = ["the", "model", "should", "answer", "every", "question", "about", "tokens", "and", "keys", "in", "a", "secret", "garden", "while", "the", "password", "reset", "flow", "sends", "an", "email", "to", "the", "user", "who", "asked", "for", "access", "to", "the", "api", "documentation", "of", "our", "service", "and", "then", "we", "deploy", "with", "kubernetes", "using", "a", "config", "map", "plus", "some", "environment", "variables"]
CODE = '''def load(path):
    tokenizer = AutoTokenizer.from_pretrained(path)
    api_key = os.environ["OPENAI_API_KEY"]
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    return requests.post(url, headers=headers, json={"max_tokens": 512, "messages": messages}).json()
'''


def prose(words: int) -> str:
    return " ".join(RNG.choice(WORDS) for _ in range(words)).capitalize() + ".\n"


def blob() -> str:
    return "data:image/png;base64," + base64.b64encode(RNG.randbytes(1500)).decode() + "\n"


def record() -> str:
    digest = "".join(RNG.choice("0123456789abcdef") for _ in range(40))
    return json.dumps({"id": f"chatcmpl-{digest[:12]}", "object": "chat.completion", "commit": digest,
                       "usage": {"prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52},
                       "choices": [{"message": {"role": "assistant", "content": prose(30)}}]}) + "\n"


def secret() -> str:
    alnum = string.ascii_letters + string.digits
    return RNG.choice([
        "sk-proj-" + "".join(RNG.choice(alnum) for _ in range(48)),
        "AKIA" + "".join(RNG.choice(string.ascii_uppercase) for _ in range(16)),
        "password = '" + "".join(RNG.choice(alnum) for _ in range(14)) + "'",
    ])


def corpus(size: int) -> str:
    parts: list[str] = []
    while sum(map(len, parts)) < size:
        kind = RNG.random()
        parts.append(prose(120) if kind < 0.5 else CODE if kind < 0.7 else record() if kind < 0.9 else blob())
        if RNG.random() < 0.02:
            parts.append(f"here is my key {secret()} thanks\n")
    return "".join(parts)


def best_of(run, repeats: int = 5) -> float:
    """Best CPU time of this process over `repeats` runs: per-core cost, whatever else the machine runs."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    text = corpus(400_000)
    megabytes = len(text.encode()) / 1e6
    detector = SecretsDetector()
    patterns = [rule.pattern() for rule in RULES]
    on_re2 = [compile_re2(p) for p in patterns]
    on_re = [re.compile(p) for p in patterns]
    findings = len(detector.find(text))
    rows = [
        ("detector.find (prefilter + RE2)", best_of(lambda: detector.find(text))),
        ("every rule on RE2, no prefilter", best_of(lambda: [list(p.finditer(text)) for p in on_re2], 3)),
        ("every rule on Python re", best_of(lambda: [list(p.finditer(text)) for p in on_re], 1)),
    ]
    prose_only = "".join(prose(120) for _ in range(350))
    rows.append(("detector.find, prose only", best_of(lambda: detector.find(prose_only))))
    print(f"corpus: {megabytes:.2f} MB mixed text, {len(RULES)} rules, {findings} findings")
    for name, seconds in rows:
        size = len(prose_only.encode()) / 1e6 if "prose" in name else megabytes
        print(f"  {name:34s} {size / seconds:8.1f} MB/s  ({seconds * 1000:.1f} ms)")
    prompt = text[:2000]
    per_prompt = best_of(lambda: [detector.find(prompt) for _ in range(200)]) / 200
    print(f"  detector.find on a 2 KB prompt: {per_prompt * 1e6:.1f} us per call "
          f"({per_prompt * 1e6 / (len(prompt.encode()) / 1024):.1f} us per KB)")
    calls, seconds, held = stream(detector, text[:100_000], chunk=24)
    print(f"  hold() streaming 100 KB in 24-char chunks: {seconds / calls * 1e6:.1f} us per call, "
          f"{held / calls:.1f} characters held on average")
    adversarial(detector)


def adversarial_inputs(size: int) -> dict[str, str]:
    b64 = base64.b64encode(RNG.randbytes(size)).decode()[:size]
    alnum = string.ascii_letters + string.digits
    lines = "\n".join(b64[i : i + 64] for i in range(0, size, 65))
    return {
        "ordinary mixed text": corpus(size),
        "one base64 run": b64,
        "base64 in 64-column lines": lines,
        "ghp_ghp_ghp_...": ("ghp_" * size)[:size],
        "sk-sk-sk-...": ("sk-" * size)[:size],
        "every table prefix + 6 chars": " ".join(p + "a1B2c3" for p in PREFIXES * size)[:size],
        "keyword list": ("key secret token password access private auth credential login pat " * size)[:size],
        "key: <value> repeated": " ".join(f"key: {''.join(RNG.choice(alnum) for _ in range(12))}"
                                          for _ in range(size // 16))[:size],
        "one character": "a" * size,
        "-----BEGIN repeated": ("-----BEGIN " * size)[:size],
        "machine/login/password": ("machine h login u password " * size)[:size],
    }


def adversarial(detector: SecretsDetector, size: int = 100_000) -> None:
    print(f"CPU per character ({size // 1000} K characters each; find / streamed hold in 24-char chunks):")
    worst = 0.0
    for name, text in adversarial_inputs(size).items():
        find = best_of(lambda text=text: detector.find(text), 3) / len(text) * 1e6
        _, seconds, _ = stream(detector, text[:20_000], chunk=24)
        hold = seconds / min(len(text), 20_000) * 1e6
        worst = max(worst, find, hold)
        print(f"  {name:32s} find {find:6.3f} us/char   hold {hold:6.3f} us/char")
    print(f"  worst: {worst:.3f} us/char (budget 1.0)")


def stream(detector: SecretsDetector, text: str, chunk: int) -> tuple[int, float, int]:
    """Feed `text` as the stream scanner does: hold() on the unreleased tail after each chunk."""
    released, calls, held, start = 0, 0, 0, time.process_time()
    for end in range(chunk, len(text) + chunk, chunk):
        unreleased = text[released:end]
        hold = detector.hold(unreleased)
        released = min(end, len(text)) - hold
        calls, held = calls + 1, held + hold
    return calls, time.process_time() - start, held


if __name__ == "__main__":
    main()
