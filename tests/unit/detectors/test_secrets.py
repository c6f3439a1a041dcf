"""The `secrets` detector: a synthetic positive per label, hard negatives, exact offsets, params, and property
tests that the prefilter and the streaming hold are sound. Tokens are generated at run time from each public
format (random characters, valid checksums), so this file holds no credential-shaped literals."""

from __future__ import annotations

import base64
import json
import random
import string
import zlib

import pytest
import re2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from extproc.detectors import get
from extproc.detectors.secret_catalog import ALL_LABELS as LABELS
from extproc.detectors.secret_catalog import RULES
from extproc.detectors.secret_formats import FORMATS, parts
from extproc.detectors.secret_hold import FOLD
from extproc.detectors.secrets import SecretsDetector, SecretsParams

RNG = random.Random(20240607)
ALNUM, UPPER, LOWER = string.ascii_letters + string.digits, string.ascii_uppercase, string.ascii_lowercase
HEX, DIGITS, B64, URL64 = "0123456789abcdef", string.digits, ALNUM + "+/", ALNUM + "-_"
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def r(alphabet: str, size: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(size))


def crc_token(prefix: str, valid: bool = True) -> str:
    body, check = r(ALNUM, 30), ""
    number = zlib.crc32(body.encode()) ^ (0 if valid else 1)
    while number:
        number, rest = divmod(number, 62)
        check = B62[rest] + check
    return prefix + body + check.rjust(6, "0")


def jwt() -> str:
    claims = ({"alg": "HS256", "typ": "JWT"}, {"sub": r(DIGITS, 10), "name": "Jane", "iat": 1700000000})
    parts = [base64.urlsafe_b64encode(json.dumps(c).encode()).decode().rstrip("=") for c in claims]
    return ".".join([*parts, r(URL64, 43)])


def pem(kind: str = "RSA ", headers: str = "", newline: str = "\n") -> str:
    lines = [r(B64, 64) for _ in range(6)] + [r(B64, 20) + "=="]
    return newline.join([f"-----BEGIN {kind}PRIVATE KEY-----", *([headers] if headers else []), *lines,
                         f"-----END {kind}PRIVATE KEY-----"])


def putty() -> str:
    return ("PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nComment: imported\nPublic-Lines: 2\n"
            f"{r(B64, 64)}\n{r(B64, 40)}\nPrivate-Lines: 2\n{r(B64, 64)}\n{r(B64, 30)}\n"
            f"Private-MAC: {r(HEX, 40)}")


# label: (prefix, alphabet, length) of a random token
SIMPLE = {
    "openai_api_key": ("sk-proj-", URL64, 156), "openrouter_api_key": ("sk-or-v1-", HEX, 64),
    "groq_api_key": ("gsk_", ALNUM, 52), "xai_api_key": ("xai-", ALNUM, 80), "twilio_key": ("SK", HEX, 32),
    "replicate_api_token": ("r8_", ALNUM, 37), "perplexity_api_key": ("pplx-", ALNUM, 48),
    "aws_access_key_id": ("AKIA", UPPER + "234567", 16), "gitlab_token": ("glpat-", URL64, 20),
    "huggingface_token": ("hf_", string.ascii_letters, 34), "gcp_api_key": ("AIza", URL64, 35),
    "gcp_oauth_client_secret": ("GOCSPX-", URL64, 28), "stripe_key": ("sk_live_", ALNUM, 99),
    "dockerhub_pat": ("dckr_pat_", URL64, 27), "pypi_token": ("pypi-AgEIcHlwaS5vcmc", URL64, 150),
    "digitalocean_token": ("dop_v1_", HEX, 64), "shopify_token": ("shpat_", HEX, 32),
    "sentry_token": ("sntryu_", HEX, 64), "vault_token": ("hvs.", ALNUM, 90),
    "linear_api_key": ("lin_api_", ALNUM, 40), "databricks_token": ("dapi", HEX, 32),
    "figma_token": ("figd_", URL64, 40), "mailgun_api_key": ("key-", HEX, 32),
    "square_token": ("sq0atp-", URL64, 22), "pulumi_token": ("pul-", HEX, 40),
    "rubygems_api_key": ("rubygems_", HEX, 48), "nuget_api_key": ("oy2", LOWER + DIGITS, 43),
    "doppler_token": ("dp.pt.", ALNUM, 43), "heroku_api_key": ("HRKU-", URL64, 60),
    "supabase_token": ("sbp_", HEX, 40), "planetscale_token": ("pscale_tkn_", URL64, 43),
    "newrelic_key": ("NRAK-", UPPER + DIGITS, 27), "onepassword_token": ("ops_eyJ", URL64, 200),
}
# label -> the secret, or (a template around it, the secret)
SAMPLES = {
    **{label: (lambda p=p, a=a, n=n: p + r(a, n)) for label, (p, a, n) in SIMPLE.items()},
    "anthropic_api_key": lambda: "sk-ant-api03-" + r(URL64, 93) + "AA",
    "aws_secret_access_key": lambda: ('aws_secret_access_key = "{}"', r(B64, 40)),
    "github_token": lambda: crc_token("ghp_"),
    "github_app_token": lambda: crc_token("ghs_"),
    "github_fine_grained_pat": lambda: "github_pat_" + r(ALNUM, 22) + "_" + r(ALNUM, 59),
    "gcp_service_account": lambda: ('{{"type": "x", "private_key_id": "{}"}}', r(HEX, 40)),
    "azure_storage_key": lambda: ("AccountName=acct;AccountKey={};EndpointSuffix=x", r(B64, 86) + "=="),
    "azure_connection_string": lambda: (("Endpoint=sb://n.servicebus.windows.net/;SharedAccessKeyName=Root;"
                                        "SharedAccessKey={}"), r(B64, 43) + "="),
    "slack_token": lambda: f"xoxb-{r(DIGITS, 12)}-{r(DIGITS, 13)}-{r(ALNUM, 24)}",
    "slack_webhook": lambda: f"hooks.slack.com/services/T{r(UPPER, 9)}/B{r(UPPER, 9)}/{r(ALNUM, 24)}",
    "sendgrid_key": lambda: f"SG.{r(URL64, 22)}.{r(URL64, 43)}",
    "npm_token": lambda: crc_token("npm_"),
    "jwt": jwt,
    "private_key": pem,
    "database_url": lambda: ("postgres://app:{}@db.internal:5432/app", r(ALNUM, 16)),
    "url_credentials": lambda: ("git clone https://deploy:{}@git.example.com/repo.git", r(ALNUM, 20)),
    "generic_secret_assignment": lambda: ('API_KEY="{}"', r(ALNUM, 32)),
    "atlassian_api_token": lambda: "ATATT3" + r(URL64, 180) + "=" + r(HEX.upper(), 8),
    "postman_api_key": lambda: f"PMAK-{r(HEX, 24)}-{r(HEX, 34)}",
    "grafana_token": lambda: f"glsa_{r(ALNUM, 32)}_{r(HEX, 8)}",
    "terraform_token": lambda: f"{r(ALNUM, 14)}.atlasv1.{r(URL64, 67)}",
    "notion_token": lambda: "ntn_" + r(DIGITS, 11) + r(ALNUM, 35),
    "telegram_bot_token": lambda: f"{r(DIGITS, 10)}:AA{r(URL64, 33)}",
    "okta_token": lambda: "SSWS 00" + r(URL64, 40),
    "netrc_credentials": lambda: ("machine api.host.net\n  login deploy\n  password {}\n", r(ALNUM, 16)),
    "powershell_secure_string": lambda: ('ConvertTo-SecureString "{}" -AsPlainText -Force', r(ALNUM, 16)),
    "mailchimp_api_key": lambda: r(HEX, 32) + "-us" + r(DIGITS, 2),
    "salesforce_token": lambda: "00D" + r(ALNUM, 12) + "!" + r(ALNUM, 90),
    "facebook_token": lambda: r(DIGITS, 15) + "|" + r(URL64, 26) + "Z",
    "azure_client_secret": lambda: r(ALNUM, 3) + "8Q~" + r(ALNUM, 34),
    "maxmind_license_key": lambda: r(ALNUM, 6) + "_" + r(ALNUM, 29) + "_mmk",
    "azure_devops_pat": lambda: r(ALNUM, 76) + "AZDO" + r(ALNUM, 4),
    "braintree_token": lambda: "access_token$production$" + r(LOWER + DIGITS, 16) + "$" + r(HEX, 32),
    "password_hash": lambda: "$2b$12$" + r(ALNUM + "./", 53),
    "keyword_secret": lambda: ("the deploy token is {}", r(ALNUM, 20) + "7a" + r(ALNUM, 18)),
    "private_key_fragment": lambda: ("\n  {}\n", "Ab1" + r(B64, 61)),
}


def table_token(label: str) -> str:
    """A random token of the first table row with this label, from its prefix and body parts."""
    _, prefixes, body, *_ = next(row for row in FORMATS if row[0] == label)
    out = [prefixes.split()[0]]
    for part in parts(body):
        if isinstance(part, str):
            out.append(part)
            continue
        chars = "".join(chr(c) for c in range(32, 127) if re2.fullmatch(f"[{part[0]}]", chr(c)))
        out.append(r(chars.replace("%", ""), RNG.randint(part[1], part[2])))
    return "".join(out)


for _label in dict.fromkeys(row[0] for row in FORMATS):
    SAMPLES.setdefault(_label, lambda label=_label: table_token(label))


def sample(label: str) -> tuple[str, str]:
    """(text, secret): the secret in its template, between two sentences."""
    made = SAMPLES[label]()
    template, secret = made if isinstance(made, tuple) else ("{}", made)
    return f"Here you go: {template.format(secret)} -- thanks.", secret


def labelled(text: str, label: str) -> list[tuple[int, int]]:
    return [(f.start, f.end) for f in SecretsDetector().find(text) if f.label == label]


@pytest.mark.parametrize("label", LABELS)
def test_positive_with_exact_span(label):
    text, secret = sample(label)
    start = text.index(secret)
    assert labelled(text, label) == [(start, start + len(secret))]


def test_re2_gives_character_offsets_and_so_do_findings():
    assert re2.compile("b+").search("ééé abbb").span() == (5, 8)  # characters, not UTF-8 bytes
    token = crc_token("ghp_")
    text = "日本語のテキスト 😀 é → " + token + " ünïcode after"
    [finding] = SecretsDetector().find(text)
    assert text[finding.start : finding.end] == token


@pytest.mark.parametrize("maker", [
    lambda: pem("", newline="\\n"),  # JSON-escaped, as in a service-account file
    lambda: pem("OPENSSH "), lambda: pem("EC "), lambda: pem("ENCRYPTED "),
    lambda: pem("PGP ").replace("KEY-", "KEY BLOCK-"),
    putty, lambda: "AGE-SECRET-KEY-1" + r(UPPER + DIGITS, 58),
    lambda: pem("RSA ", headers=f"Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,{r(HEX.upper(), 32)}\n"),
    lambda: "-----BEGIN PRIVATE KEY-----\n" + r(B64, 64) + "\n" + r(B64, 64),  # cut off before its end
])
def test_private_key_forms(maker):
    key = maker()
    text = f"const key = `{key}`;\nmore code"
    start = text.index(key)
    assert labelled(text, "private_key") == [(start, start + len(key))]


def test_checksum_raises_the_score_never_gates_and_specific_rules_win():
    [valid] = SecretsDetector().find(f"GITHUB_TOKEN={crc_token('ghp_')}")  # and not also the generic rule
    [invalid] = SecretsDetector().find(crc_token("ghp_", valid=False))
    assert valid.score == 1.0 and invalid.label == valid.label == "github_token" and invalid.score < 1.0


HARD_NEGATIVES = [
    f'"id": "{r(HEX, 8)}-{r(HEX, 4)}-{r(HEX, 4)}-{r(HEX, 4)}-{r(HEX, 12)}",',
    f"md5 {r(HEX, 32)} sha1 {r(HEX, 40)} sha256 {r(HEX, 64)}",
    f"commit {r(HEX, 40)}\nAuthor: Jane <jane@example.com>\n    Fix the tokenizer (#2135)",
    f'"integrity": "sha512-{r(B64, 86)}==",',
    f'"resolved": "https://registry.npmjs.org/x/-/x-1.0.0.tgz#{r(HEX, 40)}"',
    f"cloud.google.com/go v0.26.0/go.mod h1:{r(B64, 43)}=",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA" + base64.b64encode(RNG.randbytes(900)).decode(),
    "The tokenizer splits text into tokens; the password must be long and the secret is patience.",
    "Use scikit-learn (sk-learn) for risk-management; AKIA is not a word; ask the task-runner.",
    "tokenizer = AutoTokenizer.from_pretrained(name)\npassword = get_password()\nmax_tokens = 1024",
    'const token = await getToken();\napi_key = os.environ["OPENAI_API_KEY"]\nsecret = self.secret',
    'API_KEY=<your-api-key>\nPASSWORD=${DB_PASSWORD}\ntoken: "{{ vault_token }}"\npassword: "********"',
    '{"usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}, "type": "text"}',
    '"hashed_secret": "' + r(HEX, 40) + '", "next_page_token": "' + r(ALNUM, 24) + '"',
    "-----BEGIN CERTIFICATE-----\n" + r(B64, 64) + "\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\n" + r(B64, 64) + "\n-----END PUBLIC KEY-----",
    "See https://example.com/docs?page=2 and postgres://localhost:5432/app for details.",
    "amqps://username:$password@localhost:5672 and mongodb://user:<password>@host/db",
]


@pytest.mark.parametrize("text", HARD_NEGATIVES)
def test_hard_negatives(text):
    assert SecretsDetector().find(text) == []


@pytest.mark.parametrize("text, value", [
    ('password = "Hunter22!"', "Hunter22!"),
    ("DB_PASSWORD=s3cr3tP4ss", "s3cr3tP4ss"),
    ("curl -H 'Authorization: Bearer abcDEF123456ghiJKL' x", "abcDEF123456ghiJKL"),
    ('{"client_secret": "Zq8vL2mN4pR7sT1w"}', "Zq8vL2mN4pR7sT1w"),
    ("ALTER USER app IDENTIFIED BY 'Pa55w0rd!x';", "Pa55w0rd!x"),
    ("gpg --batch --passphrase N1DdkUD3E73 --decrypt f.gpg", "N1DdkUD3E73"),
    ("\\\"apiKey\\\": \\\"kT9dL3pQ8wZ2xV5n\\\"", "kT9dL3pQ8wZ2xV5n"),
])
def test_generic_assignments(text, value):
    start = text.index(value)
    assert labelled(text, "generic_secret_assignment") == [(start, start + len(value))]


def test_params_validate_labels_with_a_clear_error():
    with pytest.raises(ValidationError, match="unknown secret label.*nope.*known: openai_api_key"):
        SecretsParams(include=["openai_api_key", "nope"])
    with pytest.raises(ValidationError, match="unknown secret label"):
        SecretsParams(exclude=["JWT"])
    with pytest.raises(ValidationError):
        SecretsParams(min_entropy=3.0, typo=True)


def test_params_select_labels_and_tune_entropy():
    text = f"{crc_token('ghp_')} and AKIA{r(UPPER, 16)}"
    only = SecretsDetector(SecretsParams(include=["aws_access_key_id"])).find(text)
    without = SecretsDetector(SecretsParams(exclude=["aws_access_key_id"])).find(text)
    assert [f.label for f in only] == ["aws_access_key_id"] and [f.label for f in without] == ["github_token"]
    assert SecretsDetector(SecretsParams(include=[])).find(text) == []
    assert labelled('token = "Zq8vL2mN4pR7"', "generic_secret_assignment")
    assert SecretsDetector(SecretsParams(min_entropy=4.5)).find('token = "Zq8vL2mN4pR7"') == []


def test_registered_bounded_and_sampled():
    assert get("secrets") is SecretsDetector
    assert 1000 < SecretsDetector().max_span <= 16384
    ruled = {label for rule in RULES for label in (rule.label, *rule.labels)} - {"provider_token"}
    assert ruled | {"private_key_fragment"} == set(LABELS) == set(SAMPLES)


def test_hold_is_tight_on_prose_and_covers_unfinished_secrets():
    detector = SecretsDetector()
    prose = "The quick brown fox jumps over the lazy dog while a token of thanks is passed along. " * 5
    assert all(detector.hold(prose[:n]) <= 12 for n in range(0, len(prose), 7))
    assert detector.hold("see https://example.com/a/b and more text") <= 4
    assert detector.hold('the JSON: {"type": "text", "text": "hello"} ') == 0
    assert detector.hold("my key: sk-proj-" + r(URL64, 30)) >= len("sk-proj-") + 30
    assert detector.hold("password: Hun") == len("password: Hun")


@settings(max_examples=40, deadline=None)
@given(label=st.sampled_from(LABELS), noise=st.text(alphabet=string.printable, max_size=40))
def test_prefilter_never_hides_a_match(label, noise):
    """The `re2.Set` looks for each rule's needle (prefix, anchor, lead): every match must contain it."""
    detector, data = SecretsDetector(), (sample(label)[0] + noise + " password=Zq8vL2mN4p").encode()
    rules = [i for i in detector._prefilter.Match(data) or () if i < len(detector._rules)]  # not the lines
    assert sorted(f for i in rules for f in detector._scan(detector._rules[i], data)) == sorted(
        f for rule in detector._rules for f in detector._scan(rule, data))


# ---- hold soundness ---------------------------------------------------------------------------------------

WORDS = ["the", "token", "password", "key:", "=", "sk-", "AWS", "secret", "-----BEGIN", "https://", "eyJ",
         "\n", "été", "日本", "--", "api_key", "ghp_", "PaSſWoRD", "'", '"', "postgres", ":", "hf_", "\\n",
         "xoxb-", "DB_", "my.app.", "x"]
words = st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)


def check_sound(detector: SecretsDetector, text: str) -> None:
    """Each prefix text[:n]: full-text matches running past n start at or after n - hold(text[:n])."""
    full = detector.matches(text)
    for n in range(len(text) + 1):
        cut = n - detector.hold(text[:n])
        assert 0 <= cut <= n
        pending = [(f, context) for f, context in full if f.end > n]
        rescan = detector.find(text[cut:]) if pending else []
        covered = {i + cut for g in rescan for i in range(g.start, g.end)}
        for f, context in pending:
            assert context >= cut and covered.issuperset(range(f.start, f.end)), (text, n, f)


def check_streamed(detector: SecretsDetector, text: str, chunk: int) -> None:
    """What extproc.stream_scan does: release up to the hold, pulled back out of findings, and settle the
    findings that end before the boundary. Every finding of the full text must end up settled."""
    released, settled = 0, set()
    for end in [*range(chunk, len(text), chunk), len(text)]:
        boundary = end if end == len(text) else end - detector.hold(text[released:end])
        hits = [(released + f.start, released + f.end) for f in detector.find(text[released:end])]
        while any(start < boundary < stop for start, stop in hits):
            boundary = min(start for start, stop in hits if start < boundary < stop)
        settled.update(i for start, stop in hits if stop <= boundary for i in range(start, stop))
        released = max(released, boundary)
    assert all(settled.issuperset(range(f.start, f.end)) for f in detector.find(text)), text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=words, after=words, label=st.sampled_from(LABELS), seed=st.integers(0, 2**32))
def test_hold_is_sound(before, after, label, seed):
    RNG.seed(seed)
    keys = [pem(), putty(), pem("", newline="\\n")]
    secret = RNG.choice(keys) if label == "private_key" else sample(label)[0]
    check_sound(SecretsDetector(), f"{before} {secret}{after}")
    check_streamed(SecretsDetector(), f"{before} {secret}{after}", seed % 7 + 1)


SOUP = WORDS + [crc_token("ghp_"), "password=Zq8vL2mN4p", "AKIA" + "Q" * 16, "IDENTIFIED BY ", "Zq8vL2mN4p",
                "AWS secret access key: ", "with secret ", " is ", "Zq8vL2mN4pR7sT1wQa9xYb3K", "aio_", "SU",
                "Mx9" + r(B64, 61), "machine h login u password "]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(SOUP), max_size=20))
@example(["DB_", "password=Zq8vL2mN4p"])
@example(["x", "PaSſWoRD", "IDENTIFIED BY ", "Zq8vL2mN4p"])  # ſ folds to s in RE2 but is no key character
@example(['{"private_key_id": "' + r(HEX, 40) + '"}', " secret"])  # key and value must not be split
@example(["my.app.", "api_key", ":", "password=Zq8vL2mN4p", "\n"])
def test_hold_is_sound_on_keyword_soup(pieces):
    check_sound(SecretsDetector(), "".join(pieces))
    check_streamed(SecretsDetector(), "".join(pieces), 1 + len(pieces) % 5)


class _Always:
    """Stands in for the any-anchor RE2 check: always (or never) reports an anchor."""

    def __init__(self, found: bool) -> None:
        self.found = found

    def search(self, text: str) -> bool:
        return self.found


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(WORDS + ["model", "Caching", "rules."]), max_size=10).map(" ".join))
def test_the_no_anchor_fast_path_gives_the_full_hold(text):
    """Skipping the candidate search when no anchor occurs changes no hold: the slow path agrees."""
    fast, slow = SecretsDetector(), SecretsDetector()
    slow._hold.any_anchor = _Always(True)
    assert fast.hold(text) == slow.hold(text)


def test_the_anchor_check_must_not_skip_text_holding_an_anchor():
    skipping = SecretsDetector()
    skipping._hold.any_anchor = _Always(False)
    for text, held in (("password: Hun", "password: Hun"), ('export API_KEY="abc def', 'API_KEY="abc def'),
                       ("-----BEGIN RSA PRIVATE KEY-----\nMIIE", "-----BEGIN RSA PRIVATE KEY-----\nMIIE")):
        assert SecretsDetector().hold(text) == len(held) > skipping.hold(text)


def _partial_start_by_lookup(hold, text: str, fold: bool) -> int:
    """The definition: start of the longest suffix of `text` (folded for ignore-case) that is a partial."""
    hay = text.translate(FOLD) if fold else text
    for size in range(min(hold.longest, len(hay)), 0, -1):
        if hay[-size:] in hold.partials[fold]:
            return len(hay) - size
    return len(hay)


_PARTIAL_PIECES = sorted({p for parts in SecretsDetector()._hold.partials for p in parts})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcsSkKſKpP_-.: ", max_size=6), st.sampled_from(_PARTIAL_PIECES),
       st.sampled_from([str.lower, str.upper, str.title, str]))
def test_the_suffix_trie_finds_the_longest_partial_in_any_case(before, piece, case):
    """The reversed-partials trie (walked on the unfolded text) agrees with a lookup per suffix length."""
    hold = SecretsDetector()._hold
    text = before + case(piece)
    for fold in (False, True):
        assert hold._partial_start(text, fold) == _partial_start_by_lookup(hold, text, fold), (text, fold)
