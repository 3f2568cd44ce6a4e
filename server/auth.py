"""Who is asking: reviewer sign-in with a session cookie, CSRF tokens, API bearer tokens,
and the sign-in rate limit.

The session cookie is HttpOnly (no script reads it), SameSite=Lax (a cross-site page
cannot make the browser send it with a POST; following a link to a review page from
elsewhere still arrives signed in), and Secure, except when the page is served over plain
http to a loopback address (127.0.0.1, localhost, ::1): that is a developer's machine or a
test, where there is no TLS and nothing crosses a network. A sign-in over plain http to
any other address is refused. Every form carries a CSRF token (the session's, or before
sign-in a random one also set in a cookie); a POST without the right one gets a 403.

API clients send `Authorization: Bearer TOKEN` (from `medkb users token NAME`); a JSON
request riding on a session cookie must send the session's CSRF token in `X-CSRF-Token`.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from retrieval.accounts import Account, AccountStore, Session, SignInLimiter
from server.errors import ApiError, error_body

SESSION_COOKIE = "medkb_session"
SIGNIN_COOKIE = "medkb_signin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
MAX_FORM_BYTES = 64 * 1024
MAX_NAME_CHARS = 64  # the longest account name (retrieval.accounts)
MAX_NEXT_CHARS = 200  # the longest path a sign-in returns to (a page's path; an article id is echoed no further)
NEEDS_HTTPS = "Sign-in needs HTTPS: serve medkb behind TLS (plain http is allowed on 127.0.0.1 and localhost only)."

router = APIRouter()


class AuthError(ApiError):
    """An ApiError with response headers (WWW-Authenticate on a 401, Retry-After on a 429)."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None):
        super().__init__(status, message, code=code)
        self.headers = headers or {}


def install(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError):
        return JSONResponse(error_body(exc.status, exc.code, exc.message, exc.details), status_code=exc.status, headers=exc.headers)

    app.include_router(router)


def unauthenticated(message: str = "sign in, or send Authorization: Bearer TOKEN (from `medkb users token NAME`)") -> AuthError:
    return AuthError(401, message, "unauthenticated", {"WWW-Authenticate": 'Bearer realm="medkb"'})


def forbidden(message: str) -> AuthError:
    return AuthError(403, message, "forbidden")


def accounts(request: Request) -> AccountStore:
    return request.app.state.accounts


def limiter(request: Request) -> SignInLimiter:
    return request.app.state.signin_limiter


def loopback_http(request: Request) -> bool:
    return request.url.scheme == "http" and (request.url.hostname or "") in LOOPBACK


def secure_cookies(request: Request) -> bool:
    return not loopback_http(request)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def current_session(request: Request) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    return accounts(request).session(token) if token else None


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


@dataclass(frozen=True)
class Principal:
    account: Account
    via: str  # "token" or "session"


def api_principal(request: Request) -> Principal:
    """The account behind a JSON API request: a bearer token, or a session cookie with its
    CSRF token in X-CSRF-Token. 401 without credentials (or with a bad token); 403 for a
    session without its CSRF token."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated("Authorization must be 'Bearer TOKEN'")
        account = accounts(request).account_for_token(token.strip())
        if account is None:
            raise unauthenticated("the token is unknown or revoked")
        return Principal(account, "token")
    session = current_session(request)
    if session is None:
        raise unauthenticated()
    if not same(request.headers.get(CSRF_HEADER), session.csrf):
        raise forbidden("missing or wrong CSRF token: send the session's token in X-CSRF-Token")
    return Principal(session.account, "session")


class AuthenticatedRoute(APIRoute):
    """A JSON API route that finds who is asking (`api_principal`) before FastAPI reads the body
    or validates a parameter: a client without credentials gets its 401 (a session without its
    CSRF token its 403) whatever it sent, never a 422 about a request it may not make. The
    handler takes the principal with `Depends(principal)`. (The guard's 413 for an oversized
    body, and 422 for one that is not UTF-8, still come first: they are answered before routing.)"""

    def get_route_handler(self):
        handle = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            request.state.principal = await run_in_threadpool(api_principal, request)  # the account store is blocking I/O
            return await handle(request)

        return authenticated


def principal(request: Request) -> Principal:
    """The principal an AuthenticatedRoute found for this request (elsewhere: `api_principal` now)."""
    found = getattr(request.state, "principal", None)
    return found if isinstance(found, Principal) else api_principal(request)


async def read_form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as {field: first value}."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ApiError(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise ApiError(415, "send the form as application/x-www-form-urlencoded", code="unsupported_media_type")
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def safe_next(target: str | None) -> str:
    """Only a path on this site, never another origin, and no longer than a page's path (it is
    echoed into the sign-in form): else the review queue."""
    if target and len(target) <= MAX_NEXT_CHARS and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/reviews"


def set_session_cookie(response: Response, request: Request, session: Session, ttl: int) -> None:
    response.set_cookie(SESSION_COOKIE, session.token, max_age=ttl, path="/", httponly=True, samesite="lax", secure=secure_cookies(request))


def _page(request: Request, name: str, context: dict, status: int = 200, headers: dict | None = None) -> HTMLResponse:
    from server.reviews import render  # the review pages' renderer (same templates and nav)

    return render(request, name, context, status, headers)


def _signin_page(request: Request, next_url: str, error: str | None = None, status: int = 200, headers: dict | None = None, name: str = "") -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = _page(request, "signin.html", {"csrf": token, "next": next_url, "error": error, "name": name}, status, headers)
    response.set_cookie(SIGNIN_COOKIE, token, max_age=3600, path="/signin", httponly=True, samesite="strict", secure=secure_cookies(request))
    return response


@router.get("/signin", response_class=HTMLResponse, include_in_schema=False)
def signin_form(request: Request, next: str | None = None) -> HTMLResponse:
    needs_https = request.url.scheme != "https" and not loopback_http(request)
    return _signin_page(request, safe_next(next), NEEDS_HTTPS if needs_https else None)


@router.post("/signin", response_class=HTMLResponse, include_in_schema=False)
async def signin(request: Request) -> Response:
    form = await read_form(request)
    next_url = safe_next(form.get("next"))
    name = form.get("name", "").strip().lower()[:MAX_NAME_CHARS]  # echoed back into the form: never more than a name may hold
    if request.url.scheme != "https" and not loopback_http(request):
        return _signin_page(request, next_url, NEEDS_HTTPS, 400, name=name)
    if not same(form.get(CSRF_FIELD), request.cookies.get(SIGNIN_COOKIE)):
        return _signin_page(request, next_url, "The form has expired or did not come from this site (missing CSRF token). Please try again.", 403, name=name)
    address = client_address(request)
    wait = await run_in_threadpool(limiter(request).retry_after, name, address)
    if wait is not None:
        return _signin_page(request, next_url, f"Too many failed sign-ins. Try again in {wait} seconds.", 429, {"Retry-After": str(wait)}, name=name)
    account = await run_in_threadpool(accounts(request).authenticate, name, form.get("password", ""))
    if account is None:
        await run_in_threadpool(limiter(request).failed, name, address)
        return _signin_page(request, next_url, "Wrong account name or password.", 401, name=name)
    await run_in_threadpool(limiter(request).succeeded, name)
    settings = request.app.state.settings
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        accounts(request).end_session(old)
    session = accounts(request).new_session(account.name, settings.session_ttl)
    response = RedirectResponse(next_url, status_code=303)
    set_session_cookie(response, request, session, settings.session_ttl)
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


@router.post("/signout", include_in_schema=False)
async def signout(request: Request) -> Response:
    form = await read_form(request)
    session = current_session(request)
    if session is not None:
        if not same(form.get(CSRF_FIELD), session.csrf):
            return _page(request, "message.html", {"title": "Not signed out", "message": "Missing or wrong CSRF token."}, 403)
        accounts(request).end_session(session.token)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
