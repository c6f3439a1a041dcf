"""One canonical reading of JSON: what no two real parsers could read differently, or a refusal.

Model servers decode bodies with lenient parsers: Go's `encoding/json` (Ollama) matches object keys to struct
fields case-insensitively, with Unicode simple folding (`ſ` -> `s`, `K` (Kelvin) -> `k`), and the last of
duplicate keys wins; Python's `json` (pydantic, FastAPI, the SDKs) also keeps the last duplicate. A gateway
that reads `model` while the server reads `Model` inspects a different request than the one served. So:

* a BOM, invalid UTF-8, lone surrogates, `NaN`/`Infinity` and trailing garbage are refused (orjson's rules);
* an object with two keys that are equal after case folding (exact duplicates included) is refused;
* a key that folds to a field name an LLM API knows but is not spelled exactly like it is refused
  (`Messages`, `MODEL`, `ſtream`), except under `properties` (JSON Schema property names are free);
* nesting deeper than `MAX_DEPTH` is refused.

Numbers keep their spelling: integers and floats are `int`/`float` subclasses that remember their source text,
and `dumps` writes that text back, so a rewrite changes only what it redacts (`1E2` stays `1E2`, a 30-digit
integer stays exact).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

MAX_DEPTH = 64

# Field names of the API shapes we serve (requests and responses): case variants of these are refused.
KNOWN_KEYS = frozenset((
    "model", "messages", "role", "content", "prompt", "system", "template", "suffix", "raw", "stream",
    "stream_options", "include_usage", "tools", "tool_calls", "tool_choice", "tool_call_id", "tool_use_id",
    "tool_name", "function", "functions", "function_call", "name", "arguments", "input", "instructions",
    "parameters", "input_schema", "description", "type", "text", "image_url", "images", "url", "source",
    "data", "options", "format", "response_format", "keep_alive", "context", "think", "thinking",
    "reasoning", "reasoning_content", "refusal", "max_tokens", "max_completion_tokens", "max_output_tokens",
    "num_predict", "num_ctx", "stop", "stop_sequences", "n", "temperature", "top_p", "top_k", "seed", "user",
    "metadata", "previous_response_id", "store", "choices", "delta", "message", "response", "output",
    "done", "done_reason", "usage", "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
    "total_tokens", "eval_count", "prompt_eval_count", "finish_reason", "stop_reason", "index", "id",
    "object", "created", "embeddings", "embedding", "encoding_format", "dimensions", "parallel_tool_calls",
    "allowed_tools", "mode", "schema", "partial_json", "signature", "error", "logprobs", "cache_control",
    "content_block", "system_fingerprint", "service_tier", "stop_sequence", "created_at", "status",
))
_KNOWN_FOLDS = {key.casefold(): key for key in KNOWN_KEYS}
SCHEMA_MAPS = frozenset(("properties", "patternProperties", "$defs", "definitions"))


class Ambiguous(ValueError):
    """The document could be read differently by another parser; the message says where, never the value."""


class RawInt(int):
    raw: str


class RawFloat(float):
    raw: str


def _raw_int(text: str) -> int:
    value = RawInt(text)
    value.raw = text
    return value


def _raw_float(text: str) -> float:
    value = RawFloat(text)
    value.raw = text
    return value


def _no_constant(name: str) -> Any:
    raise Ambiguous(f"`{name}` is not JSON")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, str] = {}
    for key, _ in pairs:
        folded = key.casefold()
        if folded in seen:
            raise Ambiguous(f"duplicate key `{_shown(key)}` (keys are compared case-insensitively)")
        seen[folded] = key
    return dict(pairs)


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_raw_int, parse_float=_raw_float,
                            parse_constant=_no_constant)


def loads(body: bytes | str) -> Any:
    """The document, or `Ambiguous` / `ValueError` (not JSON) with a message safe to show the client."""
    try:
        orjson.loads(body)  # BOM, invalid UTF-8, lone surrogates, NaN, trailing data: refused here, fast
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({str(exc).split(':')[0]})") from None
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    try:
        doc = _DECODER.decode(text)
    except RecursionError:
        raise Ambiguous(f"nested deeper than {MAX_DEPTH} levels") from None
    check_keys(doc)
    return doc


def check_keys(doc: Any) -> None:
    """Refuse case variants of known field names and nesting deeper than MAX_DEPTH (iteratively)."""
    stack: list[tuple[Any, int, bool]] = [(doc, 1, False)]
    while stack:
        node, depth, free_keys = stack.pop()
        if depth > MAX_DEPTH:
            raise Ambiguous(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key, value in node.items():
                if not free_keys:
                    _check_key(key)
                if isinstance(value, (dict, list)):
                    stack.append((value, depth + 1, key in SCHEMA_MAPS and isinstance(value, dict)))
        elif isinstance(node, list):
            stack.extend((item, depth + 1, False) for item in node if isinstance(item, (dict, list)))


def _check_key(key: str) -> None:
    known = _KNOWN_FOLDS.get(key.casefold())
    if known is not None and known != key:
        raise Ambiguous(f"key `{_shown(key)}` is a case variant of `{known}`; field names are case-sensitive")


def _shown(key: str) -> str:
    return key if len(key) <= 40 and key.isprintable() else key[:40].encode("unicode_escape").decode() + "..."


def _fragment(value: Any) -> Any:
    if isinstance(value, (RawInt, RawFloat)):
        return orjson.Fragment(value.raw)
    raise TypeError(type(value).__name__)


def dumps(doc: Any) -> bytes:
    """Serialise a document read by `loads`, numbers in their original spelling."""
    return orjson.dumps(doc, default=_fragment, option=orjson.OPT_PASSTHROUGH_SUBCLASS)
