"""What the service raises and how each error becomes a JSON response.

Every error body is :class:`hashret.serve.schemas.ErrorResponse`: ``{"detail", "status"}``
(plus ``errors`` for a request that failed validation). An unexpected exception is logged
and answered with a 500 of the same shape; the server keeps serving.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hashret.store.directory import IndexLockedError

log = logging.getLogger("hashret.serve")


class ServiceError(Exception):
    """An error with an HTTP status and a message for the client (and optional headers)."""

    status = 400
    #: refusal class counted by the refusal log, or None for an ordinary client error
    refusal: str | None = None

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class BadUpload(ServiceError):
    """An upload that is empty, not an image, or truncated (400)."""

    status = 400


class TooLarge(ServiceError):
    """A request body or an image over the configured limits (413)."""

    status = 413
    refusal = "too-large"


class NotFound(ServiceError):
    """An unknown or removed item, or an item without a stored image (404)."""

    status = 404


class ReadOnly(ServiceError):
    """An add to an index the server opened read-only (403)."""

    status = 403


class Busy(ServiceError):
    """The decode queue is full (503, with Retry-After): the client should retry shortly."""

    status = 503
    refusal = "busy"


class Unavailable(ServiceError):
    """The index could not be written for a reason other than a full disk (503); nothing was added."""

    status = 503
    refusal = "unavailable"


class InsufficientStorage(ServiceError):
    """The disk (or a file-size or quota limit) is full (507); nothing was added."""

    status = 507
    refusal = "disk-full"


class BadRequest(ServiceError):
    """Parameters that do not go together (422), e.g. both an image and an id."""

    status = 422


def error_response(status: int, detail: str, errors: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail, "status": status}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_errors(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")]
        errors.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    detail = "; ".join(f"{'.'.join(e['loc']) or 'request'}: {e['msg']}" for e in errors) or "invalid request"
    return detail, errors


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error, expected or not, with a JSON :class:`ErrorResponse`."""

    @app.exception_handler(ServiceError)
    async def _service(request: Request, exc: ServiceError) -> JSONResponse:
        refusals = getattr(request.app.state, "refusals", None)
        if exc.refusal and refusals is not None:
            refusals.note(exc.refusal, f"{request.method} {request.url.path}: {exc.detail}")
        return error_response(exc.status, exc.detail, headers=exc.headers)

    @app.exception_handler(IndexLockedError)
    async def _locked(request: Request, exc: IndexLockedError) -> JSONResponse:
        return error_response(409, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_errors(exc)
        return error_response(422, detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}: see /docs for the API"
        return error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); the server keeps running, "
                                   "see its log")
