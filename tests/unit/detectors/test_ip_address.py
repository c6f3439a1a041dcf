import pytest
from detector_checks import assert_hold_sound, spans
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.detectors import get
from extproc.detectors.ip_address import IpAddressDetector, IpParams

DETECTOR = IpAddressDetector()
PUBLIC_ONLY = IpAddressDetector(IpParams(include_private=False))
VALID = ["192.168.0.1", "8.8.8.8", "255.255.255.255", "2001:db8::8a2e:370:7334", "::1", "fe80::1",
         "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::ffff:192.0.2.128", "2606:4700:4700::1111"]
PROSE = ["host", "at", "Адрес", "日本語", "—", "1.2", "v2", "::", ":", ".", "cafe", "10", "port", "ü"]


def test_registered():
    assert get("ip_address") is IpAddressDetector


@pytest.mark.parametrize("value", VALID)
def test_addresses_are_found_whole(value):
    text = f"Сервер (日本): {value}, ok"
    start = text.index(value)
    label = "ipv6" if ":" in value else "ipv4"
    assert spans(DETECTOR, text) == [(start, start + len(value), label)]


@pytest.mark.parametrize("text,found", [
    ("host 8.8.8.8:53", ["8.8.8.8"]),
    ("http://[::1]:8080/", ["::1"]),
    ("fe80::1%eth0 and 2001:db8::/32.", ["fe80::1", "2001:db8::"]),
])
def test_addresses_in_context(text, found):
    assert [text[s:e] for s, e, _ in spans(DETECTOR, text)] == found


@pytest.mark.parametrize("text", [
    "256.1.1.1", "01.02.03.04", "1.2.3.4.5", "oid 1.3.6.1.4.1", "v1.2.3.4", "version 10.0.19041.1",
    "std::vector<int>", "a[1::2] x[::2]", "12:30:45", "00:1A:2B:3C:4D:5E", "2023-01-15", "::",
    "550e8400-e29b-41d4-a716-446655440000", "1:2:3:4:5:6:7:8:9",
])
def test_look_alikes_are_not_found(text):
    assert spans(DETECTOR, text) == []


def test_include_private_false_keeps_only_global_addresses():
    text = "10.0.0.1 127.0.0.1 8.8.8.8 fe80::1 ::1 2606:4700:4700::1111"
    assert [text[s:e] for s, e, _ in spans(PUBLIC_ONLY, text)] == ["8.8.8.8", "2606:4700:4700::1111"]


def test_hold_is_the_trailing_address_run():
    assert DETECTOR.hold("connect to host") == 0
    assert DETECTOR.hold("connect to 10.0.") == len("10.0.")
    assert DETECTOR.hold("f" * 100) == DETECTOR.max_span - 1


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(), st.booleans())
def test_generated_addresses(address, exploded):
    value = address.exploded if exploded else str(address)
    text = f"addr {value}."
    found = spans(DETECTOR, text)
    if value.strip(":") == "" or (address.version == 6 and address.ipv4_mapped and not exploded):
        return  # `::` alone is no address worth reporting; mapped forms are checked above
    assert found == [(5, 5 + len(value), f"ipv{address.version}")]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PROSE), max_size=10), st.sampled_from(VALID),
       st.lists(st.sampled_from(PROSE), max_size=5))
def test_hold_is_sound(before, value, after):
    assert_hold_sound(DETECTOR, " ".join(before) + " " + value + " " + " ".join(after))
