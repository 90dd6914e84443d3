"""Reading a JSON body safely: content type, then size (header and streamed count), then JSON."""

from __future__ import annotations

import json

from fastapi import Request

from schemas.enums import ErrorCode

from .errors import ApiError


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
        return json.loads(body)
    except UnicodeDecodeError:
        raise ApiError(ErrorCode.INVALID_JSON, "body is not UTF-8: send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            ErrorCode.INVALID_JSON, f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


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
