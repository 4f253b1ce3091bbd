"""The review page's front door: host check, session token, body limit, safe headers.

One ASGI middleware in front of every route, so a route added later is guarded too:
- the Host header must name this server (a page of another site whose name was made to
  resolve to 127.0.0.1, "DNS rebinding", cannot read the page or its token);
- every request that may change something (anything but GET, HEAD, OPTIONS) must carry
  the session token in the `X-Lookalike-Token` header: another site's page cannot send
  that header without the browser asking us first, and we never agree (no CORS);
- request bodies are read up to `max_body` bytes, then refused with 413;
- responses forbid inline scripts, framing, type sniffing and referrers.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

TOKEN_HEADER = "x-lookalike-token"
"""Header carrying the session token (lower case, as ASGI gives header names)."""

MAX_BODY = 256 * 1024
"""Largest request body accepted, in bytes (the biggest, a quarantine list, is far less)."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")

_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def host_name(header: str) -> str:
    """The name in a Host header: 'localhost:8765' -> 'localhost', '[::1]:80' -> '::1'."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Wraps the app: refuses foreign hosts, token-less changes and oversized bodies.

    `hosts`: names the Host header may carry; None accepts any (a server bound to all
    interfaces on purpose, `--host 0.0.0.0`).
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        hosts: Collection[str] | None = LOOPBACK_NAMES,
        max_body: int = MAX_BODY,
    ) -> None:
        self.app = app
        self.token = token.encode()
        self.hosts = None if hosts is None else frozenset(h.lower() for h in hosts)
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
        if self.hosts is not None:
            host = host_name(headers.get(b"host", b"").decode("latin-1")).lower()
            if host not in self.hosts:
                await _answer(send, 400, "unexpected Host header: open the address serve printed")
                return
        if scope["method"] not in SAFE_METHODS:
            given = headers.get(TOKEN_HEADER.encode(), b"")
            if not secrets.compare_digest(given, self.token):
                await _answer(send, 403, "missing or wrong session token: reload the page")
                return
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            await _answer(send, 400, "bad Content-Length")
            return
        if declared > self.max_body:
            await _answer(send, 413, f"request body over {self.max_body} bytes")
            return
        body = bytearray()
        if scope["method"] not in SAFE_METHODS or declared:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body += message.get("body", b"")
                if len(body) > self.max_body:
                    await _answer(send, 413, f"request body over {self.max_body} bytes")
                    return
                if not message.get("more_body", False):
                    break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *(h for h in _HEADERS if h[0] not in present),
                ]
            await send(message)

        await self.app(scope, replay, with_headers)
