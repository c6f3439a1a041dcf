"""Errors a client can see, each with its HTTP status and a stable code.

    GatewayError                 base: status + code + message (message never contains raw content)
    ├── MalformedRequest         400 invalid_request   body is not JSON / not the API's shape
    ├── PolicyDenied             403 policy_violation  a rule with action deny matched
    ├── PayloadTooLarge          413 payload_too_large body or stream over a configured limit
    ├── UnsupportedEncoding      415 unsupported_content_encoding  a compressed (content-encoded) request body
    ├── BudgetExceeded           429 budget_exceeded   a token budget is used up
    └── PolicyUnavailable        503 policy_error      a detector failed and its rule fails closed

Shapes render these in their API's own error format; the audit record carries the code.
"""

from __future__ import annotations


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    error_type = "server_error"
    retry_after: float | None = None  # seconds, for 429s (a budget's window)

    def __init__(self, message: str, *, code: str | None = None, rules: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.rules = rules
        if code is not None:
            self.code = code


class MalformedRequest(GatewayError):
    status = 400
    code = "invalid_request"
    error_type = "invalid_request_error"


class PolicyDenied(GatewayError):
    status = 403
    code = "policy_violation"
    error_type = "policy_violation"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"
    error_type = "invalid_request_error"


class UnsupportedEncoding(GatewayError):
    """The gateway reads request bodies as sent; a compressed body could not be inspected, so it is refused."""

    status = 415
    code = "unsupported_content_encoding"
    error_type = "invalid_request_error"


class BudgetExceeded(GatewayError):
    status = 429
    code = "budget_exceeded"
    error_type = "rate_limit_error"


class PolicyUnavailable(GatewayError):
    status = 503
    code = "policy_error"
    error_type = "server_error"


def decision_of(exc: GatewayError) -> str:
    """How a refusal is recorded: `reject` for requests the API cannot take (malformed, too large, encoded),
    `deny` for policy (403) and budget (429) refusals, `error` for failures."""
    if isinstance(exc, (MalformedRequest, PayloadTooLarge, UnsupportedEncoding)):
        return "reject"
    return "deny" if exc.status in (403, 429) else "error"
