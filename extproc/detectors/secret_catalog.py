"""Every rule of the `secrets` detector: the hand-written provider rules (`secret_rules.py`), the table of
prefixed formats (`secret_formats.py`), formats without a leading literal, and keyword context in prose.

Keyword context: a secret word (`key`, `secret`, `token`, `password`, `access`, `private`, ...), optionally
inside an identifier (`boxSECRET`, `STRIPE_API_KEY`), then a short gap of separators and connector words
(`: `, ` = `, ` is `, ` access key: `), at most one line break, then a value that looks random. It catches
"AWS secret access key: wJalr...", "with secret wJalr..." and `tomtom_access_token=...` without a rule per
provider. The gap holds at most 8 runs of blanks, so `stop` bounds how far such a match can run: the
ninth run of blanks after the keyword, which keeps the streaming hold short on prose that merely says "key".
"""

from __future__ import annotations

from typing import Any

from extproc.detectors.secret_formats import check_format, groups
from extproc.detectors.secret_rules import GENERIC_RULES, NOT_SECRET, PROVIDER_RULES, Rule, mixed
from extproc.detectors.secret_values import WORDS, classes, entropy, is_placeholder, looks_random

B, HX, AN = r"\b", "[0-9a-f]", "[A-Za-z0-9]"
_NETRC_GAP = r"(?:[ \t]{1,16}|[ \t]{0,16}\r?\n[ \t]{0,16})"


def netrc_password(groups: dict[str, Any], _params: Any) -> float | None:
    return None if len(groups["v"]) < 4 else 0.8  # placeholders are dropped for every rule in `secrets._scan`


TABLE_RULES: tuple[Rule, ...] = tuple(
    Rule("provider_token", tuple(sorted(prefixes)), f"[{run}]{{10,{bucket}}}", check=check_format,
         labels=tuple(sorted(labels)), lead=f"[{run}]{{10}}") for (run, bucket), (prefixes, labels) in sorted(groups().items()))
TAIL_RULES: tuple[Rule, ...] = (
    *TABLE_RULES,
    Rule("okta_token", ("SSWS ",), "[A-Za-z0-9_-]{38,44}" + B),
    Rule("dropbox_token", ("AAAAAAAAAA",), "[A-Za-z0-9_=-]{43}" + B, lead_in=11, pre=B + AN + "{11}", check=mixed,
         priority=1),
    Rule("netrc_credentials", ("machine",), rf"{_NETRC_GAP}[^\s]{{1,253}}{_NETRC_GAP}login{_NETRC_GAP}[^\s]{{1,128}}"
         rf"{_NETRC_GAP}password[ \t]{{1,16}}(?P<v>[^\s]{{1,128}})", lead=_NETRC_GAP + r"[^\s]{1,253}" + _NETRC_GAP
         + "l", closure=rf"{_NETRC_GAP}?[^\s]{{0,253}}{_NETRC_GAP}?", stop=r"\S*(?:\s+\S+){5}\s", check=netrc_password,
         score=0.8),
    Rule("powershell_secure_string", ("ConvertTo-SecureString",), r"[ \t]{1,4}(?:-String[ \t]{1,4})?\\?[\"']"
         r"(?P<v>[^\"'\\\n]{4,200})\\?[\"']", check=netrc_password, score=0.8),
    Rule("mailchimp_api_key", ("-us",), "[0-9]{1,2}" + B, lead_in=32, pre=B + HX + "{32}"),
    Rule("salesforce_token", ("!",), "[A-Za-z0-9._]{60,200}", lead_in=15, pre=B + "00D" + AN + "{12}"),
    Rule("facebook_token", ("|",), "[A-Za-z0-9_-]{27}" + B, lead_in=16, pre=B + "[0-9]{15,16}", check=mixed),
    Rule("azure_client_secret", ("7Q~", "8Q~"), "[A-Za-z0-9_~.-]{31,34}", lead_in=3,
         pre="[A-Za-z0-9_.-]{3}"),
    Rule("maxmind_license_key", ("_mmk",), B, lead_in=36, pre=B + AN + "{6}_" + AN + "{29}"),
    Rule("azure_devops_pat", ("AZDO",), AN + "{4}" + B, lead_in=76, pre=B + AN + "{76}", score=0.85),
    Rule("braintree_token", ("access_token$production$", "access_token$sandbox$"), r"[0-9a-z]{16}\$" + HX
         + "{32}"),
    Rule("password_hash", ("$2a$", "$2b$", "$2y$"), r"[0-9]{2}\$[./A-Za-z0-9]{53}", score=0.7),
    Rule("password_hash", ("$1$", "$5$", "$6$"), r"(?:rounds=[0-9]{1,9}\$)?[./A-Za-z0-9]{1,16}\$"
         r"[./A-Za-z0-9]{22,86}", score=0.7),
    Rule("password_hash", ("$krb5asrep$", "$krb5tgs$"), r"[0-9]{2}\$[A-Za-z0-9@._/$-]{40,1000}", score=0.7),
    Rule("private_key", ("-----END ", "---- END "), r"(?:[A-Z0-9]{1,20} ){0,4}PRIVATE KEY(?: BLOCK)?-{4,5}",
         score=0.8),
)

# ---- keyword context ---------------------------------------------------------------------------------

_KEYWORDS = ("key", "secret", "token", "password", "passwd", "pwd", "credential", "credentials", "apikey",
             "access", "private", "auth", "bearer", "login")  # not `pat`: HTTP PATCH in every API doc
_CONNECTORS = "is|are|was|key|token|secret|access|private|api|id|code|value|to|default"
_SEPS = r"[:=>\"'`.|-]{1,3}"  # not `(`, `[`, `{` or `,`: calls and lists of names in code
_WG = rf"(?:{_SEPS}|(?i:{_CONNECTORS}))"  # a separator or connector word; blanks go between
_SUFFIX = r"(?P<suf>(?:[A-Z_.][A-Za-z0-9_.]{0,23})?)"  # no digit or dash first: those start values
_NL = rf"\r?\n[ \t]{{0,16}}(?:{_WG}[ \t]{{0,16}}){{0,2}}"
_GAP = (rf"(?:(?:[ \t]{{1,16}}(?:{_WG}[ \t]{{0,16}}){{0,4}}|(?:{_WG}[ \t]{{0,16}}){{1,4}})(?:{_NL})?|{_NL})")
# never empty, so `loginradius_key = ...` is not taken as `login` + value; at most 8 runs of blanks
_CHARS = "A-Za-z0-9+/=_~-"
# sixteen characters or more, or fewer with a digit: prose words after "key" never reach the check
_VALUE = (rf"(?P<v>[{_CHARS}]{{6}}(?:[{_CHARS}]|[.!#%*^&][{_CHARS}]){{10,200}}"
          rf"|[A-Za-z+/=_~-]{{0,14}}[0-9][{_CHARS}]{{0,14}})")
# how every value starts: its first sixteen characters, or what comes up to its first digit
_VALUE_START = rf"\r?[.!#%*^&{_CHARS}]{{0,26}}"  # and any part of that (for `closure`)
_VALUE_LEAD = rf"(?:[{_CHARS}]{{6}}(?:[{_CHARS}]|[.!#%*^&][{_CHARS}]){{10}}|[A-Za-z+/=_~-]{{0,14}}[0-9])"


def keyword_value(groups: dict[str, Any], params: Any) -> float | None:
    """A value after a secret word counts when it looks generated and the key does not name something else."""
    value, key = groups["v"], groups.get("pre", "") + groups["kw"] + groups.get("suf", "")
    gap = groups["match"][len(groups["kw"]) + len(groups.get("suf", "")) : -len(value)]
    if "--" in gap or not NOT_SECRET.isdisjoint(w.lower() for w in WORDS.findall(key)) or is_placeholder(key):
        return None  # (a dash run: PEM armor such as `PUBLIC KEY-----`; `your-api-key-here-...`)
    return 0.7 if looks_random(value, params.min_entropy) else None


CONTEXT_RULES: tuple[Rule, ...] = (
    Rule("keyword_secret", _KEYWORDS, _SUFFIX + _GAP + _VALUE, ignore_case=True, lead_in=32,
         lead=_SUFFIX + _GAP + _VALUE_LEAD, closure=_SUFFIX.replace("P<suf>", ":") + _GAP + _VALUE_START,
         stop=r"\S*(?:\s+\S+){8}\s", check=keyword_value, priority=-1),
)

RULES: tuple[Rule, ...] = PROVIDER_RULES + TAIL_RULES + GENERIC_RULES + CONTEXT_RULES
LABELS: tuple[str, ...] = tuple(dict.fromkeys(label for r in RULES for label in (r.label, *r.labels)
                                              if r.check is not check_format or label != r.label))

# ---- lines of a PEM body seen without their header: exactly 64 base64 characters alone on a line ---------

FRAGMENT_LABEL = "private_key_fragment"
_B64_LINE = "|".join(f"[A-Za-z0-9+/]{{{n}}}" for n in (64, 70, 76))  # PEM, OpenSSH and MIME widths
FRAGMENT = rf"(?m)(?:^|[ \t\"'`])(?P<v>{_B64_LINE})[ \t]*(?:\\{{1,2}}[rn]?)*[\"'`]?[ \t]*[+,;)]{{0,2}}[ \t]*\r?$"
_B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
ALL_LABELS: tuple[str, ...] = (*LABELS, FRAGMENT_LABEL)


def fragment_value(value: str) -> bool:
    """RFC 7468 wraps key bodies at 64 columns (OpenSSH at 70, MIME at 76); hex digests stay at or
    under 4 bits per character, words lack digits and the spread of 64 symbols."""
    return classes(value) >= 2 and entropy(value) >= 4.5


def fragment_hold(text: str) -> int:
    """Characters at the end that may still become such a line: a run of up to 76 base64 characters (and
    what may close the line after it) that starts a line or follows a blank or quote."""
    body = text.rstrip(" \t\r+,;)\"'`")
    body = body[:-2] if body[-2:] in ("\\n", "\\r") else body  # a string literal's escaped line end
    body = body.rstrip("\\ \t")
    run = 0
    while run < min(len(body), 77) and body[-1 - run] in _B64:
        run += 1
    if run == 0 or run > 76 or (run < len(body) and body[-1 - run] not in " \t\n\"'`"):
        return 0
    return len(text) - (len(body) - run)
