"""Every error is JSON ``{"error": {"code", "message", "param"}}`` with a stable ErrorCode."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.api import ErrorBody, ErrorDetail
from schemas.enums import ErrorCode

log = logging.getLogger(__name__)

#: one HTTP status per code, so a code always arrives with the same status
STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.INVALID_PARAMETER: 400,
    ErrorCode.UNKNOWN_MODALITY: 400,
    ErrorCode.MODEL_NOT_FOUND: 404,
    ErrorCode.UNKNOWN_VOICE: 400,
    ErrorCode.UNKNOWN_SCHEDULER: 400,
    ErrorCode.INVALID_SIZE: 400,
    ErrorCode.EMPTY_INPUT: 400,
    ErrorCode.UNSUPPORTED_FORMAT: 400,
    ErrorCode.CONTEXT_LENGTH_EXCEEDED: 400,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.IDEMPOTENCY_CONFLICT: 409,
    ErrorCode.NOT_READY: 409,
    ErrorCode.REPLAY_EXPIRED: 410,
    ErrorCode.BACKEND_UNAVAILABLE: 503,
    ErrorCode.MODALITY_UNAVAILABLE: 503,
    ErrorCode.JOB_LOST: 503,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.GENERATION_ERROR: 500,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.CONTENT_FILTERED: 400,
    ErrorCode.CONTENT_POLICY_VIOLATION: 400,
    ErrorCode.MALFORMED_MESSAGE: 400,
    ErrorCode.MESSAGE_TOO_LARGE: 413,
    ErrorCode.INVALID_SIGNATURE: 403,
    ErrorCode.CANCELLED: 409,
    #: nginx's "client closed request": nobody reads it, but logs and metrics show who left
    ErrorCode.CLIENT_DISCONNECTED: 499,
}


class ApiError(Exception):
    """An error answer; raise it anywhere below a handler."""

    def __init__(
        self, code: ErrorCode, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 400)

    def body(self) -> ErrorBody:
        return ErrorBody(error=ErrorDetail(code=self.code, message=self.message, param=self.param))


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, f"no {what} {ident!r} for this API key", param=None)


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body().model_dump(mode="json"), status_code=err.status, headers=err.headers)


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc)


async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    # only path, query and header parameters get here: bodies are parsed by the handlers
    first = exc.errors()[0] if exc.errors() else {}
    loc = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    message = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:8]
    )
    return error_response(ApiError(ErrorCode.INVALID_PARAMETER, message, param=loc))


async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        err = ApiError(ErrorCode.NOT_FOUND, "no such route: see /openapi.json for the API")
    elif exc.status_code == 405:
        err = ApiError(ErrorCode.INVALID_REQUEST, f"method not allowed here: {exc.detail}")
    else:
        err = ApiError(ErrorCode.INVALID_REQUEST, str(exc.detail))
    response = error_response(err)
    response.status_code = exc.status_code
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


#: Retry-After of a 503 for a Redis that failed or did not answer in time
BACKEND_RETRY_AFTER_S = 2


def backend_unavailable(exc: BaseException) -> ApiError:
    """The 503 of a Redis that failed or timed out: the job store, not the request, is at fault."""
    log.warning("Redis unavailable: %s: %s", type(exc).__name__, exc)
    return ApiError(
        ErrorCode.BACKEND_UNAVAILABLE,
        f"the job store is unavailable ({type(exc).__name__}): retry after {BACKEND_RETRY_AFTER_S}s",
        headers={"Retry-After": str(BACKEND_RETRY_AFTER_S)},
    )


async def _redis_error(_: Request, exc: RedisError) -> JSONResponse:
    return error_response(backend_unavailable(exc))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in the gateway")
    return error_response(
        ApiError(ErrorCode.INTERNAL_ERROR, f"internal error ({type(exc).__name__}): please report it with the job id")
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RedisError, _redis_error)
    app.add_exception_handler(Exception, _unexpected)
