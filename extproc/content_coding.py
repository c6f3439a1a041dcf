"""Reading compressed response bodies: gzip and deflate are decoded incrementally (the client then receives
identity); anything else the policy must read is refused, never passed on unread. The decoded size is capped,
so a small compressed body cannot expand into an unbounded one."""

from __future__ import annotations

import zlib

from extproc.errors import PayloadTooLarge


class Decoder:
    identity = False

    def __init__(self, wbits: int, limit: int) -> None:
        self._inflate = zlib.decompressobj(wbits)
        self._limit = limit
        self._total = 0

    def feed(self, data: bytes, final: bool) -> bytes:
        try:
            out = self._inflate.decompress(data, self._limit + 1 - self._total)
            if final:
                out += self._inflate.flush()
        except zlib.error:
            raise PayloadTooLarge("the upstream response is not valid compressed data",
                                  code="response_encoded") from None
        self._total += len(out)
        if self._total > self._limit or self._inflate.unconsumed_tail:
            raise PayloadTooLarge(f"decoded response is larger than {self._limit} bytes",
                                  code="response_too_large")
        return out


class Identity(Decoder):
    identity = True

    def __init__(self) -> None:
        pass

    def feed(self, data: bytes, final: bool) -> bytes:
        return data


# zlib wbits: 16+15 reads a gzip wrapper, 32+15 detects zlib or gzip (servers send either as "deflate").
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 47}


def decoder_for(encoding: str, limit: int) -> Decoder | None:
    """A decoder for a `content-encoding` value, Identity() when there is none, None when unreadable
    (br, zstd, several codings stacked)."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return Identity()
    wbits = _WBITS.get(coding)
    return Decoder(wbits, limit) if wbits is not None else None
