"""Fetch an engine's weights from the Hugging Face Hub, only when a person asks (a `weights` job).

An engine's weights come in layouts (`layouts`): its diffusers folder (the whole repo, or only the
components still missing), or the ComfyUI single files the engine knows (fp8/GGUF, from a
repackaged repo) plus the tokenizer from the diffusers repo.  Each layout lands in the engine's
absolute `models/<engine>/` folder, where `studio.engines.loading` finds it.

`plan` asks the Hub (huggingface_hub's `HfApi.model_info`, `files_metadata=True`) which files a
layout takes and their sizes; `download` fetches them in a job: file by file, resumable (a
cancelled or broken file is kept as `.studio-partial/<file>.part` and continued with an HTTP Range
request), checked against its size and, for LFS files, its sha256, then moved into place
atomically.  huggingface_hub 2.x's own `hf_hub_download` deletes a partial file when it stops, so a
cancelled 10 GB shard would start again from zero; the byte stream here goes through
huggingface_hub's session, headers (token) and `hf_hub_url` instead.

`command` prints the same fetch as a shell command that works as shown: the `hf` beside this
Python, an absolute `--local-dir`.  The endpoint is `$HF_ENDPOINT` read at call time (tests point it
at a local server); nothing here runs at import time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .context import Cancelled
from .weights import WeightsError, models_dir

log = logging.getLogger(__name__)

PARTIAL = ".studio-partial"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """Files of one Hub repo: exact `files`, else those matching `patterns` (none: the whole repo)."""

    repo: str
    files: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """One way to get an engine's weights."""

    engine_id: str
    key: str                     # "diffusers" | "comfyui"
    label: str
    dest: Path                   # absolute models/<engine>
    sources: tuple[Source, ...]


@dataclass
class Plan:
    """What a layout takes: files with sizes, what is here already, and the free disk."""

    layout: Layout
    files: list[tuple[Source, str, int, str | None]] = field(default_factory=list)  # (src, name, size, sha)
    commits: dict[str, str] = field(default_factory=dict)                           # repo -> commit
    have: int = 0                # bytes already in place (complete files and partial ones)

    @property
    def total(self) -> int:
        """Bytes of every file of the layout."""
        return sum(f[2] for f in self.files)

    @property
    def to_fetch(self) -> int:
        """Bytes still to download."""
        return max(0, self.total - self.have)


def hf_cli() -> str:
    """The `hf` command of this environment: the one beside this Python, else on PATH."""
    here = Path(sys.executable).parent / "hf"
    if here.is_file():
        return str(here)
    return shutil.which("hf") or "hf"


def endpoint() -> str | None:
    """$HF_ENDPOINT at call time (None: huggingface_hub's default, the Hub)."""
    return os.environ.get("HF_ENDPOINT") or None


def layouts(engine: Any, missing: list[str] | None = None) -> list[Layout]:
    """The layouts `engine` can be fetched in: its diffusers repo (only the `missing` components
    when some are already here), and its ComfyUI single files when the engine names them."""
    dest = (models_dir() / engine.engine_dir).resolve()
    pats = tuple(f"{m}/*" for m in missing) if missing else ()
    label = "diffusers folder" + (f" ({', '.join(missing)})" if missing else "")
    out = [Layout(engine.id, "diffusers", label, dest, (Source(engine.repo, patterns=pats),))]
    single = getattr(engine, "single_files", "") or ""
    if single:
        words = shlex.split(single)          # "hf download REPO file file ..." as the engine states it
        if len(words) < 4 or words[:2] != ["hf", "download"]:
            raise ValueError(f"engine {engine.id!r}: single_files={single!r} is not "
                             f"'hf download REPO FILE...'")
        kinds = sorted({"GGUF" if w.endswith(".gguf") else "fp8" for w in words[3:] if "fp8" in w or
                        w.endswith(".gguf")}) or ["single files"]
        out.append(Layout(engine.id, "comfyui", f"ComfyUI single files ({'/'.join(kinds)})", dest,
                          (Source(words[2], files=tuple(words[3:])),
                           Source(engine.repo, patterns=("tokenizer/*",)))))
    return out


def find_layout(engine: Any, key: str, missing: list[str] | None = None) -> Layout:
    """The layout named `key` of `engine` (ValueError naming the known ones)."""
    all_ = layouts(engine, missing)
    for lay in all_:
        if lay.key == key:
            return lay
    known = ", ".join(x.key for x in all_)
    raise ValueError(f"layout={key!r} is not one of {known} for engine {engine.id!r}")


def command(layout: Layout) -> list[str]:
    """Shell commands (one per source) that fetch `layout` as shown: full `hf` path, absolute dir."""
    out = []
    for s in layout.sources:
        args = [hf_cli(), "download", s.repo, *s.files]
        for p in s.patterns:
            args += ["--include", p]
        out.append(shlex.join([*args, "--local-dir", str(layout.dest)]))
    return out


def free_bytes(path: Path) -> int:
    """Free bytes on the disk that holds `path` (its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _inside(root: Path, name: str) -> Path:
    pp = PurePosixPath(name)
    if not name or pp.is_absolute() or ".." in pp.parts or "\\" in name or name.startswith(PARTIAL):
        raise WeightsError(f"the repo lists a file named {name!r}, which would land outside {root}; refused")
    return root / pp


def _hub_error(e: BaseException, repo: str) -> WeightsError:
    from huggingface_hub.errors import OfflineModeIsEnabled
    if isinstance(e, OfflineModeIsEnabled):
        return WeightsError("this studio runs with HF_HUB_OFFLINE=1; unset it to download weights")
    return WeightsError(f"could not reach the Hub for {repo} ({endpoint() or 'huggingface.co'}): "
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def plan(layout: Layout) -> Plan:
    """Ask the Hub which files `layout` takes and their sizes (metadata only, nothing downloaded)."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects
    api = HfApi(endpoint=endpoint())
    out = Plan(layout)
    for s in layout.sources:
        try:
            info = api.model_info(s.repo, files_metadata=True)
        except Exception as e:  # noqa: BLE001 - network, auth, missing repo: one plain message
            raise _hub_error(e, s.repo) from e
        out.commits[s.repo] = str(info.sha)
        sibs = {x.rfilename: x for x in (info.siblings or [])}
        if s.files:
            absent = [f for f in s.files if f not in sibs]
            if absent:
                raise WeightsError(f"{s.repo} has no {', '.join(absent)}")
            chosen = [sibs[f] for f in s.files]
        else:
            chosen = list(filter_repo_objects(sibs.values(), allow_patterns=list(s.patterns) or None,
                                              key=lambda x: x.rfilename))
        for x in chosen:
            _inside(layout.dest, x.rfilename)
            size = int(x.lfs.size if x.lfs else (x.size or 0))
            out.files.append((s, x.rfilename, size, x.lfs.sha256 if x.lfs else None))
    for _s, name, size, _sha in out.files:
        done, part = layout.dest / name, layout.dest / PARTIAL / f"{name}.part"
        if done.is_file() and done.stat().st_size == size:
            out.have += size
        elif part.is_file():
            out.have += min(size, part.stat().st_size)
    return out


def partial_bytes(layout: Layout) -> int:
    """Bytes of partial files a cancelled download left (0: nothing to resume)."""
    root = layout.dest / PARTIAL
    return sum(f.stat().st_size for f in root.rglob("*.part")) if root.is_dir() else 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(CHUNK):
            h.update(b)
    return h.hexdigest()


def _fetch_file(url: str, part: Path, size: int, tick: Any) -> None:
    """Stream `url` into `part`, continuing from its current length with a Range request."""
    from huggingface_hub.utils import build_hf_headers, get_session
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    if have > size:
        part.unlink()
        have = 0
    if have == size:
        return
    headers = build_hf_headers()
    if have:
        headers["Range"] = f"bytes={have}-"
    with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=60) as r:
        if r.status_code == 416:                    # the server has no such range: start again
            part.unlink()
            raise WeightsError(f"{url}: the server refused to resume; run the download again")
        if r.status_code >= 400:
            raise WeightsError(f"{url}: HTTP {r.status_code}")
        mode = "ab" if have and r.status_code == 206 else "wb"
        if mode == "wb":
            have = 0
        with open(part, mode) as f:
            for chunk in r.iter_bytes(CHUNK):
                f.write(chunk)
                have += len(chunk)
                tick(len(chunk))
    if have != size:
        raise WeightsError(f"{url}: got {have} bytes, expected {size} (connection dropped?); run the "
                           f"download again to resume")


def download(layout: Layout, ctx: Any) -> dict[str, Any]:
    """Fetch `layout` (see the module docstring); `ctx.step("download", bytes, total)` reports
    progress and honours cancel between chunks, leaving the partial file for a later resume."""
    from huggingface_hub import hf_hub_url
    p = plan(layout)
    need, free = p.to_fetch, free_bytes(layout.dest)
    if need > free:
        raise WeightsError(f"{layout.label} for {layout.engine_id} needs {need} more bytes in {layout.dest}, "
                           f"the disk has {free} free")
    layout.dest.mkdir(parents=True, exist_ok=True)
    done = p.have
    last = [0.0]

    def tick(n: int) -> None:
        nonlocal done
        done += n
        now = time.monotonic()
        if now - last[0] >= 0.2:
            last[0] = now
            ctx.step("download", done, p.total)
        else:
            ctx.check_cancel()

    ctx.step("download", done, p.total)
    fetched = []
    for s, name, size, sha in p.files:
        target = _inside(layout.dest, name)
        if target.is_file() and target.stat().st_size == size:
            continue
        part = layout.dest / PARTIAL / f"{name}.part"
        before = part.stat().st_size if part.is_file() else 0
        url = hf_hub_url(s.repo, name, revision=p.commits[s.repo], endpoint=endpoint())
        try:
            _fetch_file(url, part, size, tick)
        except (WeightsError, Cancelled):
            raise
        except Exception as e:  # noqa: BLE001 - network errors: one plain message, the partial kept
            raise _hub_error(e, s.repo) from e
        if sha and _sha256(part) != sha:
            part.unlink()
            raise WeightsError(f"{s.repo}/{name}: sha256 does not match the Hub's ({sha[:12]}…); the file "
                               f"was removed, run the download again")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, target)
        log.info("fetched %s/%s (%d bytes, resumed from %d)", s.repo, name, size, before)
        fetched.append(name)
    shutil.rmtree(layout.dest / PARTIAL, ignore_errors=True)
    ctx.step("download", p.total, p.total)
    return {"engine": layout.engine_id, "layout": layout.key, "dest": str(layout.dest),
            "files": fetched, "bytes": p.total, "commits": p.commits}
