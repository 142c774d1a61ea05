"""The server's guard (pure ASGI middleware): the access token, same-origin writes and the
security headers every response carries."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse

# Same spirit as the report's CSP, plus this server ('self') for the serve script, its API and
# the compare page's frames; nothing else can be loaded or contacted.
SERVE_CSP = (
    "default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline' 'self'; "
    "script-src 'unsafe-inline' 'self'; connect-src 'self'; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'"
)
HEADER_CSP = SERVE_CSP + "; frame-ancestors 'self'"  # frame-ancestors only works as a header
TOKEN_COOKIE = "tamx_token"


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Guard:
    """Pure ASGI middleware: the access token, same-origin writes and security headers."""

    def __init__(self, app: Callable, token: str | None) -> None:
        self.app = app
        self.token = token

    def _matches(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        in_query = self.token is not None and self._matches(request.query_params.get("token", ""))
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        allowed = (
            self.token is None
            or in_query
            or any(self._matches(given) for given in (bearer, request.cookies.get(TOKEN_COOKIE, "")))
        )
        origin = request.headers.get("origin")
        foreign = origin is not None and urlsplit(origin).netloc != request.headers.get("host", "")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"content-security-policy", HEADER_CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                ]
                if in_query:  # the page's own requests then carry the token in a cookie
                    cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                    extra.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        denied = None
        if not allowed:
            denied = 401, "this server needs its token: open the URL it printed at start (?token=...)"
        elif scope["method"] not in ("GET", "HEAD") and foreign:
            denied = 403, "requests that change things must come from this server's own page"
        if denied is None:
            await self.app(scope, receive, send_with_headers)
        else:
            status, message = denied
            response = JSONResponse({"status": status, "message": message}, status_code=status)
            await response(scope, receive, send_with_headers)
