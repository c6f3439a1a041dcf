"""Evaluation of the `secrets` detector on the public data in ../shared/data (see its SOURCES.md).

Run: .venv/bin/pytest -m eval tests/eval/test_secrets_eval.py -s   (writes docs/eval/secrets.md)

Upstream `type` names are mapped to the labels meant to catch them. Other types (providers without a rule,
identifiers, CredSweeper's single lines cut out of multi-line keys) are reported apart as "any finding"
coverage. A row is caught when a finding with an expected label occurs anywhere in its (short) text: upstream
`spans` are the upstream rule's first capture group, often the user name beside the secret.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from extproc.detectors.secrets import SecretsDetector

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REPORT = Path(__file__).resolve().parents[2] / "docs" / "eval" / "secrets.md"
COMMAND = ".venv/bin/pytest -m eval tests/eval/test_secrets_eval.py -s"
GENERIC = "generic_secret_assignment"

# upstream type -> labels that count as catching it (typed provider tokens)
TYPED: dict[str, set[str]] = {
    "OpenAI Token": {"openai_api_key"},
    "Anthropic API Key": {"anthropic_api_key"},
    "AWS API Key": {"aws_access_key_id"},
    "AWS Multi": {"aws_access_key_id"},
    "AWS Client ID": {"aws_access_key_id"},
    "AWS API Credentials": {"aws_access_key_id", "aws_secret_access_key"},
    "AWS Secret Access Key": {"aws_secret_access_key"},
    "GitHub Personal Access Token": {"github_token", "github_fine_grained_pat"},
    "Github Classic Token": {"github_token"},
    "GitHub Refresh Token": {"github_token"},
    "GitHub Personal Access Token (fine-grained permissions)": {"github_fine_grained_pat"},
    "GitHub App Token": {"github_app_token"},
    "GitLab Private Token": {"gitlab_token"},
    "GitLab Personal Access Token": {"gitlab_token"},
    "GitLab Runner Registration Token": {"gitlab_token"},
    "Gitlab Prefix Token": {"gitlab_token"},
    "HuggingFace User Access Token": {"huggingface_token"},
    "Hugging Face User Access Token": {"huggingface_token"},
    "Google OAuth Secret": {"gcp_oauth_client_secret"},
    "Azure Connection String": {"azure_storage_key", "azure_connection_string"},
    "Azure App Configuration Connection String": {"azure_connection_string"},
    "Slack Token": {"slack_token"},
    "Slack Bot Token": {"slack_token"},
    "Slack App Token": {"slack_token"},
    "Slack Webhook": {"slack_webhook"},
    "Stripe API Key": {"stripe_key"},
    "Stripe API Test Key": {"stripe_key"},
    "Stripe Credentials": {"stripe_key"},
    "SendGrid API Key": {"sendgrid_key"},
    "Sendgrid API token": {"sendgrid_key"},
    "NPM Token": {"npm_token"},
    "NPM Access Token (fine-grained)": {"npm_token"},
    "NPM Access Token (old format)": {"npm_token"},
    "PyPI Upload Token": {"pypi_token"},
    "Docker Hub Personal Access Token": {"dockerhub_pat"},
    "Docker Access Token": {"dockerhub_pat"},
    "JSON Web Token (base64url-encoded)": {"jwt"},
    "Stripo JWT Token": {"jwt"},
    "PEM-Encoded Private Key": {"private_key"},
    "Contains Private Key": {"private_key"},
    "Contains encrypted RSA private key": {"private_key"},
    "Age Identity (X22519 secret key)": {"private_key"},
    "Age Secret Key": {"private_key"},
    "Postgres URL with hardcoded password": {"database_url"},
    "Credentials in PostgreSQL Connection URI": {"database_url"},
    "Credentials in MongoDB Connection String": {"database_url"},
    "MongoDB URI Connection String": {"database_url"},
    "RabbitMQ Credential": {"database_url"},
    "URI with Username and Secret": {"url_credentials"},
    "FTP URI Password": {"url_credentials"},
    "Groq API Key": {"groq_api_key"},
    "xAI API Key": {"xai_api_key"},
    "1Password Account Token": {"onepassword_token"},
    "Atlassian PAT token": {"atlassian_api_token"},
    "Atlassian Cloud API Token": {"atlassian_api_token"},
    "Digital Ocean Token": {"digitalocean_token"},
    "DigitalOcean API Key": {"digitalocean_token"},
    "DigitalOcean Token": {"digitalocean_token"},
    "DigitalOcean Application Access Token": {"digitalocean_token"},
    "Grafana Access Policy Token": {"grafana_token"},
    "Grafana Provisioned API Key": {"grafana_token"},
    "Grafana Service Account Token": {"grafana_token"},
    "Grafana Cloud API Token": {"grafana_token"},
    "Grafana API Token": {"grafana_token"},
    "Hashicorp Terraform Token": {"terraform_token"},
    "Hashicorp Vault Token": {"vault_token"},
    "Heroku Credentials": {"heroku_api_key"},
    "Linear API Key": {"linear_api_key"},
    "NewRelic Credentials": {"newrelic_key"},
    "New Relic License Key": {"newrelic_key"},
    "New Relic API Service Key": {"newrelic_key"},
    "New Relic Admin API Key": {"newrelic_key"},
    "New Relic Insights Query Key": {"newrelic_key"},
    "NuGet API key": {"nuget_api_key"},
    "NuGet API Key": {"nuget_api_key"},
    "PlanetScale Credentials": {"planetscale_token"},
    "Postman Credentials": {"postman_api_key"},
    "Postman API Key": {"postman_api_key"},
    "Sentry Organization Auth Token": {"sentry_token"},
    "Shopify Token": {"shopify_token"},
    "Shopify App Secret": {"shopify_token"},
    "Square Credentials": {"square_token"},
    "Square Access Token": {"square_token"},
    "Square OAuth Secret": {"square_token"},
    "Databricks API Token": {"databricks_token"},
    "Doppler Personal Token": {"doppler_token"},
    "Doppler Service Account Token": {"doppler_token"},
    "Doppler Audit Token": {"doppler_token"},
    "Figma Personal Access Token": {"figma_token"},
    "Notion Secret Key": {"notion_token"},
    "Pulumi API Key": {"pulumi_token"},
    "RubyGems API Key": {"rubygems_api_key"},
    "Supabase API Key": {"supabase_token"},
    "Telegram Bot API Token": {"telegram_bot_token"},
    "Telegram Bot Token": {"telegram_bot_token"},
    "MailGun API Key": {"mailgun_api_key"},
}
# keyword assignments (`password = ...`): measured against the generic rule, reported on their own
ASSIGNMENTS = {
    "Generic Password", "Generic Secret", "Generic API Key", "Generic Username and Password", "Password",
    "SQL Password", "Secret", "Token", "Key", "Auth", "API", "Credential", "CMD Password", "CMD Secret",
    "CMD Token", "JSON Web Token Secret", "Credentials in ODBC Connection String", "React App Password",
    "netrc Credentials", "HTTP Basic Authentication",
}
FRAGMENTS = {"PEM Private Key"}  # CredSweeper reports each line of a multi-line key; most are bare base64
HIGH_ENTROPY = "high_entropy_non_secrets"
NOTES = """## Notes

- Small samples: the typed slice has a handful of examples per label, several synthetic; there are no
  `AIza` (gcp_api_key) or service-account rows at all. Unit tests cover every label.
- "Rule negatives" are each upstream rule's own negative examples: look-alikes for *that* rule, not
  necessarily non-secrets (an Auth0 client secret is a negative of Nosey Parker's Auth0 rule, but a secret).
- Throughput and streaming hold cost: `.venv/bin/python bench/bench_secrets.py`.
- Missed typed tokens are formats no rule claims: a NuGet key without its `oy2` prefix, a Square token one
  character longer than the format, a legacy (pre-`figd_`) Figma token that only the keyword rule sees.
"""


def load(folder: str) -> list[dict]:
    rows = []
    for path in sorted((DATA / folder).glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        rows.extend(json.loads(line) for line in lines if line.strip())
    return rows


def rate(hits: int, total: int) -> str:
    return f"{hits}/{total} = {100 * hits / total:.1f} %" if total else "-"


def evaluate() -> dict:
    detector = SecretsDetector()
    tally: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])  # (table, row) -> caught, total, any label
    misses, flagged = [], []
    for row in load("secrets"):
        findings = detector.find(row["text"])
        labels = {f.label for f in findings}
        kind, source = row["type"], row["source"]
        if row["label"] == 0:
            key = ("negatives", source, kind if source == HIGH_ENTROPY else "rule negatives")
            hit = bool(findings)
            if hit:
                flagged.append((source, kind, row["text"][:100], sorted(labels)))
        elif kind in TYPED:
            key, hit = ("typed", sorted(TYPED[kind])[0]), bool(labels & TYPED[kind])
            if not hit:
                misses.append((kind, row["text"][:100], sorted(labels)))
        elif kind in FRAGMENTS:
            key, hit = ("other", "CredSweeper single lines of multi-line keys"), "private_key" in labels
        else:
            slice_ = f"keyword assignments ({GENERIC})" if kind in ASSIGNMENTS else f"other formats, {source}"
            key = ("other", slice_)
            hit = bool(findings)
        counts = tally[key]
        counts[0], counts[1], counts[2] = counts[0] + hit, counts[1] + 1, counts[2] + bool(findings)
    for row in load("benign"):
        counts = tally[("negatives", "benign/*", "ordinary prompts")]
        counts[0], counts[1] = counts[0] + bool(detector.find(row["text"])), counts[1] + 1
    return {"tally": dict(tally), "misses": misses, "flagged": flagged}


def total(tally: dict, *key: str) -> tuple[int, int, int]:
    rows = [v for k, v in tally.items() if k[: len(key)] == key]
    return sum(v[0] for v in rows), sum(v[1] for v in rows), sum(v[2] for v in rows)


def report(results: dict) -> str:
    tally = results["tally"]
    typed, high = total(tally, "typed"), total(tally, "negatives", HIGH_ENTROPY)
    out = ["# `secrets` detector evaluation", "", f"Command: `{COMMAND}`", "",
           "## Recall on typed provider tokens (label 1; upstream type mapped to our labels)", "",
           "| label | caught by this label | caught by any label |", "|---|---|---|"]
    out += [f"| `{k[1]}` | {rate(v[0], v[1])} | {rate(v[2], v[1])} |" for k, v in sorted(tally.items())
            if k[0] == "typed"]
    out += [f"| **all typed** | **{rate(typed[0], typed[1])}** | {rate(typed[2], typed[1])} |", "",
            "## Other label-1 rows (any finding)", "", "| slice | caught |", "|---|---|"]
    out += [f"| {k[1]} | {rate(v[0], v[1])} |" for k, v in sorted(tally.items()) if k[0] == "other"]
    out += ["", "## False positives (label 0: any finding)", "", "| source | slice | flagged |",
            "|---|---|---|"]
    out += [f"| `{k[1]}` | {k[2]} | {rate(v[0], v[1])} |" for k, v in sorted(tally.items())
            if k[0] == "negatives"]
    out += [f"| **{HIGH_ENTROPY}** | **all** | **{rate(high[0], high[1])}** |", "",
            "## Missed typed tokens", ""]
    out += [f"- {kind}: `{text!r}` (found: {labels or 'nothing'})"
            for kind, text, labels in results["misses"]]
    out += ["", "## Flagged label-0 rows", ""]
    out += [f"- {s} / {kind}: `{text!r}` -> {labels}" for s, kind, text, labels in results["flagged"]]
    return "\n".join(out + ["", NOTES])


@pytest.mark.eval
def test_secrets_eval():
    if not (DATA / "secrets").is_dir():
        pytest.skip(f"no evaluation data at {DATA}")
    results = evaluate()
    text = report(results)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text, encoding="utf-8")
    print(text)
    typed, high = total(results["tally"], "typed"), total(results["tally"], "negatives", HIGH_ENTROPY)
    assert typed[0] >= 0.98 * typed[1], "recall on typed provider tokens below 98 %"
    assert high[0] <= 0.005 * high[1], "more than 0.5 % of high-entropy non-secrets flagged"
