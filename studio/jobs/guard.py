"""The REST API's front door, as one ASGI middleware: Host, token, rate, body type and size, metrics.

In order, for every HTTP request:
1. the Host header must name an allowed host (loopback names and the bound address by default), else 421
   (a DNS-rebinding page gets nothing);
2. every route but `GET /health` needs `Authorization: Bearer <token>`, else 401 with `WWW-Authenticate`
   (and 429 with `Retry-After` once a client address has sent `bad_tokens_per_min` of those in a minute);
3. the token's request rate, else 429 with `Retry-After`;
4. a body must be `application/json` or `multipart/form-data`, else 415 (so a cross-site form post,
   which can only send text/plain or urlencoded bodies without a preflight, is refused);
5. a body over its limit answers 413: from `Content-Length` before anything is read, or while it
   streams (`BodyTooLarge`, raised from `receive`, is turned into a 413 by the app).
The token's record is left in `scope["state"]["token"]` for the routes.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
BODY_TYPES = ("application/json", "multipart/form-data")


class BodyTooLarge(Exception):
    """A request body passed its limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is over the limit of {limit:,} bytes")
        self.limit = limit


@dataclass
class GuardConfig:
    """What the front door allows."""

    allowed_hosts: set[str] = field(default_factory=lambda: set(LOOPBACK_HOSTS))
    max_json_bytes: int = 1_000_000
    max_upload_bytes: int = 50_000_000
    multipart_overhead: int = 64 * 1024     # form boundaries and headers around the one file
    bad_tokens_per_min: int = 120           # requests without a valid token, per client address


class RateLimiter:
    """Token buckets per key: `allow(key, per_min)` -> 0 (allowed) or seconds to wait."""

    def __init__(self) -> None:
        self._b: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, per_min: float) -> float:
        """Take one token from `key`'s bucket (capacity and refill of `per_min` a minute)."""
        now = time.monotonic()
        rate = per_min / 60.0
        with self._lock:
            tokens, last = self._b.get(key, (float(per_min), now))
            tokens = min(float(per_min), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._b[key] = (tokens - 1.0, now)
                return 0.0
            self._b[key] = (tokens, now)
            return max(1.0, math.ceil((1.0 - tokens) / rate))


def host_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The host named by a Host header, without its port, lower-case ('' if none)."""
    raw = ""
    for k, v in headers:
        if k == b"host":
            raw = v.decode("latin-1").strip().lower()
            break
    if raw.startswith("["):                      # [::1]:8000
        return raw[1:raw.find("]")] if "]" in raw else raw
    if raw.count(":") == 1:
        return raw.split(":")[0]
    return raw


async def _send_json(send: Callable[[dict], Awaitable[None]], status: int, detail: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """The middleware; `authenticate(token) -> record | None`, `record.limits.rate_per_min`."""

    def __init__(self, app: ASGIApp, *, config: GuardConfig, authenticate: Callable[[str], Any],
                 limiter: RateLimiter, on_response: Callable[[str, str, int], None] | None = None,
                 route_of: Callable[[Scope], str] | None = None) -> None:
        self.app, self.config, self.authenticate, self.limiter = app, config, authenticate, limiter
        self.on_response, self.route_of = on_response, route_of

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_wrapped(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            await self._handle(scope, receive, send_wrapped)
        finally:
            if self.on_response is not None:
                route = getattr(scope.get("route"), "path", None)
                if route is None:   # refused at the door: name the route it was for, never the raw path
                    route = self.route_of(scope) if self.route_of else "unmatched"
                self.on_response(scope["method"], route, status["code"])

    async def _handle(self, scope: Scope, receive: Any, send: Any) -> None:
        cfg = self.config
        headers = scope.get("headers") or []
        host = host_of(headers)
        if host not in cfg.allowed_hosts:
            await _send_json(send, 421, f"host {host[:100]!r} is not served here (allowed: "
                                        f"{', '.join(sorted(cfg.allowed_hosts))})")
            return
        if scope["path"] == "/health" and scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        wanted = (b"authorization", b"content-type", b"content-length", b"transfer-encoding")
        hdr = {k: v.decode("latin-1") for k, v in headers if k in wanted}
        auth = hdr.get(b"authorization", "")
        scheme, _, cred = auth.partition(" ")
        token = self.authenticate(cred.strip()) if scheme.lower() == "bearer" and cred.strip() else None
        if token is None:
            addr = (scope.get("client") or ("?",))[0]
            wait = self.limiter.allow(f"badtoken:{addr}", cfg.bad_tokens_per_min)
            if wait:
                await _send_json(send, 429, f"over {cfg.bad_tokens_per_min} requests a minute without a "
                                            f"valid token from this address; retry in {wait:.0f} s",
                                 [(b"retry-after", str(int(wait)).encode())])
                return
            await _send_json(send, 401, "a valid API token is required: Authorization: Bearer <token>"
                             if not auth else "the API token is not valid",
                             [(b"www-authenticate", b'Bearer realm="studio"')])
            return
        wait = self.limiter.allow(f"req:{token.name}", token.limits.rate_per_min)
        if wait:
            await _send_json(send, 429, f"over {token.limits.rate_per_min} requests a minute for token "
                                        f"{token.name!r}; retry in {wait:.0f} s",
                             [(b"retry-after", str(int(wait)).encode())])
            return
        scope.setdefault("state", {})["token"] = token
        ctype = hdr.get(b"content-type", "").split(";")[0].strip().lower()
        length = hdr.get(b"content-length")
        has_body = bool(ctype) or (length not in (None, "0")) or b"transfer-encoding" in hdr
        limit = cfg.max_json_bytes
        if has_body:
            if ctype not in BODY_TYPES:
                await _send_json(send, 415, f"content-type {ctype or 'none'!r} is not accepted; send "
                                            "application/json (or multipart/form-data to /uploads)")
                return
            if ctype == "multipart/form-data":
                limit = cfg.max_upload_bytes + cfg.multipart_overhead
            try:
                n = int(length) if length is not None else None
            except ValueError:
                await _send_json(send, 400, f"content-length {length[:30]!r} is not a number")
                return
            if n is not None and n > limit:
                await _send_json(send, 413, f"request body of {n:,} bytes is over the limit of {limit:,}")
                return
        seen = {"n": 0}

        async def receive_capped() -> dict:
            msg = await receive()
            if msg["type"] == "http.request":
                seen["n"] += len(msg.get("body", b""))
                if seen["n"] > limit:
                    raise BodyTooLarge(limit)
            return msg

        await self.app(scope, receive_capped, send)
