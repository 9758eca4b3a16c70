"""Pure-ASGI guards that run before FastAPI parses anything: body size, content type, timing."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_TYPES = ("application/json", "application/problem+json")
FORM_TYPE = "application/x-www-form-urlencoded"
"""Accepted on the console's form posts only (`/console/...`): the API itself takes JSON."""


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """413 for bodies over ``max_bytes`` (declared or streamed); 415 for non-JSON content types.

    A request without a content type is read as JSON: API Gateway test events and some clients
    omit it, and refusing them would be unhelpful.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        form_ok = content_type == FORM_TYPE and scope.get("path", "").startswith("/console/")
        if (
            content_type
            and not form_ok
            and content_type not in JSON_TYPES
            and not content_type.endswith("+json")
        ):
            await _reply(send, 415, f"unsupported content type {content_type!r}; send application/json")
            return
        if not content_type:
            # FastAPI would treat the body as form/bytes and answer 422: declare it JSON instead.
            rest = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*rest, (b"content-type", b"application/json")]}
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _reply(send, 413, f"request body over {self.max_bytes} bytes")
            return
        # Read the body up front (bounded) so an undeclared oversized body is refused too.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reply(send, 413, f"request body over {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_API = [
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
# The docs page: Swagger UI from /static (no CDN), its inline bootstrap script, its images.
_DOCS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; frame-ancestors 'none'",
    ),
]

# The console: its own stylesheet and vendored htmx only; no inline script or style, no other
# origin, forms post to itself; its pages (cases, labels) are never cached. Its referrer policy is
# same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on form posts, and
# the console checks that a post's Origin is its own.
_CONSOLE = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
]


class SecurityHeaders:
    """Headers every response carries: no MIME sniffing, no framing, no referrer; API answers
    are never cached (scores, decisions) and may load nothing; /docs and /static may load only
    this API's own assets."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == "/console" or path.startswith("/console/"):
            extra = _CONSOLE
        else:
            extra = _ALWAYS + (_DOCS if path == "/docs" or path.startswith("/static/") else _API)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {
                    **message,
                    "headers": [*message.get("headers", []), *[(k, v) for k, v in extra if k not in names]],
                }
            await send(message)

        await self.app(scope, receive, with_headers)


class Timing:
    """Reports every request's route, status and latency to the app's observer."""

    def __init__(self, app: ASGIApp, *, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", scope.get("path", ""))
            self.state.observer.request(
                route=path, status=status, latency_ms=(time.perf_counter() - start) * 1000
            )
