import pytest
from detector_checks import assert_hold_sound, spans
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from extproc.detectors import get
from extproc.detectors.phone import PhoneDetector, PhoneParams

DETECTOR = PhoneDetector()
VALID = [
    "(425) 882-9090",
    "1-425-882-9090",
    "+1 425 882 9090",
    "+49 30 1234567",
    "030 1234567",
    "0049 30 1234567",
    "+44 20 7946 0958",
    "020 7946 0958",
    "+33 1 23 45 67 89",
    "01 23 45 67 89",
    "98765 43210",
    "+91 98765 43210",
    "+41 44 668 18 00",
    "(425) 882-9090 ext. 123",
]
PROSE = ["call", "me", "at", "Grüße", "日本語", "—", "x", "ext", "tel.", "12", "2023", "-", "(", ")", "+", "on",
         "1.5", "#3", "room", "ö"]


def test_registered():
    assert get("phone") is PhoneDetector


@pytest.mark.parametrize("value", VALID)
def test_valid_numbers_are_found_whole(value):
    text = f"Rückruf (日本): {value}, danke"
    start = text.index(value)
    assert spans(DETECTOR, text) == [(start, start + len(value), "phone_number")]


def test_several_numbers_in_one_run():
    text = "Nummern: 030 1234567 089 12345678"
    assert [text[s:e] for s, e, _ in spans(DETECTOR, text)] == ["030 1234567", "089 12345678"]


@pytest.mark.parametrize("text", [
    "2023-01-15", "15.01.2023", "on 01/02/2023 at 10:30", "ip 192.168.100.200", "version 10.0.19041.1",
    "550e8400-e29b-41d4-a716-446655440000", "Order #12345678", "invoice 2023/0042", "ISBN 978-3-16-148410-0",
    "pi 3.14159265", "SSN 123-45-6789", "1,234,567.89", "ticket 4821-7733", "ID12345678901",
    "4111 1111 1111 1111",  # a card, not a number anyone dials
    "+41 (0)96 471 07 95",  # invalid Swiss range: its national part is no German number either
    "49 30 1234567",  # a country code without + is not one
    "Author-Date: Thu Apr 9 01:10:16 2026 -0600",  # clock time, year, zone offset
])
def test_look_alikes_are_not_found(text):
    assert spans(DETECTOR, text) == []


def test_regions_decide_national_numbers_only():
    german_only = PhoneDetector(PhoneParams(regions=["de"]))
    assert [f.label for f in german_only.find("030 1234567")] == ["phone_number"]
    assert german_only.find("(425) 882-9090") == []
    assert len(german_only.find("+1 425 882 9090")) == 1


def test_params_are_validated():
    with pytest.raises(ValidationError):
        PhoneParams(regions=["XX"])
    with pytest.raises(ValidationError):
        PhoneParams(regions=["US"], extra=1)


def test_hold_is_the_trailing_number_run():
    assert DETECTOR.hold("call me soon") == 0
    assert DETECTOR.hold("call me on +49 30 12") == len(" +49 30 12")
    assert DETECTOR.hold("1 " * 100) == DETECTOR.max_span - 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PROSE), max_size=10), st.sampled_from(VALID),
       st.lists(st.sampled_from(PROSE), max_size=5), st.sampled_from([" ", ": ", "\n"]))
def test_hold_is_sound(before, value, after, glue):
    text = " ".join(before) + glue + value + glue + " ".join(after)
    assert_hold_sound(DETECTOR, text)


# ---- bounded work: past the per-text allowance, runs are judged by shape and still reported


def _decoys(count: int) -> str:
    """`count` distinct runs that are no phone number in any region yet cost libphonenumber full reads."""
    return "; ".join(f"{n:03d}-{n % 97:03d}-{n % 89:02d}-{n % 83:02d}" for n in range(count))


def test_a_number_after_thousands_of_decoys_is_still_found():
    number = "(425) 882-9090"
    text = _decoys(3000) + f" call {number} now, invoice 2023-01-15, ssn 123-45-6789"
    found = [(text[f.start:f.end], f.score) for f in DETECTOR.find(text)]
    decoys = [value for value, score in found if value != number and score == 0.5]
    assert number in [value for value, _ in found]  # read exactly or (past the allowance) by shape
    assert len(decoys) > 2900  # the decoys past the allowance are reported too: fail closed
    assert "2023-01-15" not in decoys and "123-45-6789" not in decoys  # shapes that are not phone numbers


def test_within_the_allowance_numbers_are_read_exactly():
    text = _decoys(5) + " call (425) 882-9090 now"
    assert [(text[f.start:f.end], f.score) for f in DETECTOR.find(text)] == [("(425) 882-9090", 1.0)]


def test_one_huge_run_of_digit_groups_is_reported_whole_without_reading_it():
    text = "see " + "123 456 7890 " * 20_000 + "end"
    [finding] = DETECTOR.find(text)
    assert (finding.start, finding.end, finding.score) == (4, len(text) - 4, 0.5)
