"""Hold-back helpers: exact, sound bounds."""

from extproc.detectors.hold import hold_anchored, hold_run


def test_anchor_found_in_window_holds_from_it():
    assert hold_anchored("hello sk-abc", ["sk-"], 50) == len("sk-abc")


def test_partial_anchor_at_the_end_is_held():
    assert hold_anchored("hello s", ["sk-"], 50) == 1
    assert hold_anchored("hello sk", ["sk-"], 50) == 2
    assert hold_anchored("hello there", ["sk-"], 50) == 0


def test_anchor_outside_the_window_is_released():
    text = "sk-" + "x" * 100
    assert hold_anchored(text, ["sk-"], 20) == 0


def test_case_insensitive_anchors():
    assert hold_anchored("my PASSWORD=hunt", ["password="], 40, ignore_case=True) == len("PASSWORD=hunt")


def test_run_hold_covers_the_trailing_run_only():
    chars = frozenset("abcdefghijklmnopqrstuvwxyz@.")
    assert hold_run("Hello, jane.doe@exa", chars, 254) == len("jane.doe@exa")
    assert hold_run("ends with space ", chars, 254) == 0
    assert hold_run("a" * 500, chars, 254) == 253


def _reference_run(text: str, allowed: frozenset[str], max_span: int) -> int:
    size = 0
    while size < min(len(text), max_span - 1) and text[-1 - size] in allowed:
        size += 1
    return size


def test_run_hold_matches_a_character_by_character_count():
    import random

    rng, chars = random.Random(5), frozenset("ab-")
    for _ in range(2000):
        text = "".join(rng.choice("ab- x\u00e9") for _ in range(rng.randrange(0, 12)))
        span = rng.randrange(1, 10)
        assert hold_run(text, chars, span) == _reference_run(text, chars, span), (text, span)
