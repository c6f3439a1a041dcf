"""Shapes own the wire format: checks, limits, the session and the stream scanner never read a vendor JSON
field themselves (that is where fields were missed before). A regression reintroducing `doc.get(...)` or
`payload["..."]` outside extproc/shapes fails here."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "extproc"
READERS = [*sorted((ROOT / "checks").glob("*.py")), ROOT / "limits.py", ROOT / "session.py",
           ROOT / "stream_scan.py"]
VENDOR_READ = re.compile(r"\b(?:doc|payload|parsed\.doc|message|choice|delta)(?:\.get\(|\[\s*[\"'])")


@pytest.mark.parametrize("path", READERS, ids=lambda p: p.name)
def test_no_vendor_field_is_read_outside_the_shapes(path):
    offending = [f"{path.name}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
                 if VENDOR_READ.search(line)]
    assert not offending, "\n".join(offending)


def test_the_pattern_catches_what_it_is_for():
    assert VENDOR_READ.search('model = doc.get("model")')
    assert VENDOR_READ.search("ctx.parsed.doc['model'] = target")
    assert not VENDOR_READ.search("ctx.shape.set_model(ctx.parsed.doc, target)")
