"""One JSON error shape for every endpoint, and the mapping from exceptions to it.

    {"error": {"status": 422, "code": "invalid_request", "message": "...", "details": [...]}}

No stack trace ever reaches a client: unexpected exceptions are logged here and
answered with a 500 in the same shape. Nothing a client sent is echoed unbounded: every
message and location is cut to a few hundred characters (`clip`), text that cannot be
encoded (a lone surrogate) is escaped, and at most MAX_DETAILS details are listed.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("medkb.server")

CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large", 422: "invalid_request",
         429: "too_many_requests", 503: "unavailable"}
MAX_MESSAGE_CHARS = 500
MAX_LOCATION_CHARS = 120
MAX_DETAILS = 20


def clip(text: object, limit: int = 80) -> str:
    """`text` as something safe to echo: at most `limit` characters (with a mark where it was cut), encodable as UTF-8."""
    s = str(text)
    if len(s) > limit:
        s = s[:limit] + f"... ({len(s) - limit} more characters)"
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


class ApiError(Exception):
    """A client-facing error raised by handlers and services."""

    def __init__(self, status: int, message: str, code: str | None = None, details: list[dict] | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.details = details or []
        self.headers = headers


def error_body(status: int, code: str, message: str, details: list[dict] | None = None) -> dict:
    details = list(details or [])
    shown = [{"location": clip(d.get("location", ""), MAX_LOCATION_CHARS), "message": clip(d.get("message", ""), MAX_MESSAGE_CHARS)}
             for d in details[:MAX_DETAILS]]
    if len(details) > MAX_DETAILS:
        shown.append({"location": "", "message": f"and {len(details) - MAX_DETAILS} more problems"})
    return {"error": {"status": status, "code": code, "message": clip(message, MAX_MESSAGE_CHARS), "details": shown}}


def error_response(status: int, message: str, code: str | None = None, details: list[dict] | None = None,
                   headers: dict | None = None) -> JSONResponse:
    """The error shape as a response, for code outside the exception handlers (the ASGI guard)."""
    return _respond(status, code or CODES.get(status, "error"), message, details, headers)


def _respond(status: int, code: str, message: str, details: list[dict] | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, code, message, details), status_code=status, headers=headers)


def _location(loc: tuple) -> str:
    return ".".join(clip(part, 40) for part in loc)


def _name(loc: tuple) -> str:
    """The parameter a validation error is about, as a client wrote it: `review_status[1]` for
    the second value of a list, `body` for the body as a whole (a JSON decode error's location
    ends in a character position, not a field)."""
    name, indices = "", ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            indices += f"[{part}]" if i > 1 else ""  # loc[0] is where (body, query, path): an int after it is not an index
        else:
            name, indices = clip(part, 40), ""
    return f"{name}{indices}" or "request"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return _respond(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        details = [{"location": clip(_location(e.get("loc", ())), MAX_LOCATION_CHARS), "message": clip(e.get("msg", "invalid"), MAX_MESSAGE_CHARS)}
                   for e in errors]
        message = "; ".join(f"{_name(tuple(e.get('loc', ())))}: {d['message']}" for e, d in zip(errors[:3], details)) or "invalid request"
        if len(details) > 3:
            message += f"; and {len(details) - 3} more"
        return _respond(422, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and isinstance(exc.__cause__, (ValueError, RecursionError)):
            # FastAPI's own 400 for a body that json.loads gave up on other than by a syntax error
            # (arrays nested thousands deep, an integer of more than 4,300 digits): a bad body like
            # malformed JSON, so the same 422 as malformed JSON gets.
            problem = "cannot be read as JSON (nested too deeply, or a number with too many digits)"
            return _respond(422, "invalid_request", f"body: {problem}", [{"location": "body", "message": problem}])
        message = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "error")
        return _respond(exc.status_code, CODES.get(exc.status_code, "error"), message, headers=getattr(exc, "headers", None))

    settings = getattr(app.state, "settings", None)
    if settings is not None and settings.backend == "postgres":
        import psycopg

        async def _database_unavailable(request: Request, exc: Exception):
            # The database is down or unreachable (a lost connection, no connection within the
            # pool's wait): the service is unavailable for now, not broken; say so, and when to retry.
            log.warning("database unavailable on %s %s: %s", request.method, request.url.path, clip(exc, 200))
            return _respond(503, "unavailable", "the database is unavailable; try again in a few seconds", headers={"Retry-After": "5"})

        # psycopg_pool's PoolTimeout (no connection within the pool's wait) is an OperationalError too.
        app.add_exception_handler(psycopg.OperationalError, _database_unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _respond(500, "internal_error", "internal error: the server could not answer this request")
