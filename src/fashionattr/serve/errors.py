"""One error type and one error shape for every answer the service gives that is not a success.

Every error is JSON `{"error": "<a sentence saying what to do>"}`, plus `problems` (where and what) for a request
that does not match the API's declared parameters. The same shape is declared in /openapi.json for every status
an endpoint can answer, so a client generated from the spec reads errors as it reads anything else. A dependency
that is down (the catalogue's database, the model's worker) is a 503 with `Retry-After`: the client did nothing
wrong and may try again.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from fashionattr.errors import UnavailableError, UserError


class Problem(BaseModel):
    """One thing wrong with a request: where (e.g. `query k`) and what."""

    where: str = Field(description="the part of the request, e.g. `query k` or `body images 0 data`")
    message: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: str = Field(description="what went wrong and what to do, as a sentence")
    problems: list[Problem] | None = Field(None, description="each mismatch with the declared parameters (422)")


class ApiError(Exception):
    """An answer other than success: `status`, a sentence, and optional extra headers (e.g. `Retry-After`)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 problems: list[Problem] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.problems = problems


def unavailable(message: str, retry_after_s: int) -> ApiError:
    """A 503 for a part of the service that is down: the client may retry after `retry_after_s` seconds."""
    return ApiError(503, message, headers={"Retry-After": str(retry_after_s)})


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   problems: list[Problem] | None = None) -> JSONResponse:  # fmt: skip
    body = ErrorBody(error=message, problems=problems).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


STATUS_MEANINGS = {
    400: "the client disconnected before the request arrived",
    404: "no such item, file or route",
    409: "the server cannot do this with the model or catalogue it has",
    413: "the request is larger than the server accepts",
    415: "the request's content type is not one the endpoint reads",
    422: "the request does not match what the endpoint takes",
    500: "a bug in the service; the server log has the details",
    503: "a part the endpoint needs (model, catalogue) is down; retry after the Retry-After seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entries of these statuses, all with the one error body."""
    return {status: {"model": ErrorBody, "description": STATUS_MEANINGS[status]} for status in statuses}


COMMON_ERRORS = error_responses(422, 500, 503)
"""What any endpoint may answer: a request off the spec, a bug, a dependency down."""


def _outage_types() -> tuple[type[Exception], ...]:
    """Database errors that mean the database is unreachable or failing, not that the request is wrong (each
    catalogue backend names its own)."""
    from fashionattr.catalog.backends import outage_errors

    return (UnavailableError, *outage_errors())


def add_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    """Every error as an `ErrorBody`: FastAPI's own answers ({"detail": ...}) vary in shape."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers, exc.problems)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        if isinstance(exc, UnavailableError):
            return error_response(503, str(exc), {"Retry-After": str(retry_after_s)})
        return error_response(422, str(exc))

    async def outage(request: Request, exc: Exception) -> JSONResponse:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return error_response(503, f"a database the service needs is not answering ({reason}); try again shortly",
                              {"Retry-After": str(retry_after_s)})  # fmt: skip

    for kind in _outage_types():
        if not issubclass(kind, UserError):
            app.add_exception_handler(kind, outage)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(404, f"nothing at {request.url.path}; see /docs for the API")
        if exc.status_code == 405:
            return error_response(405, f"{request.method} is not allowed on {request.url.path}; see /docs")
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # The connection closed mid-body (the client left, or the body timeout shut it): no one reads this answer,
        # and it is no server error.
        return error_response(400, "the client disconnected before the whole request arrived")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [Problem(where=" ".join(str(p) for p in e.get("loc", ())), message=str(e.get("msg")))
                    for e in exc.errors()]  # fmt: skip
        summary = "; ".join(f"{p.where}: {p.message}" for p in problems)
        return error_response(422, f"invalid request: {summary}", problems=problems)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error ({type(exc).__name__}: {exc}); the server log has the details")
