"""Host names as browsers resolve them (WHATWG), and the allowlist entries they are compared with."""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote_to_bytes

_FORBIDDEN_HOST = frozenset("\x00\t\n\r #%/:<>?@[\\]^|\x7f" + "".join(map(chr, range(0x20))))
_IDNA_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")  # IDNA 2003 and browsers' UTS 46 disagree


def normalize_allowed(value: str) -> str:
    """An `allowed_domains` entry in the form hosts are compared in; ValueError says what is wrong."""
    entry = value.strip().lower()
    wildcard = entry.startswith("*.")
    host = entry[2:] if wildcard else entry
    if not host or "*" in host or any(c in host for c in "/@ \t?#\\"):
        raise ValueError(f"allowed domain {value!r} must be a host name (`example.com`) or `*.example.com`")
    if ":" in host and not host.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(f"allowed domain {value!r} must not carry a port or scheme") from None
    normalized = normalize_host(host)
    if normalized is None:
        raise ValueError(f"allowed domain {value!r} is not a valid host name")
    if wildcard and (normalized.startswith("[") or _is_ipv4(normalized)):
        raise ValueError(f"allowed domain {value!r}: wildcards apply to domain names, not IP addresses")
    return ("*." if wildcard else "") + normalized


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def normalize_host(host: str) -> str | None:
    """The host as browsers resolve it (lower-case ASCII, IDNA, IPv4 canonical), or None if it cannot be."""
    if not host:
        return None
    if host.startswith("["):
        return _ipv6(host)
    try:
        decoded = unquote_to_bytes(host).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(char in _FORBIDDEN_HOST or char in _IDNA_DEVIATIONS for char in decoded):
        return None
    try:
        ascii_host = decoded.lower().encode("idna").decode("ascii").lower()
    except (UnicodeError, ValueError):
        return None
    ascii_host = ascii_host.removesuffix(".")
    labels = ascii_host.split(".")
    if not ascii_host or "" in labels or any(c in _FORBIDDEN_HOST for c in ascii_host):
        return None
    last = labels[-1]
    if last.isdigit() or (last[:2] == "0x" and all(c in "0123456789abcdef" for c in last[2:])):
        return _ipv4(labels)
    return ascii_host


def _ipv6(host: str) -> str | None:
    """`[...]` compressed, or None."""
    if not host.endswith("]"):
        return None
    try:
        return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
    except ValueError:
        return None


def _ipv4(labels: list[str]) -> str | None:
    """WHATWG IPv4 parser: 1-4 parts, each decimal, octal (leading 0) or hex (0x)."""
    if len(labels) > 4:
        return None
    numbers = []
    for label in labels:
        try:
            numbers.append(_ipv4_number(label))
        except ValueError:
            return None
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value += number * 256 ** (3 - index)
    return str(ipaddress.IPv4Address(value))


def _ipv4_number(label: str) -> int:
    if label[:2] == "0x":
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label[0] == "0":
        return int(label, 8)
    return int(label, 10)
