"""Pure checks that turn a parsed body, the caller's tenant and headers into a request."""

from __future__ import annotations

import hashlib
import json

from pydantic import ValidationError

from schemas import AnyRequest
from schemas.enums import ErrorCode
from schemas.errors import describe_validation_error, validation_error_param
from schemas.requests import is_valid_id, parse_request

from .errors import ApiError

#: fields that differ between two submissions of the same job without making them different jobs
_NOT_FINGERPRINTED = frozenset({"job_id", "submitted_at"})


def build_request(data: object, tenant: str, idempotency_key: str | None) -> AnyRequest:
    """The request as the gateway publishes it.

    The tenant always comes from the API key: a body that names another tenant is rejected
    (400, param ``tenant``) rather than silently rewritten, so a misconfigured client finds out.
    """
    if not isinstance(data, dict):
        raise ApiError(ErrorCode.INVALID_REQUEST, "body must be a JSON object (a GenerationRequest)")
    body_tenant = data.get("tenant")
    if body_tenant is not None and body_tenant != tenant:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "`tenant` differs from the API key's tenant: omit it, the key decides the tenant",
            param="tenant",
        )
    if idempotency_key is not None:
        if not is_valid_id(idempotency_key):
            raise ApiError(
                ErrorCode.INVALID_PARAMETER,
                "Idempotency-Key must be 1-128 characters of letters, digits and _.:@- starting with"
                " a letter or digit",
                param="Idempotency-Key",
            )
        body_id = data.get("job_id")
        if body_id is not None and body_id != idempotency_key:
            raise ApiError(
                ErrorCode.INVALID_REQUEST,
                "`job_id` and the Idempotency-Key header differ: send one, or the same value in both",
                param="job_id",
            )
        data = {**data, "job_id": idempotency_key}
    try:
        return parse_request({**data, "tenant": tenant})
    except ValidationError as exc:
        code, message = describe_validation_error(exc)
        raise ApiError(code, message, param=validation_error_param(exc)) from None


def fingerprint(request: AnyRequest) -> str:
    """What makes two submissions of one job id the same request (SHA-256 of canonical JSON)."""
    canonical = json.dumps(
        request.model_dump(mode="json", exclude=set(_NOT_FINGERPRINTED)), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
