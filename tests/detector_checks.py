"""Checks shared by the detector tests."""


def spans(detector, text):
    return [(f.start, f.end, f.label) for f in detector.find(text)]


def assert_hold_sound(detector, text):
    """No finding of the full text may start before what the streaming hold-back released at any prefix."""
    for finding in detector.find(text):
        for n in range(finding.start + 1, finding.end):
            assert finding.start >= n - detector.hold(text[:n]), (text, finding, n)
