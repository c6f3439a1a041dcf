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
