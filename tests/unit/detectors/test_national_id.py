import pytest
from detector_checks import assert_hold_sound, spans
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from extproc.detectors import get
from extproc.detectors.national_id import SUPPORTED_COUNTRIES, NationalIdDetector, NationalIdParams

DETECTOR = NationalIdDetector()
# (type, value, words before it): values are python-stdnum's documented examples or public test numbers.
CASES = [
    ("de_idnr", "36 574 261 809", ""), ("fr_nir", "2 95 10 99 126 111 93", ""), ("gb_nino", "AB 12 34 56 C", ""),
    ("nl_bsn", "1112.22.333", ""), ("nl_bsn", "111222333", "BSN: "), ("es_dni", "54362315-K", ""),
    ("es_nie", "X-2482300W", ""), ("it_codicefiscale", "RCCMNL83S18D969H", ""),
    ("in_aadhaar", "2341 2341 2346", ""), ("in_aadhaar", "234123412346", "Aadhaar no. "),
    ("in_pan", "ACUPA7085R", ""), ("br_cpf", "390.533.447-05", ""), ("br_cpf", "39053344705", "CPF "),
    ("pl_pesel", "44051401359", "PESEL: "), ("se_personnummer", "880320-0016", ""),
    ("no_fodselsnummer", "151086 95088", ""), ("fi_hetu", "131052-308T", ""), ("dk_cpr", "211062-5629", "CPR-nr. "),
    ("be_nn", "85.07.30-033.28", ""), ("tr_tckimlik", "17291716060", ""), ("kr_rrn", "971013-9019902", ""),
    ("za_idnr", "7503305044089", ""), ("cn_ric", "360426199101010071", ""), ("ch_ssn", "756.9217.0769.85", ""),
    ("ie_pps", "6433435F", ""), ("gb_nhs", "943 476 5919", "NHS number "), ("mx_curp", "BOXW310820HNERXN09", ""),
    ("ro_cnp", "1630615123457", ""), ("ee_ik", "36805280109", ""), ("gr_amka", "01013099997", ""),
    ("th_pin", "1 7399 00504 82 0", ""), ("cz_rc", "710319/2745", ""), ("is_kennitala", "450401-3150", ""),
    ("si_emso", "0101006500006", ""), ("mu_nid", "I050125386993D", ""), ("pt_cc", "054546796 ZY7", ""),
    ("lt_asmens", "33309240064", "asmens kodas "), ("bg_egn", "7501020018", "ЕГН "),
    ("do_cedula", "00113918205", "cédula "), ("cr_cpf", "1-0390-0960", "Cédula "),
    ("ua_rntrc", "1759013776", "РНОКПП "), ("au_tfn", "123 456 782", "TFN "),
]
PROSE = ["ID", "Nr.", "is", "Grüße", "日本語", "—", "-", "12", "AB", "DE", "X", "2023", "BSN", "ö", "/", "OK"]


def test_registered():
    assert get("national_id") is NationalIdDetector


def test_every_supported_country_has_a_case():
    assert {kind[:2].upper() for kind, _, _ in CASES} == set(SUPPORTED_COUNTRIES)


@pytest.mark.parametrize("kind,value,context", CASES)
def test_documented_numbers_are_found_with_their_type(kind, value, context):
    text = f"Übersicht — 日本: {context}{value}."
    start = text.index(value)
    assert spans(DETECTOR, text) == [(start, start + len(value), f"national_id:{kind}")]


@pytest.mark.parametrize("text", [
    "Order 111222333", "invoice 234123412346", "ref 44051401359", "call 943 476 5919",  # weak, no keyword
    "36 574 261 800", "54362315-A", "RCCMNL83S18D969X", "390.533.447-06", "131052-308X",  # checksums fail
    "AL47 2121 1009 0000 0002 3569 8741",  # groups of an IBAN
    "GB 12 34 56 C", "AB 12 34 56 E",  # NINO prefix / suffix not allowed
    "2023-01-15", "550e8400-e29b-41d4-a716-446655440000", "version 10.0.19041.1", "+49 30 1234567",
    "ID36574261809X", "36574261809.5",
])
def test_look_alikes_are_not_found(text):
    assert spans(DETECTOR, text) == []


def test_countries_param_limits_the_types():
    dutch = NationalIdDetector(NationalIdParams(countries=["nl"]))
    assert dutch.find("36 574 261 809") == []
    assert [f.label for f in dutch.find("1112.22.333")] == ["national_id:nl_bsn"]


def test_context_for_weak_can_be_switched_off():
    loose = NationalIdDetector(NationalIdParams(context_for_weak=False))
    assert [f.label for f in loose.find("Order 111222333")] == ["national_id:nl_bsn"]


def test_params_are_validated():
    with pytest.raises(ValidationError):
        NationalIdParams(countries=["XX"])
    with pytest.raises(ValidationError):
        NationalIdParams(countries=["DE"], other=True)


def test_hold_is_the_trailing_id_run():
    assert DETECTOR.hold("my number is") == 0
    assert DETECTOR.hold("Steuer-Id 36 574") == len(" 36 574")
    assert DETECTOR.hold("STEUER-ID 36 574") == len("STEUER-ID 36 574")  # capitals could start an ID
    assert DETECTOR.hold("A" * 100) == DETECTOR.max_span - 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PROSE), max_size=10), st.sampled_from(CASES),
       st.lists(st.sampled_from(PROSE), max_size=5))
def test_hold_is_sound(before, case, after):
    _, value, context = case
    assert_hold_sound(DETECTOR, " ".join(before) + " " + context + value + " " + " ".join(after))


def test_the_set_prefilter_finds_what_running_every_pattern_finds():
    unfiltered = NationalIdDetector()
    unfiltered._prefilter = None  # every pattern, one by one
    texts = [f"{' '.join(PROSE[:i % 7])} {context}{value} and" for i, (_, value, context) in enumerate(CASES)]
    texts += [" ".join(PROSE), "no numbers here at all"]
    for text in texts:
        assert DETECTOR.find(text) == unfiltered.find(text), text
    assert all(DETECTOR.find(text) for text in texts[: len(CASES)])  # every case is found through the set


def test_a_long_text_skips_the_prefilter_and_still_finds():
    text = "x " * 3000 + "Steuer-Id 36 574 261 809"
    assert [f.label for f in DETECTOR.find(text)] == ["national_id:de_idnr"]
