"""Every API shape's parsers on arbitrary JSON: requests raise only MalformedRequest, responses and stream
events raise nothing."""

import atheris
import orjson
from _harness import run

with atheris.instrument_imports(include=["extproc"]):
    from extproc import shapes
    from extproc.errors import MalformedRequest
    from extproc.framing import Record
    SHAPES = sorted(shapes.all_shapes().items())


def test_one_input(data: bytes) -> None:
    for _, shape in SHAPES:
        shape.decode_record(Record(raw=data, data=data))
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    for _, shape in SHAPES:
        try:
            shape.parse_request(doc)
        except MalformedRequest:
            pass
        for segment in shape.response_segments(doc):
            assert isinstance(segment.text, str)
        for delta in shape.stream_deltas(doc):
            assert isinstance(delta.text, str)
        shape.usage_of(doc)


if __name__ == "__main__":
    run(test_one_input)
