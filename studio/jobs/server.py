"""`python -m studio serve`: the REST API under uvicorn, with its first admin token and its logs.

The API only serves; worker processes run the jobs (`python -m studio worker`, or `stack api`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .api import ApiConfig, create_app
from .guard import LOOPBACK_HOSTS
from .tokens import TokenStore
from .worker import JobQueue


def _is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def bootstrap_admin(tokens: TokenStore) -> tuple[str, Path] | None:
    """With no token at all, create an admin token, write it to a mode-0600 file; return (token, file)."""
    from ..outputs import outputs_dir
    if tokens.any():
        return None
    token = tokens.create("admin", admin=True)
    path = outputs_dir() / ".admin-token"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, path


def serve(host: str = "127.0.0.1", port: int = 8000, allowed_hosts: list[str] | None = None,
          cors_origins: list[str] | None = None) -> None:
    """Run the REST API with uvicorn (blocks): tokens, host check, limits, logs under outputs/.logs."""
    import sys

    import uvicorn

    from .logs import setup_file_logging
    log_path = setup_file_logging("api.log")
    queue = JobQueue(devices=[])      # the API only serves: worker processes run the jobs
    made = bootstrap_admin(TokenStore(queue.store))
    if made:
        print(f"No API token existed, so an admin token was created (shown once):\n\n    {made[0]}\n\n"
              f"It is also in {made[1]} (mode 0600). Make more with `python -m studio tokens create NAME`.",
              file=sys.stderr)
    hosts = set(LOOPBACK_HOSTS) | {host} | set(allowed_hosts or [])
    if not _is_loopback(host):
        print(f"WARNING: binding to {host}: the API (job submission, uploads, every owner's results "
              "for admin tokens) is reachable from the network, guarded by tokens only. Put TLS in front "
              "(a reverse proxy) and allow its Host names with --allow-host. Allowed hosts now: "
              f"{', '.join(sorted(hosts))}", file=sys.stderr)
    import threading

    from .retention import Retention, start_pruning
    start_pruning(queue.store, Retention.from_env(), threading.Event())
    app = create_app(queue, ApiConfig(allowed_hosts=hosts, cors_origins=list(cors_origins or [])))
    print(f"logs: {log_path}; jobs run in worker processes (`python -m studio worker`, or "
          "`python -m studio stack api` for both)", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False)
