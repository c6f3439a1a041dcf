"""Provider token formats with a literal prefix, as one table: the long tail of public credential formats.

Each row is a fact about a provider's token (label, prefixes, body, score), gathered from the providers'
documentation and public secret-scanning rule sets; no rule file was copied. A body is a space-separated
list of parts: `class:min[-max]` (a run of one alphabet) or a literal. All rows compile into ONE rule whose
anchor is the alternation of every prefix followed by a run of token characters, so the detector pays one
RE2 pass whatever the number of providers; `check` then looks the candidate's prefix up and validates the
body against the row's RE2 pattern, which also fixes where the token ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from extproc.detectors.patterns import compile_re2
from extproc.detectors.secret_values import is_placeholder

CLASSES = {
    "an": "A-Za-z0-9", "hx": "0-9a-f", "HX": "0-9A-F", "hX": "0-9a-fA-F", "up": "A-Z0-9", "lo": "a-z0-9",
    "u64": "A-Za-z0-9_-", "b64": "A-Za-z0-9+/", "b32": "A-Z2-7", "dg": "0-9", "eq": "=", "pct": "A-Za-z0-9%",
    "tok": "A-Za-z0-9_.-",
}
_UUID = "hx:8 - hx:4 - hx:4 - hx:4 - hx:12"
_PART = re.compile(r"^([A-Za-z0-9]+):(\d+)(?:-(\d+))?$")
# ordered: (label, prefixes, body[, score])
FORMATS: tuple[tuple[Any, ...], ...] = (
    ("adafruit_io_key", "aio_", "an:28"),
    ("airtable_token", "pat", "an:14 . hx:64"),
    ("akamai_token", "akab-", "lo:16 - lo:16"),
    ("alibaba_access_key", "LTAI", "an:12-20", 0.8),
    ("amazon_bedrock_key", "ABSK", "b64:100-200 eq:0-2"),
    ("bitbucket_token", "ATBB", "an:32"),
    ("brevo_api_key", "xkeysib- xsmtpsib-", "hx:64 - an:16"),
    ("buildkite_token", "bkua_", "hx:40"),
    ("circleci_token", "CCIPAT_", "an:22 _ hx:40"),
    ("clickup_token", "pk_", "dg:1-10 _ up:32"),
    ("clojars_token", "CLOJARS_", "lo:60"),
    ("cloudflare_token", "cfat_ cfut_", "an:40-60"),
    ("contentful_token", "CFPAT-", "u64:43"),
    ("crates_io_token", "cio", "an:32"),
    ("defined_networking_token", "dnkey-", "lo:26 - lo:52"),
    ("deno_token", "ddp_ ddw_", "an:36"),
    ("docker_swarm_token", "SWMTKN-1-", "lo:50 - lo:25"),
    ("dropbox_token", "sl.", "tok:100-999"),
    ("duffel_token", "duffel_test_ duffel_live_", "u64:43"),
    ("dynatrace_token", "dt0c01.", "up:24 . up:64"),
    ("easypost_key", "EZAK EZTK", "an:54"),
    ("elevenlabs_api_key", "sk_", "hx:48"),
    ("firecrawl_api_key", "fc-", "hx:32"),
    ("flexport_api_key", "shltm_", "an:40"),
    ("flutterwave_key", "FLWSECK- FLWSECK_TEST- FLWPUBK- FLWPUBK_TEST-", "hx:32 -X"),
    ("flyio_token", "fo1_", "u64:43"),
    ("frameio_token", "fio-u- ffio-u-", "u64:60-72"),
    ("hubspot_token", "pat-na1- pat-eu1-", _UUID),
    ("intra42_secret", "s-s4t2ud- s-s4t2af-", "hx:64"),
    ("ionic_token", "ion_", "an:42"),
    ("jfrog_token", "cmVmdGtu", "an:56"),
    ("jfrog_token", "AKCp", "an:69"),
    ("langsmith_api_key", "lsv2_pt_ lsv2_sk_", "hx:32 _ hx:10"),
    ("langfuse_key", "sk-lf-", _UUID),
    ("launchdarkly_key", "sdk- api- mob-", _UUID, 0.7),
    ("linear_api_key", "lin_oauth_", "hx:64"),
    ("llama_api_key", "llx-", "u64:40-60"),
    ("mapbox_token", "sk.eyJ", "u64:50-400 . u64:20-40"),
    ("mapbox_token", "pk.eyJ", "u64:50-400 . u64:20-40", 0.5),
    ("mollie_api_key", "live_ test_", "an:30", 0.8),
    ("nats_seed", "SU SA SO SN SC SX", "b32:56"),
    ("neon_api_key", "napi_", "lo:64"),
    ("netlify_token", "nfp_", "an:36"),
    ("nvidia_api_key", "nvapi-", "u64:64"),
    ("octopus_api_key", "API-", "up:26-32", 0.7),
    ("onfido_token", "api_live. api_sandbox.", "u64:11 . u64:32"),
    ("openshift_token", "sha256~", "u64:43"),
    ("pagarme_api_key", "ak_live_ ak_test_", "an:30"),
    ("pinecone_api_key", "pcsk_", "an:5-6 _ an:60-70"),
    ("plaid_token", "access-sandbox- access-production- access-development-", _UUID),
    ("posthog_key", "phx_ phr_", "an:40-50"),
    ("posthog_key", "phc_", "an:43", 0.5),
    ("prefect_token", "pnu_", "an:36"),
    ("readme_api_key", "rdme_", "lo:70"),
    ("razorpay_key", "rzp_live_ rzp_test_", "an:14"),
    ("render_api_key", "rnd_", "an:32"),
    ("resend_api_key", "re_", "an:8 _ an:24"),
    ("rootly_token", "rootly_", "hx:64"),
    ("scalingo_token", "tk-us-", "u64:48"),
    ("scaleway_key", "SCW", "up:17", 0.7),
    ("segment_token", "sgp_", "an:64"),
    ("sourcegraph_token", "sgp_", "hx:16 _ hx:40"),
    ("sourcegraph_token", "sgp_local_", "hx:40"),
    ("shippo_token", "shippo_live_ shippo_test_", "an:40"),
    ("sonarqube_token", "squ_ sqp_ sqa_", "hx:40"),
    ("square_token", "sq0idp-", "u64:22", 0.5),
    ("supabase_token", "sb_secret_", "u64:31-40"),
    ("tailscale_key", "tskey-api- tskey-auth- tskey-client- tskey-scim- tskey-webhook-", "an:8-20 - an:20-40"),
    ("tavily_api_key", "tvly-dev- tvly-", "an:32"),
    ("teamwork_token", "tkn.v1_", "b64:60-90 eq:0-2"),
    ("tencent_secret_id", "AKID", "an:32"),
    ("twilio_key", "AC", "hx:32", 0.5),
    ("twitch_stream_key", "live_", "dg:6-12 _ an:30"),
    ("twitter_bearer_token", "AAAAAAAAAAAAAAAAAAAAA", "pct:30-120"),
    ("typeform_token", "tfp_", "u64:40-59"),
    ("voiceflow_api_key", "VF.DM. VF.WS.", "hx:24 . an:16-40"),
    ("wechat_app_id", "wx", "hx:16", 0.5),
    ("wundergraph_api_key", "cosmo_", "hx:32"),
    ("yandex_key", "AQVN", "u64:35-38"),
    ("zoho_token", "1000.", "hx:32 . hx:32"),
    ("discord_webhook", "discord.com/api/webhooks/ discordapp.com/api/webhooks/", "dg:17-20 / u64:60-70"),
    ("teams_webhook", "outlook.office.com/webhook/ webhook.office.com/webhookb2/",
     f"{_UUID} @ {_UUID} /IncomingWebhook/ hX:32"),
    ("zapier_webhook", "hooks.zapier.com/hooks/catch/", "dg:4-12 / an:5-10"),
)
NARROW, WIDE = "A-Za-z0-9_.=~-", "A-Za-z0-9_.+/=~%@-"  # a run of token characters; WIDE holds every body's
BUCKETS = (48, 96, 200, 1000)  # longest body (+1) per combined rule: keeps the streaming hold tight


@dataclass(frozen=True)
class Format:
    label: str
    prefix: str
    body: Any  # compiled RE2
    score: float


def parts(body: str) -> list[tuple[str, int, int] | str]:
    """A body as its parts: (characters of a class, min, max) or a literal."""
    out: list[tuple[str, int, int] | str] = []
    for part in body.split():
        m = _PART.match(part)
        if m and m.group(1) in CLASSES:
            low = int(m.group(2))
            out.append((CLASSES[m.group(1)], low, int(m.group(3) or low)))
        else:
            out.append(part)
    return out


def body_pattern(body: str) -> str:
    return "".join(re.escape(p) if isinstance(p, str) else f"[{p[0]}]{{{p[1]},{p[2]}}}" for p in parts(body))


def _formats() -> dict[str, list[Format]]:
    """Rows by the first character of their prefix, longest prefix first."""
    rows: list[Format] = []
    for label, prefixes, body, *score in FORMATS:
        regex = compile_re2(body_pattern(body))
        rows += [Format(label, p, regex, score[0] if score else 0.9) for p in prefixes.split()]
    by_first: dict[str, list[Format]] = {}
    for row in sorted(rows, key=lambda r: -len(r.prefix)):
        by_first.setdefault(row.prefix[0], []).append(row)
    return by_first


_BY_FIRST = _formats()
PREFIXES: tuple[str, ...] = tuple(sorted({r.prefix for rows in _BY_FIRST.values() for r in rows}))
LABELS: tuple[str, ...] = tuple(dict.fromkeys(row[0] for row in FORMATS))


def groups() -> dict[tuple[str, int], tuple[set[str], set[str]]]:
    """(run class, longest body + 1) -> (prefixes, labels): the combined rules. Grouping by alphabet and
    length lets a rule's run stop at the first character none of its tokens can hold, and bounds its span."""
    out: dict[tuple[str, int], tuple[set[str], set[str]]] = {}
    for label, prefixes, body, *_ in FORMATS:
        pieces = parts(body)
        longest = sum(len(p) if isinstance(p, str) else p[2] for p in pieces)
        chars = "".join(p if isinstance(p, str) else p[0] for p in pieces)
        run = NARROW if not set(chars) & set("+/%@") else WIDE
        bucket = next(b for b in BUCKETS if b > longest)
        prefixes_, labels = out.setdefault((run, bucket), (set(), set()))
        prefixes_.update(prefixes.split())
        labels.add(label)
    return out


def check_format(groups: dict[str, Any], _params: Any) -> tuple[str, float, int] | None:
    """(label, score, length) of the first row whose prefix and body fit the candidate, or None."""
    token = groups["match"]
    for row in _BY_FIRST.get(token[:1], ()):
        if not token.startswith(row.prefix):
            continue
        m = row.body.match(token, len(row.prefix))
        if m is None:
            continue
        end = m.end()
        if end < len(token) and token[end].isalnum():
            continue  # the run goes on: not this format's token
        if not is_placeholder(token[len(row.prefix) : end]):
            return row.label, row.score, end
        return None
    return None
