"""The ASGI guard around the whole app: what every request and response goes through
before any routing or parsing.

- A request body larger than `max_body_bytes` is answered 413 (in the one error shape)
  without being parsed or kept: when Content-Length says so, or as soon as the bytes
  streamed in pass the limit (a Content-Length that lies, or chunked transfer). Up to
  DRAIN_BYTES of the rest is read and thrown away first, so that a client still sending
  gets to read the 413 instead of a reset connection; a larger body, or one sent with
  `Expect: 100-continue`, is answered at once and the connection closed.
  A body within the limit is read here and handed on whole.
- A query string or JSON body that is not valid UTF-8 is answered 422.
- Every response carries the security headers: a Content-Security-Policy that allows
  nothing inline and nothing from elsewhere, nosniff, no referrer, and no framing. The one
  policy covers /docs too: Swagger UI, served from here, runs under it (a browser test
  checks that it renders without a violation).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_response

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
DRAIN_BYTES = 16 * 1024 * 1024
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class Guard:
    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)

        try:
            unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            await self._refuse(scope, receive, send, 422, "the query string is not valid UTF-8",
                               details=[{"location": "query", "message": "not valid UTF-8"}])
            return

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            if declared <= DRAIN_BYTES and not _expects_continue(scope):
                await _drain(receive, 0)
            await self._too_large(scope, receive, send, declared)
            return

        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                if message.get("more_body", False):
                    await _drain(receive, size)
                await self._too_large(scope, receive, send, None)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)

        if body and _is_json(scope):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                await self._refuse(scope, receive, send, 422, f"the request body is not valid UTF-8 (byte {exc.start})",
                                   details=[{"location": "body", "message": "not valid UTF-8"}])
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, declared: int | None) -> None:
        size = f"{declared} bytes" if declared is not None else "more than that"
        await self._refuse(scope, receive, send, 413, f"the request body is too large: the limit is {self.max_body_bytes} bytes, this one is {size}",
                           details=[{"location": "body", "message": f"at most {self.max_body_bytes} bytes"}],
                           headers={"connection": "close"})

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, message: str,
                      details: list[dict] | None = None, headers: dict | None = None) -> None:
        await error_response(status, message, details=details, headers=headers)(scope, receive, send)


async def _drain(receive: Receive, received: int) -> None:
    """Read and discard the rest of a refused body, up to DRAIN_BYTES in all."""
    while received <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _expects_continue(scope: Scope) -> bool:
    return (_header(scope, b"expect") or b"").lower() == b"100-continue"


def _with_headers(send: Send) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            headers.extend((name, value) for name, value in SECURITY_HEADERS if name not in present)
            message = {**message, "headers": headers}
        await send(message)

    return send_with_headers


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value
    return None


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _is_json(scope: Scope) -> bool:
    content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    return content_type in (b"", b"application/json") or content_type.endswith(b"+json")
