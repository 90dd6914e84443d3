"""Reading and validating request bodies: content type, then size (header and streamed count), then
JSON (or the multipart form OpenAI's video API takes), then the contract. Everything here answers
with an ApiError of a stable code before anything is queued."""

from __future__ import annotations

import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from schemas import AnyRequest
from schemas.enums import ErrorCode
from schemas.errors import describe_validation_error, validation_error_param
from schemas.openai import _Lenient
from schemas.requests import MAX_USER_CHARS, is_valid_id, parse_request, scoped_user_id

from .errors import ApiError

_Model = TypeVar("_Model", bound=BaseModel)

#: deepest nesting of arrays and objects a body may have; deeper is a 400 before any model sees it
#: (json and pydantic recurse per level, and a RecursionError must not become a 500)
MAX_JSON_DEPTH = 32

# -- bytes --

def check_content_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type {media or '(none)'!r} is not supported: send `Content-Type: application/json`",
            param="Content-Type",
        )


def check_declared_length(content_length: str | None, max_bytes: int) -> None:
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise ApiError(ErrorCode.INVALID_REQUEST, "Content-Length is not a number", param="Content-Length") from None
    if declared > max_bytes:
        raise too_large(declared, max_bytes)


def too_large(size: int | None, max_bytes: int) -> ApiError:
    said = f"{size} bytes" if size is not None else "more than the limit"
    return ApiError(
        ErrorCode.PAYLOAD_TOO_LARGE,
        f"body is {said}, the limit is {max_bytes} bytes: shorten the prompt or messages",
    )


def parse_json(body: bytes) -> object:
    if not body.strip():
        raise ApiError(ErrorCode.INVALID_JSON, "empty body: send a JSON object")
    try:
        data = json.loads(body)
    except RecursionError:
        raise too_deep() from None
    except UnicodeDecodeError:
        raise ApiError(ErrorCode.INVALID_JSON, "body is not UTF-8: send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            ErrorCode.INVALID_JSON, f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits, 4300 digits)
        raise ApiError(ErrorCode.INVALID_JSON, "body has a number with too many digits: no field takes one that"
                       " long") from None
    if nesting(data) > MAX_JSON_DEPTH:
        raise too_deep()
    return data


def too_deep() -> ApiError:
    return ApiError(ErrorCode.INVALID_JSON, f"body is nested more than {MAX_JSON_DEPTH} levels deep: flatten it")


def nesting(data: object) -> int:
    """How deep arrays and objects nest in parsed JSON (iterative: no recursion limit to hit)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def form_fields(body: bytes, content_type: str) -> dict[str, str]:
    """The text fields of a multipart/form-data body (what the OpenAI SDK sends to POST /v1/videos)."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
                                                  + body)
    if not message.is_multipart():
        raise ApiError(ErrorCode.INVALID_REQUEST, "multipart body without parts or boundary: send JSON instead")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            raise ApiError(ErrorCode.INVALID_REQUEST, "a multipart part has no name")
        if part.get_filename() is not None:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"file uploads ({name}) are not supported by genloom",
                           param=name)
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "utf-8"
        try:
            fields[name] = payload.decode(charset)
        except LookupError:
            raise ApiError(ErrorCode.INVALID_REQUEST, f"multipart part {name!r} names an unknown charset"
                           f" {charset!r}: send UTF-8", param=name) from None
        except UnicodeDecodeError:
            raise ApiError(ErrorCode.INVALID_REQUEST, f"multipart part {name!r} is not valid {charset}: send UTF-8",
                           param=name) from None
    return fields


async def read_bounded(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to be larger than max_bytes."""
    check_declared_length(request.headers.get("content-length"), max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large(None, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int) -> object:
    """The parsed body; 415, 413 and 400 before anything is parsed that should not be."""
    check_content_type(request.headers.get("content-type"))
    return parse_json(await read_bounded(request, max_bytes))


async def read_json_or_form(request: Request, max_bytes: int) -> object:
    """A JSON body, or the text fields of a multipart/form-data one."""
    content_type = request.headers.get("content-type") or ""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in ("application/json", "multipart/form-data"):
        raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                       f"Content-Type {media or '(none)'!r} is not supported: send application/json or"
                       " multipart/form-data", param="Content-Type")
    raw = await read_bounded(request, max_bytes)
    return form_fields(raw, content_type) if media == "multipart/form-data" else parse_json(raw)


# -- contracts --

def invalid(exc: ValidationError) -> ApiError:
    """The 400 of a body that does not match its contract, with the stable code and the field at fault."""
    code, message = describe_validation_error(exc)
    return ApiError(code, message, param=validation_error_param(exc))


def validate(model: type[_Model], data: dict[str, Any]) -> _Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None


def parse_body(model: type[_Model], data: object, what: str) -> _Model:
    """An OpenAI-style body as `model`; unknown fields are a 400 that names them."""
    if not isinstance(data, dict):
        raise ApiError(ErrorCode.INVALID_REQUEST, f"body must be a JSON object ({what})")
    body = validate(model, data)
    unsupported = body.unsupported() if isinstance(body, _Lenient) else []
    if unsupported:
        raise ApiError(ErrorCode.INVALID_PARAMETER,
                       f"not supported by genloom: {', '.join(unsupported)}; remove them", param=unsupported[0])
    return body


def build_job(model_cls: type[_Model], data: dict[str, Any], *, tenant: str, job_id: str | None,
              user: str | None = None, session: str | None = None) -> _Model:
    """The job request for the tenant (and the caller's idempotency key), validated by its contract.
    The caller's user id (free text on the OpenAI endpoints) becomes its scoped id."""
    data = {**data, "tenant": tenant}
    if job_id:
        data["job_id"] = job_id
    if user:
        data["user"] = scoped_user(tenant, user, "user")
    if session:
        data["session"] = session
    return validate(model_cls, data)


#: the header that names the conversation on the OpenAI endpoints (they have no body field for it)
SESSION_HEADER = "X-Genloom-Session"


def scoped_user(tenant: str, user: object, param: str) -> str:
    """`scoped_user_id` of a caller's user id, or a 400 that says what a user id may be."""
    if not isinstance(user, str) or not user.strip() or len(user) > MAX_USER_CHARS:
        raise ApiError(ErrorCode.INVALID_PARAMETER,
                       f"{param} must be a non-empty string of at most {MAX_USER_CHARS} characters", param=param)
    return scoped_user_id(tenant, user)


def build_request(data: object, tenant: str, idempotency_key: str | None) -> AnyRequest:
    """A `POST /v1/jobs` body as the request the gateway publishes.

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
    if data.get("client_job_id") is not None:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "`client_job_id` is set by genloom: give your id as `job_id` (or the Idempotency-Key header)",
            param="client_job_id",
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
    if data.get("user") is not None:
        data = {**data, "user": scoped_user(tenant, data["user"], "user")}
    try:
        return parse_request({**data, "tenant": tenant})
    except ValidationError as exc:
        raise invalid(exc) from None
