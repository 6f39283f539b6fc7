"""Client text, checked at the door: valid Unicode only (no lone surrogates, no NUL or other control
characters) and every string bounded, with limits that name the field.

`check_text(value, "payload")` walks a decoded JSON body (keys and values) and raises `BadText` naming
the first offending field; `clean(value)` makes any stored value safe to send back (a lone surrogate
becomes U+FFFD), so a listing survives a row that was written around the API.
"""

from __future__ import annotations

import re
from typing import Any

TEXT_LIMITS = {"prompt": 2000, "negative_prompt": 2000, "title": 300}   # characters, by field name
DEFAULT_TEXT_LIMIT = 200      # any other string: ids, names, codecs, colours, presets
KEY_LIMIT = 64                # an object's keys
MAX_PAYLOAD_CHARS = 128_000   # the whole payload as JSON (100 sequence entries with titles fit)
_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadText(ValueError):
    """A string a client sent is not acceptable text; the message names the field."""


def _why(ch: str) -> str:
    if "\ud800" <= ch <= "\udfff":
        return f"a lone surrogate U+{ord(ch):04X} (not valid Unicode)"
    return f"the control character U+{ord(ch):04X}"


def check_str(s: str, where: str, limit: int) -> None:
    """Refuse `s` if it is over `limit` characters or holds a surrogate or a control character."""
    if len(s) > limit:
        raise BadText(f"{where} is {len(s):,} characters, over the limit of {limit:,}")
    m = _BAD.search(s)
    if m is not None:
        raise BadText(f"{where}: character {m.start()} is {_why(m.group())}; send valid text")


def check_text(v: Any, where: str, _depth: int = 0) -> None:
    """Check every string in `v` (object keys too), recursively; raise `BadText` naming the field."""
    if _depth > 32:
        raise BadText(f"{where} is nested more than 32 levels deep")
    if isinstance(v, str):
        check_str(v, where, TEXT_LIMITS.get(where.rsplit(".", 1)[-1].split("[")[0], DEFAULT_TEXT_LIMIT))
    elif isinstance(v, dict):
        for k, x in v.items():
            check_str(str(k), f"{where} key {str(k)[:40]!r}", KEY_LIMIT)
            check_text(x, f"{where}.{k}", _depth + 1)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            check_text(x, f"{where}[{i}]", _depth + 1)


def check_payload_size(text_len: int, where: str = "payload") -> None:
    """Refuse a payload whose JSON is over `MAX_PAYLOAD_CHARS`."""
    if text_len > MAX_PAYLOAD_CHARS:
        raise BadText(f"{where} is {text_len:,} characters as JSON, over the limit of {MAX_PAYLOAD_CHARS:,}")


def clean(v: Any) -> Any:
    """A copy of `v` safe to encode as UTF-8: lone surrogates (from rows written around the API)
    become U+FFFD."""
    if isinstance(v, str):
        return _SURROGATE.sub("\ufffd", v)
    if isinstance(v, dict):
        return {clean(k): clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v
