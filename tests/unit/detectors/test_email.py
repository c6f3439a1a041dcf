from detector_checks import assert_hold_sound
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.detectors import get
from extproc.detectors.email import EmailDetector

DETECTOR = EmailDetector()
VALID = [
    "john.doe+tag@example.co.uk",
    "o'brien@example.ie",
    "x_y-z@sub.domain.museum",
    "max@bücher.de",
    "user@例子.中国",
    "test@xn--hxajbheg2az3al.xn--jxalpdlp",
    "a@[192.0.2.1]",
    "a@[IPv6:2001:db8::1]",
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghiklm@iana.org",
]
PROSE = ["hello", "mail", "me", "at", "Grüße", "日本語", "—", "x", "@", "user", "test.", "com", ".", "-", "42",
         "a.b", "@home", "example.org", "ü", "[", ":", "v1.2.3"]


def spans(text):
    return [(f.start, f.end, f.label) for f in DETECTOR.find(text)]


def test_registered():
    assert get("email") is EmailDetector


def test_valid_addresses_are_found_whole():
    for value in VALID:
        text = f"Kontakt (Grüße, 日本語): {value}, danke"
        start = text.index(value)
        assert spans(text) == [(start, start + len(value), "email")], value


def test_span_after_non_ascii_and_cjk_neighbours():
    text = "请联系test@example.com获取 — or Émile: émile.x@société.fr."
    found = [text[s:e] for s, e, _ in spans(text)]
    assert found == ["test@example.com", "émile.x@société.fr"]


def test_look_alikes_are_not_found():
    for text in ["icon@2x.png", "user@localhost", "a@b.c", "lodash@4.17.21", "test@iana-.com", "test@.iana.org",
                 "test.@iana.org", "a@b@c.com", "foo@bar.com2", "@mention", "2023-01-15", "v1.2.3@",
                 "550e8400-e29b-41d4-a716-446655440000", "x@[300.1.1.1]", "x@[IPv6:zz::1]"]:
        assert spans(text) == [], text


def test_local_part_longer_than_64_is_rejected():
    assert spans("a" * 65 + "@example.com") == []


def test_hold_is_the_last_word_of_prose():
    assert DETECTOR.hold("please write to me at john.doe") == len("john.doe")
    assert DETECTOR.hold("write to john@exam") == len("john@exam")
    assert DETECTOR.hold("write to john@") == len("john@")
    assert DETECTOR.hold("日本語のテキスト") == 0
    assert DETECTOR.hold("end of sentence. ") == 0


def test_hold_is_bounded_by_max_span():
    assert DETECTOR.hold("a" * 1000) == DETECTOR.max_span - 1
    assert DETECTOR.hold("a" * 100 + "@" + "b" * 500) == DETECTOR.max_span - 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PROSE), max_size=12), st.sampled_from(VALID),
       st.lists(st.sampled_from(PROSE), max_size=6), st.sampled_from([" ", "", ":", "\n"]))
def test_hold_is_sound(before, value, after, glue):
    text = " ".join(before) + glue + value + glue + " ".join(after)
    assert_hold_sound(DETECTOR, text)


def test_the_hold_shortcut_agrees_with_the_full_hold():
    import random

    rng = random.Random(11)
    pieces = ["a", "b.c", "@", "example", ".com", " ", "-", "é", "\n", "x" * 300, "[1.2.3.4]"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        assert EmailDetector().hold(text) == EmailDetector().hold_all(text), text
