import re

import pytest
from detector_checks import assert_hold_sound
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import iban as stdnum_iban
from stdnum import numdb

from extproc.detectors import get
from extproc.detectors.iban import _LAYOUTS, _LENGTHS, IbanDetector, mod97_valid

DETECTOR = IbanDetector()
VALID = [
    "DE89 3704 0044 0532 0130 00",
    "DE89370400440532013000",
    "de89370400440532013000",
    "GB29 NWBK 6016 1331 9268 19",
    "FR14 2004 1010 0505 0001 3M02 606",
    "ES91 2100 0418 4502 0005 1332",
    "ES 58 0049 0290 3424 1352 8341",
    "BE68 5390 0754 7034",
    "MT84 MALT 0110 0001 2345 MTLC AST0 01S",
    "NO 44 1850.05.14562",
    "NL91ABNA0417164300",
]
PROSE = ["IBAN", "is", "at", "12", "DE", "ES 12", "Überweisung", "日本語", "—", "-", ".", "AB", "x1", "3704", "ok"]
CHARS = {"n": "0123456789", "a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "c": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def spans(text):
    return [(f.start, f.end, f.label) for f in DETECTOR.find(text)]


def test_registered():
    assert get("iban") is IbanDetector


def test_length_table_matches_the_swift_registry():
    registry = {prefix[1]: 4 + sum(int(n) for n in re.findall(r"(\d+)!", prefix[3].get("bban", "")))
                for prefix in numdb.get("iban").prefixes}
    assert _LENGTHS == registry


@pytest.mark.parametrize("value", VALID)
def test_valid_ibans_are_found_whole(value):
    text = f"Überweisung an Jürgen (日本): {value}, danke"
    start = text.index(value)
    assert spans(text) == [(start, start + len(value), "iban")]


@pytest.mark.parametrize("text", [
    "DE89 3704 0044 0532 0130 01",  # check digits do not match
    "DE89 3704 0044 0532 0130 0",  # one character short
    "DE89370400440532013000X",  # runs on into a longer token
    "xDE89370400440532013000",  # starts inside a word
    "QQ93 1234 5678 9012",  # no such country
    "GB29 NWBK 6016 1331 9268 1A",  # GB account number must be digits
    "AGBMDEMM", "NWBKGB2L",  # BICs
    "the account is 12 at ES 58 and more",
    "550e8400-e29b-41d4-a716-446655440000", "2023-01-15",
])
def test_look_alikes_are_not_found(text):
    assert spans(text) == []


def test_two_ibans_in_a_sentence():
    text = "DE89370400440532013000 and GB29 NWBK 6016 1331 9268 19 is it"
    assert [text[s:e] for s, e, _ in spans(text)] == ["DE89370400440532013000", "GB29 NWBK 6016 1331 9268 19"]


def test_mod97():
    assert mod97_valid("GB29NWBK60161331926819")
    assert not mod97_valid("GB28NWBK60161331926819")


def test_hold_only_covers_a_possible_iban_start():
    assert DETECTOR.hold("the account is 12 at home") == 0
    assert DETECTOR.hold("pay to GB29 NWBK 6016") == len("GB29 NWBK 6016")
    assert DETECTOR.hold("pay to G") == 1
    assert DETECTOR.hold("paid DE89370400440532013000") == 0  # complete: it cannot grow
    assert DETECTOR.hold("GB29 " * 40) <= DETECTOR.max_span - 1


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(_LAYOUTS)), st.randoms(use_true_random=False), st.booleans())
def test_generated_ibans_are_found(country, rng, grouped):
    bban = "".join(rng.choice(CHARS[kind]) for kind in _LAYOUTS[country])
    compact = country + stdnum_iban.calc_check_digits(country + "00" + bban) + bban
    printed = " ".join(compact[i:i + 4] for i in range(0, len(compact), 4)) if grouped else compact
    text = f"IBAN: {printed}."
    assert spans(text) == [(6, 6 + len(printed), "iban")]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PROSE), max_size=10), st.sampled_from(VALID),
       st.lists(st.sampled_from(PROSE), max_size=5), st.sampled_from([" ", ": ", "\n"]))
def test_hold_is_sound(before, value, after, glue):
    assert_hold_sound(DETECTOR, " ".join(before) + glue + value + glue + " ".join(after))
