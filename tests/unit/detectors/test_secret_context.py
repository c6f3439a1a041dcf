"""The long tail of the `secrets` detector: keyword context in prose (within a sentence, across a line break,
across stream events), placeholders, the table of prefixed formats, lone PEM lines, and the work per
character (counted, not timed). Values are random at run time; nothing here is a real credential."""

from __future__ import annotations

import random
import string

import pytest
from policies import policy
from sse import openai_stream, openai_text

from extproc import shapes
from extproc.detectors.secret_catalog import TABLE_RULES
from extproc.detectors.secret_formats import FORMATS, PREFIXES
from extproc.detectors.secrets import SecretsDetector
from extproc.stream_scan import StreamScanner

RNG = random.Random(1515)
ALNUM, HEX, B64 = string.ascii_letters + string.digits, "0123456789abcdef", string.ascii_letters + string.digits + "+/"


def r(alphabet: str, size: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(size))


def aws_secret() -> str:
    return r(ALNUM, 12) + "/K7" + r(ALNUM, 10) + "+b" + r(ALNUM, 13)  # 40 characters, like AWS's


def found(text: str) -> list[tuple[str, str]]:
    return [(f.label, text[f.start : f.end]) for f in SecretsDetector().find(text)]


# ---- keyword context in prose --------------------------------------------------------------------------

PROSE = [
    "AWS secret access key: {}",
    "Log in with secret {} and the usual user.",
    "The deploy token is {} (rotate it monthly).",
    "Here is the staging API key:\n{}\nKeep it safe.",
    "eventbrite private access key\n{}",
    "Set boxSECRET {} in the panel.",
    "tomtom_access_token={}",
    "fbApiKey:            \"{}\",",
]


@pytest.mark.parametrize("template", PROSE)
def test_a_secret_written_in_prose_is_found_exactly(template):
    value = aws_secret()
    text = template.format(value)
    assert value in [v for _, v in found(text)], found(text)


@pytest.mark.parametrize("text", [
    "The key insight is that caching matters; the key difference between them is latency.",
    "Grant access permissions to the documentation team and keep the secret garden private.",
    "A token of appreciation: the password reset flow sends an email with instructions.",
    "The key is invalid123 and the token was v2 of the protocol, access level 3.",
    "-----BEGIN PUBLIC KEY-----\n" + r(B64, 64) + "\n-----END PUBLIC KEY-----",
    "max_tokens: 4096, key_id: 1234567890abcdef12, public_key: " + r(ALNUM, 30),
    # code: identifiers made of words after a secret word are names, not values
    "class OpenTelemetryAccessLogConfig(betterproto2.Message):\n    pass",
    "credential: ____transport_sockets__tls__v3__.SdsSecretConfig",
    "token = OAuth2Credentials(base64.urlsafe_b64encode(secret_bytes))",
    '__all__ = ["AccessTokenProvider", "SecretsManagerClient2", "PrivateKeyLoader"]',
    "- HTTP: `PATCH /v1/messages/123456` updates a message.",
])
def test_prose_that_merely_mentions_keys_is_not_a_secret(text):
    assert found(text) == []


def test_keyword_context_respects_the_entropy_floor():
    text = "the API token is " + "ab12" * 6
    assert found(text) == []  # 2 bits per character: a pattern, not a key
    assert found("the API token is " + r(ALNUM, 24))


# ---- placeholders: one rule for every kind of rule ---------------------------------------------------------

@pytest.mark.parametrize("template", [
    "tvly-{}", "sk-proj-{}", "AWS secret access key: {}", 'password = "{}"', "the API token is {}",
])
@pytest.mark.parametrize("stand_in", ["x" * 32, "EXAMPLE" + "7" * 25, "your-api-key-here-0123456789abcdef", "0" * 32])
def test_placeholders_are_never_reported_while_the_real_thing_is(template, stand_in):
    assert found(template.format(stand_in)) == []
    assert found(template.format(r(ALNUM, 24) + "7" + r(ALNUM, 7)))


# ---- the table of prefixed formats ---------------------------------------------------------------------

@pytest.mark.parametrize("token, label", [
    ("aio_" + r(ALNUM, 28), "adafruit_io_key"),
    ("squ_" + r(HEX, 40), "sonarqube_token"),
    ("nvapi-" + r(ALNUM + "_-", 63) + "Z", "nvidia_api_key"),
    ("dt0c01." + r(string.ascii_uppercase + string.digits, 24) + "." + r(string.ascii_uppercase, 64), "dynatrace_token"),
    ("1000." + r(HEX, 32) + "." + r(HEX, 32), "zoho_token"),
    ("live_" + r(string.digits, 9) + "_" + r(ALNUM, 30), "twitch_stream_key"),
    ("SWMTKN-1-" + r(HEX, 50) + "-" + r(HEX, 25), "docker_swarm_token"),
    ("pcsk_" + r(ALNUM, 5) + "_" + r(ALNUM, 65), "pinecone_api_key"),
])
def test_a_sample_of_table_formats(token, label):
    assert found(f"config: {token} end") == [(label, token)]


def test_a_table_format_checks_length_and_boundary():
    assert found("aio_" + r(ALNUM, 27)) == [] and found("aio_" + r(ALNUM, 29)) == []
    assert found("xaio_" + r(ALNUM, 28)) == []  # glued to a word: not a token start


def test_every_table_row_has_a_valid_pattern_and_the_rows_share_a_handful_of_rules():
    assert len(PREFIXES) > 100 and len({row[0] for row in FORMATS}) > 70
    assert len(TABLE_RULES) <= 8  # one RE2 pass per group of alphabet and length, not one per provider


# ---- lone PEM body lines ---------------------------------------------------------------------------------

def test_a_lone_line_of_a_key_body_is_a_fragment_but_not_inside_a_certificate():
    line = "Mx9" + r(B64, 61)
    assert found(f"#6 0.245 {line}\n") == [("private_key_fragment", line)]
    assert found(f'    + "{line}\\n"\n') == [("private_key_fragment", line)]
    cert = f"-----BEGIN CERTIFICATE-----\n{line}\n{line[::-1]}\n-----END CERTIFICATE-----\n"
    assert found(cert) == [] and found(cert + line) == [("private_key_fragment", line)]
    assert found(r(HEX, 64)) == []  # a SHA-256 digest: 4 bits per character


# ---- across stream events -----------------------------------------------------------------------------------

SECRETS_POLICY = "version: 1\nrules:\n  - {id: keys, detector: secrets, direction: response, action: redact}\n"


def stream_through(pieces: list[str]) -> tuple[str, list[str]]:
    compiled = policy(SECRETS_POLICY)
    scanner = StreamScanner(shapes.all_shapes()["openai_chat"], "sse", compiled._by_direction["response"],
                            65536, "fail_closed")
    records = [rec + b"\n\n" for rec in openai_stream(pieces).split(b"\n\n") if rec]
    out = b"".join(scanner.push(rec) for rec in records[:-1]) + scanner.finish(records[-1])
    return openai_text(out), [h.finding.label for h in scanner.hits]


@pytest.mark.parametrize("split", [
    lambda v: ["Use the AWS secret access key:", " ", v, " to sign in."],  # keyword, then the value
    lambda v: ["Use the AWS secret ", "access key: " + v[:9], v[9:25], v[25:] + " to sign in."],
    lambda v: ["The deploy token is\n", v[:20], v[20:], "\nDone."],  # across a line break
    lambda v: [c for c in f"with secret {v} ok"],  # one character per event
])
def test_a_keyword_in_one_event_and_the_value_in_the_next_is_redacted(split):
    value = aws_secret()
    text, labels = stream_through(split(value))
    assert value[:8] not in text and value[-8:] not in text
    assert labels and set(labels) <= {"keyword_secret", "generic_secret_assignment"}


def test_a_streamed_prose_answer_without_secrets_is_unchanged():
    answer = "The key insight: access tokens expire, so refresh them.\nThe secret is patience. " * 3
    pieces = [answer[i : i + 5] for i in range(0, len(answer), 5)]
    assert stream_through(pieces) == (answer, [])


# ---- work per character, counted --------------------------------------------------------------------------

def counted_scans(text: str) -> tuple[int, int]:
    """(rule passes over the text, checks run) for one `find`."""
    detector, counts = SecretsDetector(), [0, 0]
    scan = detector._scan

    def counting(compiled, data):
        counts[0] += 1
        check = compiled.rule.check
        if check is not None:
            def wrapped(groups, params, check=check):
                counts[1] += 1
                return check(groups, params)
            compiled = type(compiled)(**{**compiled.__dict__, "rule": type(compiled.rule)(
                **{**compiled.rule.__dict__, "check": wrapped})})
        return scan(compiled, data)

    detector._scan = counting
    detector.find(text)
    return counts[0], counts[1]


@pytest.mark.parametrize("unit", [
    " ".join(p + "a1B2c3d4e5" for p in PREFIXES) + " ",  # every table prefix at once
    "ghp_" * 50, "key: " + "a1B2" * 4 + " ", "key secret token password access private auth ", "sk-" * 40,
])
def test_work_is_one_pass_per_rule_and_checks_grow_linearly(unit):
    text = unit * 40
    passes, checks = counted_scans(text)
    double_passes, double_checks = counted_scans(text * 2)
    assert passes == double_passes <= 12  # a fixed number of RE2 passes, whatever the input
    assert double_checks <= 2 * checks + 2 and checks <= len(text) / 8  # each check needs 8+ new characters


def test_the_hold_keeps_a_long_lead_in_when_the_text_ends_right_after_its_anchor():
    token = r(ALNUM, 76) + "AZDO" + r(ALNUM, 4)  # an Azure DevOps PAT: 76 characters before its marker
    text = f"Here: {token} end"
    cut = text.index("AZDO") + len("AZDO")
    assert SecretsDetector().hold(text[:cut]) >= 80
    assert found(text) == [("azure_devops_pat", token)]
