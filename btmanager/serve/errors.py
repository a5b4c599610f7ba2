"""Errors as HTTP answers, decided in one place: `{"success": false, "error": "..."}`.

Core errors (`BtError` subclasses) map to a status by class; a route refuses with `ApiError`.
Anything unexpected is a 500 saying only "internal error" (the traceback goes to the server's
log, never to the client).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from btmanager.errors import (
    AmbiguousRunError,
    BtError,
    NotFoundError,
    RegistryError,
    RulesError,
    StorageError,
    UsageError,
)
from btmanager.serve.scripts import ForbiddenScript

log = logging.getLogger("btmanager.serve")

# The first class in a BtError's MRO found here decides its status.
STATUS_OF: dict[type[BtError], int] = {
    ForbiddenScript: 403,
    NotFoundError: 404,
    AmbiguousRunError: 400,
    RulesError: 400,
    UsageError: 400,
    # The registry or the results folder cannot be used right now (locked, full, read-only).
    RegistryError: 503,
    StorageError: 503,
    BtError: 400,
}


class ApiError(Exception):
    """A refusal of the HTTP layer itself (409 cancel of a finished run, 429, 501, ...)."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


def status_of(exc: BtError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]  # type: ignore[index]
    return 400


def _finite(value: Any) -> Any:
    """NaN and infinities as null: JSON has no such numbers, and browsers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class BtJSONResponse(JSONResponse):
    """Compact JSON, UTF-8 as is, always valid (non-finite numbers become null)."""

    def render(self, content: Any) -> bytes:
        try:
            text = json.dumps(content, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except ValueError:
            text = json.dumps(_finite(content), ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8")


def error_response(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {"success": False, "error": message, **(extra or {})}
    return BtJSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    text = str(first.get("msg", "invalid value"))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {text}{more}" if where else f"{text}{more}"


def install(app: FastAPI) -> None:
    async def bt_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BtError)
        return error_response(status_of(exc), str(exc))

    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.headers, exc.extra)

    async def invalid(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(400, _validation_message(exc))

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such endpoint"
        return error_response(exc.status_code, detail, dict(exc.headers or {}))

    async def os_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OSError)
        # The environment's problem (disk full, permissions), said without paths.
        return error_response(503, f"storage error: {exc.strerror or type(exc).__name__}")

    async def internal(_request: Request, exc: Exception) -> Response:
        log.error("internal error", exc_info=exc)
        return error_response(500, "internal error")

    app.add_exception_handler(BtError, bt_error)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(OSError, os_error)
    app.add_exception_handler(Exception, internal)
