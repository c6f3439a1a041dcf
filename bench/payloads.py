"""What the benchmark sends and what its upstream answers: realistic OpenAI chat bodies, SSE streams, and the
leak-check streams with planted secrets / e-mail addresses split across events.

Everything here is deterministic (seeded), so the upstream process and the client build the same stream
from the same seed and the client knows exactly which text it should receive.
"""

from __future__ import annotations

import json
import random
import re
import string
import zlib
from dataclasses import dataclass, field

MODEL = "gpt-4o-mini"
MODEL_SERVED = "gpt-4o-mini-2024-07-18"
CREATED = 1718000000
FINGERPRINT = "fp_0aa8d3e20b"
STREAM_EVENTS = 200  # records per benchmark stream, `data: [DONE]` included

# Clean prose: letters and punctuation only. No digits (phone / card / IBAN / id detectors), no "@" (e-mail),
# no instruction-like phrasing (prompt injection), so a correct policy leaves it byte-for-byte unchanged.
_SENTENCES = [
    "The service reads each request before the model sees it and answers with a short decision.",
    "Envoy keeps routing, retries and timeouts, while the policy lives in one small file.",
    "Streaming answers keep flowing to the client, and only a short tail is held back while it is checked.",
    "A good deployment runs one process per core and lets the proxy spread the streams evenly.",
    "Most requests are small chat prompts with a system message and a single user question.",
    "When nothing in the answer needs inspection, the proxy stops sending it to the service at all.",
    "The team measured the added latency at one connection and the throughput at sixteen connections.",
    "Please summarise the design document in plain words and list the open questions at the end.",
    "Latency matters most for the first token, because that is what a person waits for on screen.",
    "The cluster has a few nodes, each with a modest amount of memory and a fast local disk.",
    "Our release notes explain the new configuration keys and how the defaults were chosen.",
    "Readers asked for a shorter overview, so the introduction now fits on a single page.",
    "Good tests describe the behaviour a user relies on rather than the shape of the code.",
    "The gateway writes one audit line per exchange with digests instead of the original text.",
    "Caching the compiled rules avoids repeated work when many short requests arrive together.",
    "Operators can switch a rule to monitor mode first and enforce it once the numbers look right.",
]

SYSTEM_PROMPT = "You are a concise assistant for a platform engineering team. Answer in short paragraphs."


def prose(rng: random.Random, n_chars: int) -> str:
    """Clean English text of exactly `n_chars` characters (n_chars >= 1)."""
    parts: list[str] = []
    size = -1  # the first sentence has no separating space
    while size < n_chars:
        sentence = rng.choice(_SENTENCES)
        parts.append(sentence)
        size += len(sentence) + 1
    text = " ".join(parts)[:n_chars]
    return text[:-1] + "." if text.endswith(" ") else text


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _fit(build, size: int) -> bytes:  # type: ignore[no-untyped-def]
    """build(text) -> bytes; pick the prose length so the result is exactly `size` bytes (ASCII prose)."""
    overhead = len(build(""))
    body = build(prose(random.Random(size), max(size - overhead, 1)))
    return body


def chat_request(size: int, stream: bool = False, user_text: str | None = None) -> bytes:
    """An OpenAI chat completion request of `size` bytes (system + user message, sampling parameters)."""

    def build(text: str) -> bytes:
        doc = {"model": MODEL, "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                            {"role": "user", "content": text}],
               "temperature": 0.7, "max_tokens": 1024, "stream": stream}
        return _dumps(doc)

    return build(user_text) if user_text is not None else _fit(build, size)


def chat_response(size: int, content: str | None = None) -> bytes:
    """An OpenAI chat.completion response of `size` bytes."""

    def build(text: str) -> bytes:
        doc = {"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion", "created": CREATED,
               "model": MODEL_SERVED,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                            "logprobs": None, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 212, "completion_tokens": 187, "total_tokens": 399,
                         "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                         "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                       "accepted_prediction_tokens": 0,
                                                       "rejected_prediction_tokens": 0}},
               "service_tier": "default", "system_fingerprint": FINGERPRINT}
        return _dumps(doc)

    return build(content) if content is not None else _fit(build, size)


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    doc = {"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk", "created": CREATED,
           "model": MODEL_SERVED, "service_tier": "default", "system_fingerprint": FINGERPRINT,
           "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    return b"data: " + _dumps(doc) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def sse_records(tokens: list[str]) -> list[bytes]:
    """SSE records of an OpenAI stream: role, one record per token, finish, [DONE]."""
    return ([_chunk({"role": "assistant", "content": "", "refusal": None})]
            + [_chunk({"content": token}) for token in tokens]
            + [_chunk({}, finish="stop"), DONE])


def tokens_of(text: str) -> list[str]:
    """Split text into word-sized tokens the way an LLM streams them (leading space kept with the word)."""
    tokens = re.findall(r"\s*\S+", text)
    tail = text[len(text.rstrip()):]
    if tail and tokens:
        tokens[-1] += tail
    elif tail:
        tokens = [tail]
    return tokens


def bench_stream(events: int = STREAM_EVENTS) -> list[bytes]:
    """The benchmark stream: `events` records in all (role + tokens + finish + [DONE])."""
    rng = random.Random(events)
    tokens: list[str] = []
    while len(tokens) < events - 3:
        tokens.extend(tokens_of(" " + prose(rng, 400)))
    return sse_records(tokens[: events - 3])


# ---- leak check -------------------------------------------------------------------------------------------

_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_URLSAFE = string.ascii_letters + string.digits + "_-"
_FIRST = ["jane", "omar", "li", "maria", "kofi", "anna", "rahul", "sofia", "tom", "yuki"]
_LAST = ["doe", "haddad", "wei", "garcia", "mensah", "novak", "iyer", "rossi", "baker", "sato"]
_DOMAINS = ["mail.acme-corp.com", "example.org", "contoso.io", "dept.university.edu", "corp.fabrikam.net"]


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def openai_key(rng: random.Random) -> str:
    """`sk-proj-` project key: 74 url-safe characters, the `T3BlbkFJ` marker, 74 more (real keys' layout)."""
    return "sk-proj-" + _rand(rng, _URLSAFE, 74) + "T3BlbkFJ" + _rand(rng, _URLSAFE, 74)


def aws_key(rng: random.Random) -> str:
    """AWS access key id: `AKIA` + 16 base32 characters."""
    return "AKIA" + _rand(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)


def _base62(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = _B62[r] + out
    return out.rjust(width, "0")


def github_token(rng: random.Random) -> str:
    """GitHub classic PAT: `ghp_` + 30 base62 characters + their CRC32 in 6 base62 characters."""
    body = _rand(rng, _B62, 30)
    return "ghp_" + body + _base62(zlib.crc32(body.encode()), 6)


def email_address(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}{rng.randint(2, 99)}@{rng.choice(_DOMAINS)}"


PLANTERS = {"openai_key": (openai_key, "Use the project key {} for the staging deployment."),
            "aws_key": (aws_key, "The access key id is {} and it belongs to the build role."),
            "github_token": (github_token, "Clone it with the token {} then rotate it."),
            "email": (email_address, "Send the report to {} before the review.")}
LEAK_MODES = ("sse-b2b", "sse-paced", "sse-split", "json")
PLACEHOLDER = r"\[[A-Z0-9_:.\-]+\]"


@dataclass
class LeakCase:
    seed: int
    mode: str  # sse-b2b | sse-paced | sse-split (events cut in two TCP writes) | json (buffered response)
    pieces: list[tuple[str, str | None]]  # (text, planted kind or None for clean text), in order
    tokens: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.pieces)

    @property
    def planted(self) -> list[tuple[str, str]]:
        return [(kind, text) for text, kind in self.pieces if kind is not None]

    def records(self) -> list[bytes]:
        return sse_records(self.tokens)

    def response_body(self) -> bytes:
        return chat_response(0, content=self.text)

    def request_body(self) -> bytes:
        return chat_request(0, stream=self.mode != "json", user_text="Write the deployment notes for the team.")


def leak_case(seed: int) -> LeakCase:
    """About 200 events of clean prose; half of the cases plant 1-4 secrets / e-mail addresses, each split
    into 2-5 pieces that go out in consecutive events (the first piece sometimes glued to the word before)."""
    rng = random.Random(seed * 7919 + 1)
    mode = LEAK_MODES[seed % len(LEAK_MODES)]
    planted_kinds = rng.sample(sorted(PLANTERS), rng.randint(1, 4)) if (seed // len(LEAK_MODES)) % 2 == 0 else []
    pieces: list[tuple[str, str | None]] = []
    tokens: list[str] = []

    def clean(text: str) -> None:
        pieces.append((text, None))
        tokens.extend(tokens_of(text))

    clean(prose(rng, rng.randint(150, 350)))
    for kind in planted_kinds:
        make, template = PLANTERS[kind]
        value = make(rng)
        before, after = template.split("{}")
        clean(" " + before)
        pieces.append((value, kind))
        cuts = sorted(rng.sample(range(1, len(value)), rng.randint(1, 4)))
        split = [value[i:j] for i, j in zip([0, *cuts], [*cuts, len(value)])]
        if rng.random() < 0.5 and tokens:  # glue the first piece to the word before it
            tokens[-1] += split.pop(0)
        tokens.extend(split)
        pieces.append((after, None))
        tokens.extend(tokens_of(after))
        clean(" " + prose(rng, rng.randint(80, 200)))
    while len(tokens) < STREAM_EVENTS - 3:
        clean(" " + prose(rng, 120))
    if "".join(tokens) != "".join(t for t, _ in pieces):
        raise AssertionError("leak case tokens do not reassemble to its text")
    return LeakCase(seed, mode, pieces, tokens)


@dataclass
class LeakResult:
    planted: int = 0
    leaked: int = 0
    altered: int = 0  # responses whose clean text differs from the expected (redacted) text
    failed: int = 0  # responses that were not a complete 200 stream / JSON body
    notes: list[str] = field(default_factory=list)


def count_leaks(case: LeakCase, received: str, result: LeakResult) -> None:
    """Count the planted values (whole, or any 6-character window of them not in the clean text) in `received`."""
    expected_clean = "".join(text for text, kind in case.pieces if kind is None)
    result.planted += len(case.planted)
    for kind, value in case.planted:
        windows = {value[i:i + 6] for i in range(len(value) - 5)}
        windows = {w for w in windows if w not in expected_clean and not any(w in p for p in _PREFIXES)}
        if value in received or any(w in received for w in windows):
            result.leaked += 1
            result.notes.append(f"seed {case.seed} ({case.mode}): {kind} reached the client")


def check_leak(case: LeakCase, received: str, result: LeakResult) -> None:
    """Compare the client-reassembled text with the planted case.

    Expected: every clean piece byte-for-byte, every planted value replaced by a placeholder. A planted value
    leaked if it, or any 6-character window of it that does not occur in the clean text anyway, reached the
    client (so a value released piece by piece before the decision also counts)."""
    count_leaks(case, received, result)
    pattern = "".join(re.escape(text) if kind is None else "(.*?)" for text, kind in case.pieces)
    match = re.fullmatch(pattern, received, re.DOTALL)
    if match is None:
        result.altered += 1
        at = next((i for i, (a, b) in enumerate(zip(received, case.text)) if a != b), min(len(received),
                                                                                         len(case.text)))
        result.notes.append(f"seed {case.seed} ({case.mode}): clean text altered near offset {at}: "
                            f"got {received[max(0, at - 20):at + 40]!r}")
        return
    for group, (kind, value) in zip(match.groups(), case.planted):
        if group != value and not re.fullmatch(PLACEHOLDER, group):
            result.notes.append(f"seed {case.seed}: {kind} replaced by {group[:40]!r}, not a placeholder")


def check_reply(case: LeakCase, status: int, body: bytes, result: LeakResult) -> str | None:
    """Check one reply to a leak case: the client-visible text against the case, or, when the reply is not a
    complete 200 answer, its raw body for leaks. Returns why it failed (also counted and noted), else None."""
    try:
        text = _reply_text(case, status, body)
    except (ValueError, KeyError, IndexError) as exc:
        reason = f"seed {case.seed} ({case.mode}): {exc}"
        result.failed += 1
        result.notes.append(reason)
        count_leaks(case, body.decode("utf-8", "replace"), result)
        return reason
    check_leak(case, text, result)
    return None


def _reply_text(case: LeakCase, status: int, body: bytes) -> str:
    if status != 200:
        raise ValueError(f"status {status}")
    if case.mode == "json":
        return json.loads(body)["choices"][0]["message"]["content"]
    text, done, error = sse_text(body)
    if error or not done:
        raise ValueError(f"stream ended with error event {error}" if error else "no [DONE]")
    return text


_PREFIXES = ("sk-proj-", "AKIA", "ghp_", "T3BlbkFJ")


def sse_text(body: bytes) -> tuple[str, bool, str | None]:
    """(reassembled delta content of choice 0, saw [DONE], the error event if any) of an OpenAI SSE body."""
    text: list[str] = []
    done = False
    error = None
    for record in body.split(b"\n\n"):
        for line in record.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            doc = json.loads(data)
            if "error" in doc:
                error = json.dumps(doc["error"])[:300]
            for choice in doc.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if isinstance(content, str):
                    text.append(content)
    return "".join(text), done, error


def first_text_offset(body: bytes) -> int | None:
    """Offset in the SSE body just past the first record that carries non-empty content text."""
    offset = 0
    for record in body.split(b"\n\n"):
        end = offset + len(record) + 2
        if b'"content":"' in record and b'"content":""' not in record:
            return min(end, len(body))
        offset = end
    return None
