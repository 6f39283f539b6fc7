"""`python -m studio.ui.serve [streamlit options]`: the studio under `streamlit run app.py`, refusing
foreign Host headers (421) as the REST API does, so a DNS-rebinding page cannot drive it.

Allowed: the loopback names, the `--server.address` it binds, and the names in $STUDIO_ALLOW_HOSTS
(comma-separated; `stack ui --allow-host NAME` sets it) for a proxy in front.  The check is one ASGI
middleware put first in Streamlit's own stack (Streamlit >= 1.5x serves through Starlette), so it sees
every HTTP request and every WebSocket handshake; a refused handshake is closed before it is accepted.
If this Streamlit has no such hook the launcher stops rather than serve the studio unguarded.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..jobs.guard import LOOPBACK_HOSTS, host_of

APP = Path(__file__).resolve().parents[2] / "app.py"


def allowed_hosts(argv: Iterable[str] = (), env: dict[str, str] | None = None) -> set[str]:
    """Loopback names, the bound address from `argv` and the names in $STUDIO_ALLOW_HOSTS."""
    env = os.environ if env is None else env
    hosts = set(LOOPBACK_HOSTS)
    args = list(argv)
    for i, a in enumerate(args):
        if a.startswith("--server.address="):
            hosts.add(a.split("=", 1)[1].lower())
        elif a == "--server.address" and i + 1 < len(args):
            hosts.add(args[i + 1].lower())
    hosts |= {h.strip().lower() for h in env.get("STUDIO_ALLOW_HOSTS", "").split(",") if h.strip()}
    return hosts - {"", "0.0.0.0", "::"}


class HostOnly:
    """ASGI middleware: a request or WebSocket whose Host is not in `allowed` gets 421 (or a close)."""

    def __init__(self, app: Any, allowed: set[str]) -> None:
        self.app, self.allowed = app, set(allowed)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = host_of(scope.get("headers") or [])
        if host in self.allowed:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": f"host {host[:100]!r} is not served here (allowed: "
                                     f"{', '.join(sorted(self.allowed))}); set STUDIO_ALLOW_HOSTS"}).encode()
        await send({"type": "http.response.start", "status": 421,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def install(allowed: set[str]) -> None:
    """Put `HostOnly` first in the middleware of every Streamlit app this process creates."""
    from starlette.middleware import Middleware
    from streamlit.web.server.starlette import starlette_app

    inner = getattr(starlette_app, "create_streamlit_middleware", None)
    if inner is None:
        raise RuntimeError("this Streamlit has no create_streamlit_middleware: cannot check Host headers")

    def with_host_check() -> list[Any]:
        return [Middleware(HostOnly, allowed=allowed), *inner()]

    starlette_app.create_streamlit_middleware = with_host_check


def main(argv: list[str] | None = None) -> None:
    """Run `streamlit run app.py ARGV` with the Host check installed."""
    from streamlit.web import cli

    args = list(sys.argv[1:] if argv is None else argv)
    install(allowed_hosts(args))
    cli.main(args=["run", str(APP), *args], prog_name="streamlit")


if __name__ == "__main__":
    main()
