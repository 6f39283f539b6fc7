"""API tokens: who may call the REST API, what they own, and their limits.

A token is shown once when it is created (`python -m studio tokens create NAME`) and stored only as
its SHA-256 (tokens are 256 random bits, so a fast hash is enough), in the jobs database.  Its name
is its owner: every job, upload and output of the token lives under `outputs/<name>/`.  Looking a
token up compares the hash with every live token's in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from .store import LOCAL_OWNER, JobStore

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
RESERVED_NAMES = frozenset({LOCAL_OWNER, "uploads", "logs", "admin-token"})
TOKEN_PREFIX = "st_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL DEFAULT 0,
    rate_per_min INTEGER NOT NULL,
    submits_per_min INTEGER NOT NULL,
    max_queued INTEGER NOT NULL,
    max_seconds REAL NOT NULL,
    max_frames INTEGER NOT NULL,
    max_pixels INTEGER NOT NULL,
    max_temp_bytes INTEGER NOT NULL,
    max_upload_bytes INTEGER NOT NULL,
    created REAL NOT NULL
);
"""


@dataclass
class Limits:
    """A token's limits.  Defaults are sized for one GPU."""

    rate_per_min: int = 600            # API requests per minute
    submits_per_min: int = 60          # job submissions and uploads per minute
    max_queued: int = 20               # queued + running jobs at once
    max_seconds: float = 7200.0        # a job's estimated seconds (its ledger's total)
    max_frames: int = 3600             # frames in a job's output
    max_pixels: int = 4096 * 4096      # pixels in one output frame (width × height)
    max_temp_bytes: int = 20 * 10**9   # the largest frame buffer a job holds (memory or temp file)
    max_upload_bytes: int = 5 * 10**9  # all of the owner's uploads together, on disk

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise ValueError(f"limit {f.name}={v!r} must be a positive number")


@dataclass
class Token:
    """One API token's record (never the token itself)."""

    name: str
    admin: bool
    limits: Limits
    created: float

    @property
    def owner(self) -> str:
        """The owner of everything this token submits: its name."""
        return self.name

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for `tokens list`)."""
        return {"name": self.name, "admin": self.admin, "created": self.created, **asdict(self.limits)}


def check_name(name: Any) -> str:
    """An owner/token name: 1–32 of a-z 0-9 _ - (starting with a letter or digit), not reserved."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"token name {name!r} must be 1-32 characters of a-z, 0-9, '_' or '-', "
                         "starting with a letter or digit")
    if name in RESERVED_NAMES:
        raise ValueError(f"token name {name!r} is reserved ({', '.join(sorted(RESERVED_NAMES))})")
    return name


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


_LIMIT_COLS = [f.name for f in fields(Limits)]


class TokenStore:
    """The `tokens` table beside the jobs in a `JobStore`'s database."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        with store.conn() as c:
            c.executescript(_SCHEMA)

    def create(self, name: str, *, admin: bool = False, limits: Limits | None = None) -> str:
        """Create a token and return it (the only time it is seen); ValueError if the name is taken."""
        check_name(name)
        limits = limits or Limits()
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        cols = ["name", "hash", "admin", *_LIMIT_COLS, "created"]
        vals = [name, _hash(token), int(admin), *[getattr(limits, k) for k in _LIMIT_COLS], time.time()]
        with self.store.conn() as c:
            if c.execute("SELECT 1 FROM tokens WHERE name=?", (name,)).fetchone():
                raise ValueError(f"a token named {name!r} exists; revoke it first")
            c.execute(f"INSERT INTO tokens ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals)
        return token

    def revoke(self, name: str) -> None:
        """Delete a token; ValueError naming it when there is none."""
        with self.store.conn() as c:
            n = c.execute("DELETE FROM tokens WHERE name=?", (name,)).rowcount
        if not n:
            raise ValueError(f"no token named {name!r}")

    def _rows(self) -> list[Any]:
        with self.store.conn() as c:
            return c.execute("SELECT * FROM tokens ORDER BY name").fetchall()

    @staticmethod
    def _token(row: Any) -> Token:
        return Token(row["name"], bool(row["admin"]), Limits(**{k: row[k] for k in _LIMIT_COLS}),
                     row["created"])

    def list(self) -> list[Token]:
        """Every token's record, by name."""
        return [self._token(r) for r in self._rows()]

    def get(self, name: str) -> Token:
        """The token record named `name` (KeyError when none)."""
        for t in self.list():
            if t.name == name:
                return t
        raise KeyError(name)

    def any(self) -> bool:
        """Whether any token exists."""
        with self.store.conn() as c:
            return c.execute("SELECT 1 FROM tokens LIMIT 1").fetchone() is not None

    def authenticate(self, token: str | None) -> Token | None:
        """The token record for a presented token, or None.  Compares against every live hash."""
        if not token or len(token) > 256:
            return None
        want = _hash(token)
        found = None
        for row in self._rows():
            if hmac.compare_digest(want, row["hash"]):
                found = row
        return self._token(found) if found is not None else None
