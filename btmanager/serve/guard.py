"""The checks every request passes before any route: one pure ASGI middleware (cheap).

In order: the Host header (loopback servers only answer to loopback names, which defeats DNS
rebinding), the Origin of state-changing requests (no cross-site form posts, the CSRF a
`--no-auth` server would otherwise allow), the bearer token, and the body size (Content-Length
and the bytes actually streamed). Every answer also gets headers that keep the page and the
downloads from being framed, sniffed or cached.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from btmanager.serve.auth import is_loopback, token_matches

# The page shell and the health check are open; everything else needs the token.
OPEN_PATHS = frozenset({"/", "/api/health", "/favicon.ico"})
OPEN_PREFIXES = ("/static/",)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
COMMON_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", PAGE_POLICY.encode()),
]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large (limit {limit} bytes)")


def _host_name(value: str) -> str:
    """`[::1]:5001` -> `::1`, `localhost:5001` -> `localhost`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        host: str,
        cors: Iterable[str],
        max_body: int,
    ) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body
        self.cors = frozenset(cors)
        # Only a loopback server knows every name it may be reached by.
        self.hosts = LOOPBACK_NAMES | {host.strip("[]").lower()} if is_loopback(host) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        path: str = scope["path"]
        is_api = not (path in ("/", "/favicon.ico") or path.startswith(OPEN_PREFIXES))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(COMMON_HEADERS)
                if is_api:
                    extra.append((b"cache-control", b"no-store"))
                present = {name.lower() for name, _value in message.get("headers", [])}
                # A route's own (stricter) policy or caching wins; these are the defaults.
                message["headers"] = [
                    *message.get("headers", []),
                    *((name, value) for name, value in extra if name not in present),
                ]
            await send(message)

        host = headers.get("host", "")
        if self.hosts is not None and _host_name(host) not in self.hosts:
            await _refuse(send_with_headers, 400, "unexpected Host header")
            return
        if scope["method"] in UNSAFE_METHODS and not self._origin_ok(headers, host):
            await _refuse(send_with_headers, 403, "cross-origin request refused")
            return
        authorized = self.token is None or token_matches(self.token, headers.get("authorization"))
        scope.setdefault("state", {})["authorized"] = authorized
        if not authorized and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
            message = "missing bearer token" if "authorization" not in headers else "bad token"
            await _refuse(send_with_headers, 401, message, [(b"www-authenticate", b"Bearer")])
            return
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                await _refuse(send_with_headers, 400, "bad Content-Length")
                return
            if int(length) > self.max_body:
                await _refuse(send_with_headers, 413, BodyTooLarge(self.max_body).detail)
                return
        started = False
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send_with_headers(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as exc:
            # Read outside FastAPI's body handling (which answers it itself): answer here.
            if started:
                raise
            await _refuse(send_with_headers, 413, exc.detail)

    def _origin_ok(self, headers: dict[str, str], host: str) -> bool:
        """Browsers send Origin with every cross-site POST; other clients usually none."""
        origin = headers.get("origin")
        if origin is None:
            return True
        return origin in self.cors or origin.lower() in (f"http://{host}", f"https://{host}")


async def _refuse(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"success": False, "error": message}, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
