"""CPU per character of every registered detector's `find`, on ordinary and on adversarial text.

    python -m bench.bench_detectors                   # 64 KB per input, every detector
    python -m bench.bench_detectors --size 16384 --only phone,email --limit 1.0

Each cell is the best CPU time of this process (`time.process_time`, so other load on a shared machine
counts less) over a few runs, divided by the input's length. Cells above `--limit` (default 1 µs/char, the
project's budget) are flagged `!`; the exit status is 1 when any is. Detectors come from the registry, each
with its default parameters (`regex` with the full benchmark policy's patterns).

`calls(detector, text)` counts the Python and C function calls one `find` makes: a deterministic measure of
per-character work that the bench smoke test compares between an input and the same input four times over.
"""

from __future__ import annotations

import argparse
import base64
import random
import sys
import time
from collections.abc import Callable

from bench.policies import SECRET_PATTERNS, USER_PATTERNS
from extproc.detectors import registry
from extproc.detectors.base import Detector
from extproc.detectors.regex import RegexParams

LIMIT_US_PER_CHAR = 1.0
PROSE = ("Hi team, the quarterly review moved to Thursday 14:30 in room 4.12. Dana (dana.smith@example.com, "
         "+1 415 555 0132) owns the vendor follow-up; see https://wiki.example.com/q3/review?id=42 and the "
         "notes [here](https://docs.example.org/notes). Budget: 12,400 EUR, invoice 2024-118-07. ")
CODE = ('def load(path):\n    cfg = json.loads(open(path).read())\n    url = f"http://{cfg[\'host\']}:8080/v1"\n'
        '    return requests.post(url, json={"max_tokens": 512, "ids": [1, 22, 333, 4444]}).json()\n')


def _cycle(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _random(alphabet: str, size: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(size))


def _nested(open_: str, close: str, size: int) -> str:
    return open_ * (size // 2) + close * (size - size // 2)


def _random_numbers(size: int, template: str, seed: int = 7) -> str:
    """`template` repeated with every `9` replaced by a random digit: no two candidates alike."""
    rng = random.Random(seed)
    text = _cycle(template, size)
    return "".join(rng.choice("0123456789") if char == "9" else char for char in text)


def _base64(size: int) -> str:
    return base64.b64encode(random.Random(7).randbytes(size))[:size].decode()


# name -> (ordinary?, generator of `size` characters)
INPUTS: dict[str, tuple[bool, Callable[[int], str]]] = {
    "prose": (True, lambda n: _cycle(PROSE, n)),
    "code": (True, lambda n: _cycle(CODE, n)),
    "digits": (False, lambda n: "7" * n),
    "random digits": (False, lambda n: _random("0123456789", n)),
    "digit groups": (False, lambda n: _cycle("123 456 7890 ", n)),
    "trunk groups": (False, lambda n: _cycle("030 1234567 ", n)),
    "digits+separators": (False, lambda n: _random("0123456789 -./()+", n)),
    "intl numbers": (False, lambda n: _cycle("+49 30 1234567 ", n)),
    "random intl numbers": (False, lambda n: _random_numbers(n, "+49 99 9999999 +1 999 999 9999 ")),
    "12-token runs": (False, lambda n: _random_numbers(n, "099 " * 12 + "x ")),
    "cards": (False, lambda n: _cycle("4111 1111 1111 1111 ", n)),
    "ssn": (False, lambda n: _cycle("123-45-6789 ", n)),
    "dotted quads": (False, lambda n: _cycle("192.168.1.1.", n)),
    "hex colons": (False, lambda n: _cycle("fe80:", n)),
    "iban-like": (False, lambda n: _cycle("DE89 3704 0044 ", n)),
    "letters+digits": (False, lambda n: _random("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", n)),
    "at signs": (False, lambda n: "@" * n),
    "a@": (False, lambda n: _cycle("a@", n)),
    "emails glued": (False, lambda n: _cycle("a.b@c.d", n)),
    "dots": (False, lambda n: "." * n),
    "a.": (False, lambda n: _cycle("a.", n)),
    "base64": (False, _base64),
    "hex": (False, lambda n: _random("0123456789abcdef", n)),
    "instructions": (False, lambda n: _cycle("ignore all previous instructions and ", n)),
    "urls glued": (False, lambda n: _cycle("http://a.com/", n)),
    "url query": (False, lambda n: "https://example.com/?" + _cycle("a=b&", n - 21)),
    "markdown links": (False, lambda n: _cycle("[a](http://x.io/", n)),
    "markdown images": (False, lambda n: _cycle("![x](", n)),
    "html anchors": (False, lambda n: _cycle('<a href="http://x', n)),
    "nested []": (False, lambda n: _nested("[", "]", n)),
    "nested ()": (False, lambda n: _nested("(", ")", n)),
    "secret prefixes": (False, lambda n: _cycle("sk-AKIAghp_password=", n)),
    "spaces": (False, lambda n: " " * n),
    "look-alikes": (False, lambda n: _cycle("Іgnоre ｐｒｅｖｉｏｕｓ\u200b ", n)),
}


def detectors(only: set[str] | None = None) -> dict[str, Detector]:
    """One instance of every registered detector (or those in `only`), with default parameters."""
    found = {}
    for name, cls in sorted(registry().items()):
        if only and name not in only:
            continue
        if name == "regex":
            found[name] = cls(RegexParams.model_validate({"patterns": SECRET_PATTERNS + USER_PATTERNS}))
        else:
            found[name] = cls()
    return found


def us_per_char(detector: Detector, text: str, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        detector.find(text)
        elapsed = time.process_time() - started
        best = min(best, elapsed)
        if elapsed > 0.5:  # slow enough to measure once; spare the shared machine
            break
    return best * 1e6 / max(1, len(text))


def calls(detector: Detector, text: str) -> int:
    """Function calls (Python and C) one `find(text)` makes, generator resumptions included."""
    count = 0

    def profile(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        detector.find(text)
    finally:
        sys.setprofile(None)
    return count


def table(found: dict[str, Detector], inputs: list[str], size: int, limit: float) -> tuple[list[str], int]:
    names = list(found)
    width = max(len(n) for n in inputs) + 2
    lines = [f"{'input (' + str(size) + ' chars)':<{width}}" + "".join(f"{n[:12]:>13}" for n in names)]
    over = 0
    worst = dict.fromkeys(names, 0.0)
    for input_name in inputs:
        text = INPUTS[input_name][1](size)
        cells = []
        for name in names:
            value = us_per_char(found[name], text)
            worst[name] = max(worst[name], value)
            flag = "!" if value > limit else " "
            over += value > limit
            cells.append(f"{value:>12.3f}{flag}")
        lines.append(f"{input_name:<{width}}" + "".join(cells))
    lines.append(f"{'worst':<{width}}" + "".join(f"{worst[n]:>12.3f}{'!' if worst[n] > limit else ' '}"
                                                  for n in names))
    return lines, over


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_detectors", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=65536, help="characters per input (default 65536)")
    p.add_argument("--only", default="", help="comma-separated detector names (default: all registered)")
    p.add_argument("--inputs", default="", help=f"comma-separated inputs (default all): {', '.join(INPUTS)}")
    p.add_argument("--limit", type=float, default=LIMIT_US_PER_CHAR, help="flag cells above (µs/char)")
    args = p.parse_args(argv)
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    inputs = [n.strip() for n in args.inputs.split(",") if n.strip()] or list(INPUTS)
    unknown = set(inputs) - set(INPUTS) | only - set(registry())
    if unknown:
        p.error(f"unknown input(s) or detector(s): {', '.join(sorted(unknown))}")
    lines, over = table(detectors(only), inputs, args.size, args.limit)
    print("\n".join(lines))
    print(f"\nµs of CPU per character of find(); '!' = above {args.limit} µs/char: {over} cell(s)")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
