import pytest
from detector_checks import assert_hold_sound
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.detectors import get
from extproc.detectors.payment_card import PaymentCardDetector, luhn_valid, scheme_of

DETECTOR = PaymentCardDetector()
VALID = {
    "4111 1111 1111 1111": "visa",
    "4222222222222": "visa",
    "4012-8888-8888-1881": "visa",
    "5555555555554444": "mastercard",
    "2223 0031 2200 3222": "mastercard",
    "3782 822463 10005": "amex",
    "371449635398431": "amex",
    "6011 1111 1111 1117": "discover",
    "3530111333300000": "jcb",
    "3056 930902 5904": "diners",
    "6200000000000005": "unionpay",
    "6759649826438453": "maestro",
}
PREFIXES = ["4", "51", "55", "2221", "2720", "34", "37", "6011", "65", "3528", "3589", "36", "62", "6304"]
PROSE = ["card", "no", "exp", "12/27", "Grüße", "日本語", "—", "-", "1", "2023", "cvv", "123", ".", "ü"]


def spans(text):
    return [(f.start, f.end, f.label) for f in DETECTOR.find(text)]


def with_check_digit(body):
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def test_registered():
    assert get("payment_card") is PaymentCardDetector


@pytest.mark.parametrize("value,scheme", VALID.items())
def test_test_cards_are_found_whole(value, scheme):
    assert scheme_of(value.replace(" ", "").replace("-", "")) == scheme
    text = f"Zahlung für Müller — 日本: {value}."
    start = text.index(value)
    assert spans(text) == [(start, start + len(value), "payment_card")]


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1112",  # Luhn fails
    "9111111111111116",  # no scheme starts with 9
    "3400 0000 0000 008",  # Amex prefix, Luhn fails
    "4111 1111-1111 1111",  # mixed separators
    "41 1111 1111 1111 11",  # not a printed card layout
    "pi 3.4111111111111111",  # decimal digits
    "ID4111111111111111",  # part of an identifier
    "41111111111111111111",  # 20 digits
    "550e8400-e29b-41d4-a716-446655440000",
    "2023-01-15 12:00", "+1 425 882 9090", "ts 1700000000000",
])
def test_look_alikes_are_not_found(text):
    assert spans(text) == []


def test_two_cards_in_one_run():
    text = "5555555555554444 4012888888881881"
    assert [text[s:e] for s, e, _ in spans(text)] == ["5555555555554444", "4012888888881881"]


def test_hold_is_the_trailing_digit_run():
    assert DETECTOR.hold("pay with card") == 0
    assert DETECTOR.hold("card 4111 1111") == len(" 4111 1111")
    assert DETECTOR.hold("4" * 100) == DETECTOR.max_span - 1


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(PREFIXES), st.integers(13, 19), st.randoms(use_true_random=False),
       st.sampled_from(["", " ", "-"]))
def test_generated_cards_are_found(prefix, length, rng, separator):
    number = with_check_digit(prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1)))
    if scheme_of(number) is None:
        return
    printed = separator.join(number[i:i + 4] for i in range(0, len(number), 4))
    text = f"Karte: {printed}!"
    assert spans(text) == [(7, 7 + len(printed), "payment_card")]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PROSE), max_size=10), st.sampled_from(sorted(VALID)),
       st.lists(st.sampled_from(PROSE), max_size=5))
def test_hold_is_sound(before, value, after):
    assert_hold_sound(DETECTOR, " ".join(before) + " " + value + " " + " ".join(after))
