"""The policy loader and compiler on arbitrary text: a policy either compiles or raises PolicyError."""

import atheris
from _harness import run

with atheris.instrument_imports(include=["extproc"]):
    from extproc import checks, detectors
    from extproc.policy.load import PolicyError
    from extproc.policy.reload import compile_text
    detectors.registry(), checks.registry()  # load every detector and check module while instrumenting


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        compile_text(text, "<fuzz>")
    except PolicyError:
        pass


if __name__ == "__main__":
    run(test_one_input)
