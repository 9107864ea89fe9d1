"""Every refusal of the API is JSON ``{"error": {code, message, hint, details}}`` with a 4xx
status (503 ``service.unavailable`` when Redis is unreachable, at once and with Retry-After:
the API's job store does not wait an outage out); the codes are those of
``pipeline.core.errors``."""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.core.errors import HINTS, TRANSIENT_CODES, ErrorCode, RecastError

log = logging.getLogger("recast.api")

RETRY_AFTER_S = 5
"""Retry-After of a 503: Redis restarting takes seconds."""

STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.REQUEST_INVALID: 422,
    ErrorCode.REQUEST_UNAUTHORIZED: 401,
    ErrorCode.REQUEST_NOT_FOUND: 404,
    ErrorCode.REQUEST_CONFLICT: 409,
    ErrorCode.REQUEST_TOO_LARGE: 413,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.CLIP_PARENT_NOT_FOUND: 404,
    ErrorCode.CLIP_PARENT_NOT_READY: 409,
    ErrorCode.CARD_NOT_FOUND: 404,
    ErrorCode.CARD_NOT_READY: 409,
    ErrorCode.INTERNAL: 500,
}


def status_for(code: ErrorCode) -> int:
    if code in STATUS_BY_CODE:
        return STATUS_BY_CODE[code]
    if code in TRANSIENT_CODES:
        return 503
    return 422  # the source or its options cannot be used


def error_response(
    code: ErrorCode,
    message: str,
    *,
    status: int | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "code": str(code),
            "message": message,
            "hint": HINTS.get(code, ""),
            "details": details or [],
        }
    }
    status = status or status_for(code)
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S), **(headers or {})}
    return JSONResponse(body, status_code=status, headers=headers)


def _details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for item in exc.errors()[:20]:
        details.append(
            {
                "loc": [str(part) for part in item.get("loc", ())],
                "msg": str(item.get("msg", ""))[:300],
                "type": str(item.get("type", "")),
            }
        )
    return details


def install(app: FastAPI) -> None:
    async def on_recast_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RecastError)
        headers = (
            {"WWW-Authenticate": "Bearer"} if exc.code is ErrorCode.REQUEST_UNAUTHORIZED else None
        )
        return error_response(exc.code, exc.message, headers=headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(
            ErrorCode.REQUEST_INVALID, "The request is not valid.", details=_details(exc)
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = ErrorCode.REQUEST_NOT_FOUND if exc.status_code == 404 else ErrorCode.REQUEST_INVALID
        return error_response(code, str(exc.detail), status=exc.status_code)

    async def on_redis(request: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unreachable: %s", exc)
        return error_response(ErrorCode.SERVICE_UNAVAILABLE, "Redis is unreachable.")

    async def on_anything(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(ErrorCode.INTERNAL, "Unexpected error.", status=500)

    app.add_exception_handler(RecastError, on_recast_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(redis.RedisError, on_redis)
    app.add_exception_handler(Exception, on_anything)
