"""Reading OpenAI-style bodies and turning them into genloom jobs, with the gateway's error codes."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from schemas.enums import ErrorCode
from schemas.errors import describe_validation_error, validation_error_param
from schemas.openai import _Lenient

from ..errors import ApiError

_Body = TypeVar("_Body", bound=_Lenient)


def parse_body(model: type[_Body], data: object, what: str) -> _Body:
    """The body as `model`; unknown fields are a 400 that names them."""
    if not isinstance(data, dict):
        raise ApiError(ErrorCode.INVALID_REQUEST, f"body must be a JSON object ({what})")
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        code, message = describe_validation_error(exc)
        raise ApiError(code, message, param=validation_error_param(exc)) from None
    unsupported = body.unsupported()
    if unsupported:
        raise ApiError(ErrorCode.INVALID_PARAMETER,
                       f"not supported by genloom: {', '.join(unsupported)}; remove them", param=unsupported[0])
    return body


def build_job(model_cls, data: dict[str, Any], *, tenant: str, job_id: str | None, user: str | None = None):
    """The job request for the tenant (and the caller's idempotency key), validated by its contract."""
    data = {**data, "tenant": tenant}
    if job_id:
        data["job_id"] = job_id
    if user:
        data["user"] = user
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        code, message = describe_validation_error(exc)
        raise ApiError(code, message, param=validation_error_param(exc)) from None
