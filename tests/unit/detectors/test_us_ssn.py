import pytest
from detector_checks import assert_hold_sound, spans
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.detectors import get
from extproc.detectors.us_ssn import SsnParams, UsSsnDetector, issuable

DETECTOR = UsSsnDetector()
PROSE = ["my", "SSN", "is", "Grüße", "日本語", "—", "-", "12", "2023", "no.", "ö", "social", "security", "x"]


def test_registered():
    assert get("us_ssn") is UsSsnDetector


@pytest.mark.parametrize("text,value", [
    ("my ssid is 078-05-1121", "078-05-1121"),
    ("Jürgen's number: 536-32-3065.", "536-32-3065"),
    ("my social security number is 078051120", "078051120"),
    ("SSN: 078 05 1120", "078 05 1120"),
    ("soc. sec. 536323065", "536323065"),
])
def test_ssns_are_found_whole(text, value):
    start = text.index(value)
    assert spans(DETECTOR, text) == [(start, start + len(value), "us_ssn")]


@pytest.mark.parametrize("text", [
    "000-12-3456", "666-12-3456", "901-12-3456", "ITIN 911-70-1234",  # areas never issued
    "123-00-4567", "123-45-0000",  # empty group or serial
    "078051120", "call 078 05 1120",  # undelimited without a keyword
    "1-078-05-1120", "078-05-1120-5", "A078-05-1120", "v078-05-1120.1",  # parts of longer tokens
    "2023-01-15", "425-882-9090", "550e8400-e29b-41d4-a716-446655440000",
    "my SSN is 0780511201",  # ten digits
])
def test_look_alikes_are_not_found(text):
    assert spans(DETECTOR, text) == []


def test_undelimited_can_be_switched_off():
    strict = UsSsnDetector(SsnParams(undelimited=False))
    assert strict.find("SSN 078051120") == []
    assert len(strict.find("SSN 078-05-1120")) == 1


def test_issuable_ranges():
    assert issuable("078051120")
    assert not any(issuable(d) for d in ["000123456", "666123456", "900123456", "123004567", "123450000"])


def test_hold_is_the_trailing_digit_run():
    assert DETECTOR.hold("my SSN is") == 0
    assert DETECTOR.hold("my SSN is 078-0") == len(" 078-0")
    assert DETECTOR.hold("1" * 50) == DETECTOR.max_span - 1


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 899), st.integers(1, 99), st.integers(1, 9999))
def test_generated_ssns(area, group, serial):
    value = f"{area:03d}-{group:02d}-{serial:04d}"
    found = spans(DETECTOR, f"Nº {value}.")
    assert found == ([(3, 14, "us_ssn")] if area != 666 else [])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PROSE), max_size=10),
       st.sampled_from(["078-05-1120", "536323065", "536 32 3065"]),
       st.lists(st.sampled_from(PROSE), max_size=5))
def test_hold_is_sound(before, value, after):
    assert_hold_sound(DETECTOR, " ".join(before) + " SSN " + value + " " + " ".join(after))
