"""The `secrets` detector's rule table: public credential formats, written from the providers' documentation.

A rule's pattern is `prefix + (?P<kw>anchor|...) + body`: a literal anchor starts every match (after at most
`lead_in` identifier characters), which makes the prefilter and the streaming hold of `secrets.py` cheap and
tight. Group `v` (generic rules: `dq`, `sq`, `raw`...) is the secret; without it the whole match is.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from extproc.detectors.patterns import compile_re2
from extproc.detectors.secret_values import entropy, wordy


@dataclass(frozen=True)
class Rule:
    label: str
    anchors: tuple[str, ...]
    body: str
    score: float = 0.9
    ignore_case: bool = False  # for the anchors; the body sets its own flags
    lead_in: int = 0  # identifier characters ([A-Za-z0-9_.-]) a match may take before the anchor: group `pre`
    pre: str | None = None  # replaces the default `lead_in` prefix; may match only identifier characters
    lead: str | None = None  # prefix of `body` that decides early whether an anchor can still start a match
    closure: str | None = None  # matches every proper prefix of `lead` (a superset is fine): still undecided
    stop: str | None = None  # no match runs past the end of this regex's first hit after the anchor
    max_len: int | None = None  # cap for bodies RE2 cannot bound ({n,m} is limited to 1000)
    check: Callable[[dict[str, Any], Any], Any] | None = None  # score, (label, score, length) or None: drop
    priority: int = 2  # overlapping findings of lower priority are dropped
    labels: tuple[str, ...] = ()  # further labels `check` may give (a table of formats behind one rule)

    def prefix(self) -> str:
        if self.lead_in:
            lead = self.pre or "[A-Za-z0-9_.-]{0," + str(self.lead_in) + "}?"
            return f"(?P<pre>{lead})"
        return r"\b" if all(a[0].isalnum() for a in self.anchors) else ""

    def anchor_group(self) -> str:  # longest first, so "password" is not taken as "pass" + a suffix
        alternatives = "|".join(re.escape(a) for a in sorted(self.anchors, key=len, reverse=True))
        return f"(?P<kw>(?i:{alternatives}))" if self.ignore_case else f"(?P<kw>{alternatives})"

    def pattern(self) -> str:
        return self.prefix() + self.anchor_group() + self.body

    def needle(self) -> str:  # what every match contains: the prefilter looks for this
        return (self.prefix() if self.pre else "") + self.anchor_group() + (self.lead or "")


def crc32_token(groups: dict[str, Any], _params: Any) -> float:
    """GitHub / npm tokens end in a base62 CRC32 of their 30 random characters: it raises the score only."""
    body = groups["match"].split("_", 1)[1]
    if len(body) != 36:
        return 0.9
    number, digits = zlib.crc32(body[:30].encode()), ""
    while number:
        number, rest = divmod(number, 62)
        digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[rest] + digits
    return 1.0 if digits.rjust(6, "0") == body[30:] else 0.85


def jwt(groups: dict[str, Any], _params: Any) -> float:
    header = groups["match"].split(".", 1)[0]
    try:
        return 1.0 if b'"alg"' in base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)) else 0.75
    except (binascii.Error, ValueError):
        return 0.75


def mixed(groups: dict[str, Any], _params: Any) -> float | None:
    """Random tokens mix character classes; identifiers that merely share a prefix rarely do."""
    body = groups["match"]
    classes = sum(any(f(c) for c in body) for f in (str.isupper, str.islower, str.isdigit))
    return 0.9 if classes >= 2 and entropy(body) >= 3.0 else None


def openai_key(groups: dict[str, Any], _params: Any) -> float:
    return 1.0 if "T3BlbkFJ" in groups["match"] else 0.9  # base64 of "OpenAI", inside most OpenAI keys


def high_entropy(groups: dict[str, Any], params: Any) -> float | None:
    return 0.9 if entropy(groups["v"]) >= params.min_entropy and len(set(groups["v"])) > 4 else None


def url_password(groups: dict[str, Any], _params: Any) -> float | None:
    return None if _PLACEHOLDER.search(groups["v"]) else 0.9


AN, HX, U64, B64, B = "[A-Za-z0-9]", "[0-9a-f]", "[A-Za-z0-9_-]", "[A-Za-z0-9+/]", r"\b"
_SEP = r"\\?[\"']?[ \t]{0,4}(?:=>|:=|=|:)[ \t]{0,4}\\?[\"']?"
_AWS40 = _SEP + r"(?P<v>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"  # no newline before the one-character end
_AWS: dict[str, Any] = {"ignore_case": True, "lead_in": 24, "stop": "\n", "check": high_entropy}
_GITLAB = tuple(f"gl{kind}-" for kind in ["pat", "dt", "rt", "rtr", "ptt", "soat", "cbt", "ffct", "ft", "imt", "agent", "oas", "wt"])
_SLACK = ("xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxo-", "xoxe-", "xoxe.xoxp-", "xoxe.xoxb-", "xapp-")
_DB = ("postgres", "postgis", "mysql", "mariadb", "mongodb", "rediss", "redis", "amqp", "mssql", "sqlserver", "cockroachdb", "clickhouse", "jdbc:")
_URL = tuple(s + "://" for s in ["http", "https", "ftp", "ftps", "sftp", "ssh", "git", "smb", "ldap", "ldaps"])
_USER = r"[^\s:/@'\"<>]{0,64}"
_USERINFO = f"(?P<user>{_USER}):" + r"(?P<v>[^\s/'\"<>]{1,128})@[A-Za-z0-9.\[\]_-]{1,253}"
_AFTER_SCHEME = r"://[^\s/'\"<>]*[\s/'\"<>]"  # userinfo and host hold none of these: the URL ends there
_PEM_END = r"-{4,5} ?END [A-Z0-9 ]{0,60}-{4,5}"
_PEM = (r"(?:[A-Z0-9]{1,20} ){0,4}PRIVATE KEY(?: BLOCK)?[ ]?-{4,5}"
        rf"(?:(?:[^-]|-[^-])*?{_PEM_END}|(?:[A-Za-z0-9+/=\r\n]|\\[rn]){{0,1000}})")
_PUTTY = r"[0-9]: [^\n]{1,60}\n[\s\S]*?Private-MAC: [0-9a-f]{40,64}"
_DOPPLER = ("dp.pt.", "dp.st.", "dp.sa.", "dp.ct.", "dp.scim.", "dp.audit.")

PROVIDER_RULES: tuple[Rule, ...] = (
    Rule("openai_api_key", ("sk-proj-", "sk-svcacct-", "sk-admin-", "sk-None-"), U64 + "{20,250}",
         check=openai_key),
    Rule("openai_api_key", ("sk-",), AN + "{48}" + B, lead=AN + "{8}", check=openai_key),
    Rule("anthropic_api_key", ("sk-ant-",), "[a-z]{2,8}[0-9]{2}-" + U64 + "{20,200}", score=1.0),
    Rule("openrouter_api_key", ("sk-or-v1-",), HX + "{64}" + B, score=1.0),
    Rule("groq_api_key", ("gsk_",), AN + "{52}" + B, score=0.95),
    Rule("xai_api_key", ("xai-",), "[A-Za-z0-9_]{70,90}" + B, score=0.95),
    Rule("replicate_api_token", ("r8_",), AN + "{37}" + B, lead=AN + "{8}", check=mixed),
    Rule("perplexity_api_key", ("pplx-",), AN + "{40,64}" + B, check=mixed),
    Rule("aws_access_key_id", ("AKIA", "ASIA", "ABIA", "ACCA"), "[A-Z0-9]{16}" + B, score=0.95),
    Rule("aws_access_key_id", ("A3T",), "[A-Z0-9]{17}" + B, score=0.95),
    Rule("aws_secret_access_key", ("aws",), r"[_.-]?(?i:secret)(?:[_.-]?(?i:access))?(?:[_.-]?(?i:key))?"
         + _AWS40, lead=r"[_.-]?(?i:secret)", **_AWS),
    Rule("aws_secret_access_key", ("secret",), r"[_.-]?(?i:access)[_.-]?(?i:key)" + _AWS40,
         lead=r"[_.-]?(?i:access)", **_AWS),
    Rule("github_token", ("ghp_", "gho_", "ghr_"), AN + "{36,251}" + B, check=crc32_token),
    Rule("github_app_token", ("ghu_", "ghs_"), AN + "{36,251}" + B, check=crc32_token),
    Rule("github_fine_grained_pat", ("github_pat_",), "[A-Za-z0-9_]{60,120}" + B, score=1.0),
    Rule("gitlab_token", _GITLAB, "[A-Za-z0-9_.-]{20,80}", score=0.95),
    Rule("gitlab_token", ("GR1348941",), U64 + "{20,40}", score=0.95),
    Rule("gitlab_token", ("_gitlab_session=",), f"(?P<v>{HX}{{32}})" + B),
    Rule("huggingface_token", ("hf_", "api_org_"), AN + "{30,40}" + B, lead=AN + "{8}", check=mixed),
    Rule("gcp_api_key", ("AIza",), U64 + "{35}", score=0.95),
    Rule("gcp_oauth_client_secret", ("GOCSPX-",), U64 + "{28}", score=0.95),
    Rule("gcp_service_account", ('"private_key_id"',), r'[ \t]{0,4}:[ \t]{0,4}"(?P<v>[0-9a-f]{40})"'),
    Rule("gcp_service_account", ('"type"',), r'[ \t]{0,4}:[ \t]{0,4}"service_account"', score=0.6,
         lead=r'[ \t]{0,4}:[ \t]{0,4}"service_account"'),
    Rule("azure_storage_key", ("AccountKey=",), f"(?P<v>{B64}{{86}}==)", ignore_case=True, score=0.95),
    Rule("azure_connection_string", ("SharedAccessKey=",), f"(?P<v>{B64}{{42,44}}={{0,2}})",
         ignore_case=True),
    Rule("azure_connection_string", ("azconfig.io;",), r"Id=[^;\s]{1,64};Secret="
         + f"(?P<v>{B64}{{40,64}}={{0,2}})"),
    Rule("slack_token", _SLACK, "[0-9A-Za-z/_-]{10,250}", check=mixed),
    Rule("slack_webhook", ("hooks.slack.com/",), "(?:services|workflows|triggers)/[A-Za-z0-9_/-]{20,120}"),
    Rule("stripe_key", ("sk_live_", "rk_live_"), AN + "{20,247}" + B, score=1.0),
    Rule("stripe_key", ("sk_test_", "rk_test_"), AN + "{20,247}" + B, score=0.6),
    Rule("stripe_key", ("whsec_",), "[A-Za-z0-9+/=]{32,64}"),
    Rule("twilio_key", ("SK",), HX + "{32}" + B, lead=HX + "{8}", score=0.7),
    Rule("sendgrid_key", ("SG.",), U64 + r"{16,32}\." + U64 + "{16,64}", score=0.95),
    Rule("npm_token", ("npm_",), AN + "{36}" + B, check=crc32_token),
    Rule("npm_token", ("_authToken",), _SEP + "(?P<v>[A-Za-z0-9+/=_-]{20,200})"),
    Rule("pypi_token", ("pypi-AgE",), U64 + "{50,1000}", score=1.0),
    Rule("dockerhub_pat", ("dckr_pat_", "dckr_oat_"), U64 + "{20,80}", score=0.95),
    Rule("jwt", ("eyJ",), U64 + r"{5,1000}\." + U64 + r"{5,}(?:\." + U64 + "{4,})?", max_len=16384,
         check=jwt),
    Rule("private_key", ("-----BEGIN ", "---- BEGIN "), _PEM, score=1.0, priority=3, max_len=16384,
         lead=r"(?:[A-Z0-9]{1,20} ){0,4}PRIVATE KEY", closure="[A-Z0-9 ]{0,100}", stop=_PEM_END + "[^-]"),
    Rule("private_key", ("PuTTY-User-Key-File-",), _PUTTY, score=1.0, priority=3, max_len=8192,
         lead="[0-9]: ", stop="Private-MAC: [0-9a-f]{40,64}[^0-9a-f]"),
    Rule("private_key", ("AGE-SECRET-KEY-1",), "[0-9A-Z]{58}" + B, score=1.0),
    Rule("digitalocean_token", ("dop_v1_", "doo_v1_", "dor_v1_"), HX + "{64}" + B, score=1.0),
    Rule("shopify_token", ("shpat_", "shpca_", "shppa_", "shpss_"), "[0-9a-fA-F]{32}" + B, score=0.95),
    Rule("atlassian_api_token", ("ATATT3",), "[A-Za-z0-9_=-]{150,250}", score=0.95),
    Rule("postman_api_key", ("PMAK-",), HX + "{24}-" + HX + "{34}" + B, score=1.0),
    Rule("postman_api_key", ("PMAT-",), "[A-Z0-9]{26}" + B, score=0.95),
    Rule("grafana_token", ("glsa_",), AN + "{32}_" + HX + "{8}" + B, score=0.95),
    Rule("grafana_token", ("glc_",), B64 + "{32,400}={0,2}", check=mixed),
    Rule("grafana_token", ("eyJrIjoi",), B64 + "{40,200}={0,2}"),  # base64 of {"k":" (legacy API keys)
    Rule("sentry_token", ("sntrys_",), "[A-Za-z0-9+/=_-]{60,600}", score=0.95),
    Rule("sentry_token", ("sntryu_",), HX + "{64}" + B, score=0.95),
    Rule("vault_token", ("hvs.", "hvb."), U64 + "{24,300}", check=mixed),
    Rule("terraform_token", (".atlasv1.",), "[A-Za-z0-9_=-]{60,70}", lead_in=14, pre=B + AN + "{14}"),
    Rule("linear_api_key", ("lin_api_",), AN + "{40}" + B, score=0.95),
    Rule("notion_token", ("ntn_",), "[0-9]{11}" + AN + "{32,40}" + B, score=0.95),
    Rule("notion_token", ("secret_",), AN + "{43}" + B, lead=AN + "{8}", check=mixed),
    Rule("databricks_token", ("dapi",), HX + "{32}(?:-[0-9])?" + B, lead=HX + "{8}"),
    Rule("telegram_bot_token", (":",), U64 + "{30,35}" + B, lead_in=10, pre=B + "[0-9]{8,10}", check=mixed),
    Rule("mailgun_api_key", ("key-",), HX + "{32}" + B, lead=HX + "{8}", score=0.8),
    Rule("mailgun_api_key", ("-",), HX + "{8}-" + HX + "{8}" + B, lead_in=32, pre=B + HX + "{32}", score=0.8),
    Rule("square_token", ("sq0atp-", "sq0csp-"), U64 + "{22,43}", score=0.95),
    Rule("square_token", ("EAAA",), U64 + "{60}" + B, lead=U64 + "{8}", check=mixed),
    Rule("rubygems_api_key", ("rubygems_",), HX + "{48}" + B, score=1.0),
    Rule("nuget_api_key", ("oy2",), "[a-z0-9]{43}" + B, lead="[a-z0-9]{8}", score=0.8),
    Rule("figma_token", ("figd_",), U64 + "{40}", score=0.95),
    Rule("doppler_token", _DOPPLER, AN + "{40,44}" + B, score=1.0),
    Rule("pulumi_token", ("pul-",), HX + "{40}" + B, score=0.95),
    Rule("heroku_api_key", ("HRKU-",), U64 + "{30,80}", score=0.95),
    Rule("planetscale_token", ("pscale_tkn_", "pscale_pw_", "pscale_oauth_"), "[A-Za-z0-9_.=-]{32,64}"),
    Rule("supabase_token", ("sbp_",), AN + "{40}" + B, check=mixed),
    Rule("newrelic_key", ("NRAK-", "NRAA-", "NRII-", "NRIQ-", "NRJS-"), U64 + "{19,40}" + B, check=mixed),
    Rule("newrelic_key", ("NRAL",), B, lead_in=42, pre=B + "(?:eu[0-9]{2}x{1,2})?" + HX + "{29,36}"),
    Rule("onepassword_token", ("ops_eyJ",), "[A-Za-z0-9+/=_-]{100,1000}", score=0.95),
    Rule("database_url", _DB, "[A-Za-z0-9+:]{0,20}://" + _USERINFO, ignore_case=True, check=url_password,
         lead="[A-Za-z0-9+:]{0,20}://", closure="[A-Za-z0-9+:]{0,20}/?", stop=_AFTER_SCHEME),
    Rule("url_credentials", _URL, _USERINFO, ignore_case=True, lead=_USER + ":", closure=_USER,
         stop=_AFTER_SCHEME, check=url_password, score=0.8),
)


# ---- generic assignments: `password = ...`, `"api_key": "..."`, `--token X`, `IDENTIFIED BY '...'` ------

NOT_SECRET = frozenset(  # words in a key name that say its value is not the secret itself
    ["label", "field", "input", "prompt", "text", "hint", "placeholder", "message", "error", "policy", "regex", "pattern", "length", "len", "min", "max", "count", "type", "name", "id", "ids", "url", "uri", "endpoint", "path", "file", "dir", "env", "header", "param", "enabled", "required", "reset", "forgot", "expiry", "expires", "expiration", "ttl", "timeout", "date", "time", "format", "mode", "method", "version", "size", "limit", "usage", "index", "hash", "hashed", "public", "pub", "next", "prev", "previous", "page", "cursor", "continuation", "num", "total", "completion", "sha", "md5", "checksum", "digest", "salt", "nonce", "fingerprint", "ref", "arn", "kind", "style", "class", "color", "icon", "button", "link", "tab", "visible", "show", "hide", "toggle", "validator", "validation", "strength", "manager", "store", "provider", "rotation", "stdin", "prefix", "suffix", "tokens"])
_PLACEHOLDER = compile_re2(  # templates, variables, masks, CSS selectors and the usual stand-ins
    r"^\$|\$[{(]|(?-i:\$[A-Z_]{3})|\{\{|%\(|%s|&lt;|<[\w .-]*>|^\*+$|x{4,}|\*{3,}|\.\.\.|^[#.][A-Za-z][\w-]*$"
    r"|your|example|sample|dummy|placeholder|redacted|changeme|replace", ignore_case=True)
_CODE = compile_re2(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+|[A-Za-z_]+")  # dotted names, bare identifiers
_LITERAL = compile_re2(r"[0-9.:+-]+|true|false|null|none|nil|undefined|empty", ignore_case=True)
WORD = compile_re2(r"[A-Z]?[a-z]+|[A-Z]+|[0-9]+")  # the words of a key name: DB_PASSWORD, tokenUrl


def assignment(groups: dict[str, Any], params: Any) -> float | None:
    value = next(groups[g] for g in ("dq", "sq", "bq", "hq", "xml", "raw") if g in groups)
    key = groups.get("pre", "") + groups["kw"] + groups.get("suf", "")
    password = groups["kw"].lower().startswith(("pas", "psw", "pssw", "pw", "identified"))
    literal = "raw" not in groups or (key.upper() == key and groups.get("sep") == "=")  # quoted, or KEY=value
    # cheap tests first: each RE2 call costs microseconds through the Python wrapper
    if len(value) < (6 if password else 8) or len(set(value)) < 4 or (not literal and _CODE.fullmatch(value)):
        return None
    words = {w.lower() for w in WORD.findall(key)}
    if words & NOT_SECRET or not _plausible(value, groups["kw"], literal, password):
        return None
    if password:
        return 0.6 if entropy(value) >= params.min_password_entropy else None
    if wordy(value):  # `token = OAuth2Credentials(...)`: a name made of words (people may choose such passwords)
        return None
    classes = sum(any(f(c) for c in value) for f in (str.isupper, str.islower, str.isdigit, _symbol))
    return 0.7 if classes >= 2 and entropy(value) >= params.min_entropy else None


def _symbol(char: str) -> bool:
    return not char.isalnum()


def _plausible(value: str, keyword: str, literal: bool, password: bool) -> bool:
    spaces = sum(c.isspace() for c in value)
    if spaces > (2 if password and literal else 0) or value.startswith(("http://", "https://")):
        return False
    if (value[:1] in "/.~" and value.count("/") > 1) or (spaces and keyword.lower() in value.lower()):
        return False  # a file path; a sentence about the password
    bare = "".join(c for c in value.lower() if c.isalnum())
    return bare not in _KEYWORDS and not _LITERAL.fullmatch(value) and not _PLACEHOLDER.search(value)


_PASSWORDS = ("password", "passwd", "passphrase", "pasword", "paswd", "pass", "pssword", "psswd", "pswd", "pwd", "pw")
_SECRETS = ("secret", "token", "credentials", "credential", "authorization", "authentication", "auth")
_KEYS = ("api", "access", "account", "private", "signing", "encryption", "master")
_SUFFIX = r"(?P<suf>(?:[A-Z0-9_.-][A-Za-z0-9_.-]{0,23})?)"  # not a lowercase continuation: tokenizer
_ASSIGN = (r"\\?[\"']?[ \t]{0,16}(?P<sep>===|!==|==|!=|=>|:=|->|=|:)[ \t]{0,4}"
           r"(?:(?i:bearer|basic|token)[ \t]{1,4})?")
_QUOTED = (r"(?:\\?\"(?P<dq>[^\"\\\n]{1,300})\\?\"|'(?P<sq>[^'\n]{1,300})'|`(?P<bq>[^`\n]{1,300})`"
           r"|&quot;(?P<hq>[^&\s]{1,300})&quot;)")
_RAW = r"(?P<raw>[^\s\"'`,;<>(){}\[\]\\&]{0,299}[^\s\"'`,;<>(){}\[\]\\&.])"
_VALUE = f"(?:{_QUOTED}|{_RAW})"
_UNDECIDED = r"[ _.-]?[A-Za-z0-9_.-]{0,40}\\?[\"']?[ \t]{0,16}[=:!>-]?"  # key, quote, blanks, half an `!=`
_GENERIC: dict[str, Any] = {"ignore_case": True, "lead_in": 32, "stop": "\n", "check": assignment, "priority": 0, "closure": _UNDECIDED}
_FLAG = r"--?[A-Za-z0-9_.-]{0,24}?"  # a command-line option in front of the keyword
_IDENTIFIED = r"[ \t]{1,4}(?:(?i:with)[ \t]{1,4}\w{1,40}[ \t]{1,4})?(?i:by)"  # IDENTIFIED [WITH plugin] BY
_KEYWORDS = frozenset(("password", "passwd", "secret", "token", "apikey", "key", "pass", "pwd"))

GENERIC_RULES: tuple[Rule, ...] = (
    Rule("generic_secret_assignment", _PASSWORDS, _SUFFIX + _ASSIGN + _VALUE, lead=_SUFFIX + _ASSIGN,
         **_GENERIC),
    Rule("generic_secret_assignment", _SECRETS, r"(?:[ _.-]?(?i:key|token))?" + _SUFFIX + _ASSIGN + _VALUE,
         lead=r"(?:[ _.-]?(?i:key|token))?" + _SUFFIX + _ASSIGN, **_GENERIC),
    Rule("generic_secret_assignment", _KEYS, r"[ _.-]?(?i:key)" + _SUFFIX + _ASSIGN + _VALUE,
         lead=r"[ _.-]?(?i:key)" + _SUFFIX + _ASSIGN, **_GENERIC),
    Rule("generic_secret_assignment", _PASSWORDS + _SECRETS, _SUFFIX + r">(?P<xml>[^<\s]{1,300})</",
         lead=_SUFFIX + ">", **_GENERIC),  # <password>...</password>
    Rule("generic_secret_assignment", ("identified",), _IDENTIFIED + r"[ \t]{1,4}" + _VALUE, lead=_IDENTIFIED,
         **{**_GENERIC, "closure": r"[ \t]{0,4}(?:w[a-z]{0,3}(?:[ \t]{1,4}\w{0,40}[ \t]{0,4})?)?b?"}),
    Rule("generic_secret_assignment", ("password",), r"[ \t]{1,4}" + _QUOTED, lead=r"[ \t]{1,4}['\"`]",
         **{**_GENERIC, "closure": r"[ \t]{0,4}"}),
    Rule("generic_secret_assignment", _PASSWORDS + _SECRETS + ("api-key", "apikey", "bearer"),
         _SUFFIX + r"(?:[ \t]{1,4}|=)" + _VALUE, lead=_SUFFIX + r"(?:[ \t]{1,4}|=)",
         **{**_GENERIC, "pre": _FLAG}),
)
