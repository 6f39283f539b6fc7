"""Estimates that learn from this machine's own finished runs.

The stages' and engines' `estimate()` formulas are fixed per-megapixel constants, measured once on
some machine; on a loaded 2-core box they were 4-12x too low.  Every finished run appends, per
ledger row, the formula's seconds and the seconds it really took to `<outputs>/.estimates.jsonl`.
A new ledger then scales each row's formula by the median ratio (real / formula) of the latest
runs of the same step on the same device, preferring runs of a similar size (same power-of-two
bucket of megapixel-frames).  Overhead outside the stages (reading the input, saving the base clip,
the manifest) is learned as part of the encode row, so the rows add up to the run's wall time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENCODE_SECONDS_PER_MPX = {"h264": 0.012, "h265": 0.05, "vp9": 0.04, "prores": 0.01, "gif": 0.03,
                          "png": 0.03}
SEQUENCE_SECONDS_PER_MPX = 0.02   # compose (fit, blend) per output megapixel, before the encode
KEEP = 8              # the latest runs of a step that a ratio is taken from
WARM_S = 900.0        # a step that ran this recently is expected warm (its imports and models loaded)
_RAN: set[str] = set()   # steps this process has run (its next run of them is warm)
MAX_LINES = 4000      # the file is cut back to its newest half past this many lines
_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()


def load_factor(device: str) -> float:
    """How much slower CPU work runs now than on an idle machine: the 1-minute load average per core
    (at least 1); 1 on a GPU.  Ratios are stored divided by it and used multiplied by it, so runs
    taught under one load still predict under another."""
    if str(device).startswith("cuda"):
        return 1.0
    try:
        return max(1.0, os.getloadavg()[0] / max(1, os.cpu_count() or 1))
    except OSError:
        return 1.0


def history_path() -> Path:
    """Where finished runs' timings are kept (beside the outputs)."""
    from .outputs import outputs_dir
    return outputs_dir() / ".estimates.jsonl"


def row_key(row: dict[str, Any], device: str) -> str:
    """'engine:camera@cpu', 'upscale@cpu', 'encode:h264@cpu': what a learned ratio is kept for."""
    dev = "cuda" if str(device).startswith("cuda") else str(device)
    stage = str(row.get("stage"))
    label = str(row.get("label") or "")
    if stage == "engine":
        stage += ":" + str(row.get("detail") or label).split(":")[0].split(" ")[0]   # "camera: …"
        speed = row.get("speed")
        if isinstance(speed, dict) and speed.get("tier"):      # each speed tier learns on its own
            stage += "/" + str(speed["tier"])
    elif stage == "encode":
        stage += ":" + label.split()[-1] if label else ""
    return f"{stage}@{dev}"


def size_bucket(row: dict[str, Any]) -> int:
    """log2 of the row's megapixel-frames, rounded: runs of a similar size share a bucket."""
    mpx = float(row.get("frames") or 0) * float(row.get("width") or 0) * float(row.get("height") or 0) / 1e6
    return round(math.log2(mpx)) if mpx > 0 else -99


def _samples() -> list[dict[str, Any]]:
    path = history_path()
    try:
        st = path.stat()
    except OSError:
        return []
    sig = (str(path), st.st_mtime_ns, st.st_size)
    with _LOCK:
        if _CACHE.get("sig") == sig:
            return _CACHE["rows"]
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if isinstance(d, dict) and d.get("formula", 0) > 0 and d.get("actual", -1) >= 0:
                rows.append(d)
    with _LOCK:
        _CACHE.update(sig=sig, rows=rows)
    return rows


def ratio_for(key: str, bucket: int) -> tuple[float, int] | None:
    """(median real/formula ratio, runs it is from) for a step, or None before its first run.

    A worker's first run of a step pays for imports and model loads ("cold"); later ones do not.
    The next run is expected warm when the step last ran within `WARM_S`, and is then estimated
    from warm runs (cold ones otherwise), when there are such.
    """
    mine = [s for s in _samples() if s.get("key") == key]
    if not mine:
        return None
    cold = time.time() - float(mine[-1].get("t", 0.0)) > WARM_S
    mine = [s for s in mine if bool(s.get("cold")) == cold] or mine
    near = [s for s in mine if abs(int(s.get("bucket", -99)) - bucket) <= 1] or mine
    last = near[-KEEP:]
    return statistics.median(s["actual"] / s["formula"] / float(s.get("load", 1.0)) for s in last), len(last)


def learned(rows: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    """The rows with `est_seconds` scaled by what this machine's runs took (`est_formula` keeps the
    formula's seconds, `est_runs` how many runs the scale is from; absent before any run)."""
    out = []
    load = load_factor(device)
    for r in rows:
        r = dict(r)
        formula = float(r.get("est_formula", r.get("est_seconds") or 0.0))
        r["est_formula"] = formula
        got = ratio_for(row_key(r, device), size_bucket(r)) if formula > 0 else None
        if got:
            r["est_seconds"] = round(formula * got[0] * load, 3)
            r["est_runs"] = got[1]
        elif load > 1.0:
            r["est_seconds"] = round(formula * load, 3)
        out.append(r)
    return out


def record(rows: list[dict[str, Any]], timings: dict[str, float], device: str,
           total: float | None = None) -> None:
    """Append a finished run: each ledger row's formula seconds beside the seconds it took.

    `timings` is the run's ('engine', '<i>:<stage>', 'encode', 'total'); a row without a timing is
    skipped.  What `total` holds beyond the rows goes to the encode row.  Never raises: a run's
    output matters more than its estimate.
    """
    try:
        real: list[float | None] = []
        stage_i = 0
        for r in rows:
            if r.get("stage") == "engine":
                real.append(timings.get("engine"))
            elif r.get("stage") == "encode":
                real.append(timings.get("encode"))
            else:
                real.append(timings.get(f"{stage_i}:{r.get('stage')}"))
                stage_i += 1
        if total is not None and real and real[-1] is not None:
            real[-1] = real[-1] + max(0.0, total - sum(x or 0.0 for x in real))
        lines = []
        load = round(load_factor(device), 3)
        for r, secs in zip(rows, real, strict=True):
            formula = float(r.get("est_formula", r.get("est_seconds") or 0.0))
            if secs is None or formula <= 0:
                continue
            lines.append(_line(row_key(r, device), size_bucket(r), load, formula, float(secs)))
        _append(lines)
    except Exception:  # noqa: BLE001 - see the docstring
        log.exception("could not record this run's timings for the estimates")


def _line(key: str, bucket: int, load: float, formula: float, actual: float) -> str:
    cold = key not in _RAN
    _RAN.add(key)
    return json.dumps({"key": key, "bucket": bucket, "load": load, "formula": round(formula, 4),
                       "actual": round(actual, 4), "cold": cold, "t": round(time.time(), 1)})


def _append(lines: list[str]) -> None:
    if not lines:
        return
    path = history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    _trim(path)


def _trim(path: Path) -> None:
    try:
        text = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    if len(text) <= MAX_LINES:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(text[-MAX_LINES // 2:]) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def eta_seconds(rows: list[dict[str, Any]], stage: str | None, i: int, n: int,
                elapsed: float) -> float | None:
    """Seconds left for a running job: its ledger's plan, corrected by the pace so far.

    The fraction done counts the rows before the job's current stage plus `i/n` of it; the answer
    blends the plan's remainder (early on) with the remainder at the pace so far (later on).
    """
    total = sum(float(r.get("est_seconds") or 0.0) for r in rows)
    if total <= 0:
        return None
    done = 0.0
    stage_names = {"camera": "engine", "denoise": "engine", "color": "upscale"}
    want = stage_names.get(stage or "", stage)
    for r in rows:
        est = float(r.get("est_seconds") or 0.0)
        name = r.get("stage")
        if name == want or (want in ("interpolate", "upscale") and name == "interpolate-upscaled"):
            done += est * (min(i, n) / n if n else 0.0)
            break
        done += est
    else:
        done = 0.0          # a stage the plan does not list: go by the plan alone
    f = min(max(done / total, 0.0), 0.999)
    by_plan = max(0.0, total - elapsed)
    by_pace = elapsed * (1 - f) / f if f > 0.02 else by_plan
    return round((1 - f) * by_plan + f * by_pace, 1)


def _sequence_row(frames: int, width: int, height: int, codec: str) -> dict[str, Any]:
    mpx = frames * width * height / 1e6
    formula = mpx * (SEQUENCE_SECONDS_PER_MPX + ENCODE_SECONDS_PER_MPX.get(codec, 0.02))
    return {"stage": "sequence", "label": f"sequence {codec}", "frames": frames, "width": width,
            "height": height, "est_formula": round(formula, 4)}


def sequence_formula(frames: int, width: int, height: int, codec: str) -> float:
    """The formula's seconds for rendering a sequence plan of that shape (nothing learned)."""
    return float(_sequence_row(frames, width, height, codec)["est_formula"])


def sequence_estimate(frames: int, width: int, height: int, codec: str, device: str = "cpu"
                      ) -> tuple[float, int]:
    """(seconds, runs it learned from) for rendering a sequence plan of that shape."""
    row = _sequence_row(frames, width, height, codec)
    got = ratio_for(row_key(row, device), size_bucket(row))
    load = load_factor(device)
    return (round(row["est_formula"] * got[0] * load, 2), got[1]) if got else (
        round(row["est_formula"] * load, 2), 0)


def record_sequence(frames: int, width: int, height: int, codec: str, seconds: float,
                    device: str = "cpu") -> None:
    """Append a finished sequence render (its plan's shape and wall time).  Never raises."""
    row = _sequence_row(frames, width, height, codec)
    try:
        _append([_line(row_key(row, device), size_bucket(row), round(load_factor(device), 3),
                       row["est_formula"], float(seconds))])
    except Exception:  # noqa: BLE001 - a render's output matters more than its estimate
        log.exception("could not record this sequence's timing for the estimates")
