"""A client's job, taken in: every field checked, ids resolved to the owner's files, the work planned.

`prepare(body, who, ...)` turns a REST body into an `Intake`: the client's payload exactly as sent
(ids, never paths), the payload the worker runs (server paths, and an output path the server chose
under `outputs/<owner>/`), and the plan (the pre-run ledger's numbers), which is held against the
token's limits.  Anything wrong raises `Refused(status, message)` naming the field; nothing here ever
opens a path a client typed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .store import JobStore
from .textcheck import BadText, check_payload_size, check_text
from .tokens import Limits
from .uploads import UPLOAD_ID, UploadStore

CLIENT_KINDS = ("generate", "post", "rerun", "sequence")
ADMIN_KINDS = ("weights",)
OUTPUT_ID = re.compile(r"^[0-9a-f]{12}$")
MAX_SEQUENCE_ENTRIES = 100
MAX_LORAS = 8


class Refused(Exception):
    """A request the API answers with a 4xx: `status` and a message naming the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _short(v: Any, n: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[:n] + "…"


def _obj(v: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise Refused(422, f"{where} must be a JSON object, not {type(v).__name__}")
    for k in v:
        if k in ("out", "base_dir", "output_path", "out_dir"):
            raise Refused(422, f"{where}.{k}: the server picks every output path and folder; "
                               "remove this field")
    extra = sorted(set(v) - set(allowed))
    if extra:
        raise Refused(422, f"{where}: unknown field(s) {', '.join(map(repr, extra))} "
                           f"(allowed: {', '.join(allowed)})")
    return v


@dataclass
class Plan:
    """A job's planned size: what its limits are checked against."""

    est_seconds: float
    frames: int
    width: int
    height: int
    temp_bytes: int
    ledger: dict[str, Any] = field(default_factory=dict)

    def check(self, limits: Limits) -> None:
        """Refuse (422, with the number and the limit) work beyond the token's limits."""
        checks = [
            ("max_seconds", self.est_seconds, f"estimated time {self.est_seconds:,.1f} s"),
            ("max_frames", self.frames, f"{self.frames:,} output frames"),
            ("max_pixels", self.width * self.height,
             f"output frames of {self.width}x{self.height} = {self.width * self.height:,} pixels"),
            ("max_temp_bytes", self.temp_bytes, f"{self.temp_bytes:,} bytes of frame buffers"),
        ]
        for name, value, what in checks:
            limit = getattr(limits, name)
            if value > limit:
                shown = f"{limit:,.0f}" if float(limit).is_integer() else f"{limit:,}"
                raise Refused(422, f"this job needs {what}, over this token's limit of {shown} ({name})")


@dataclass
class Intake:
    """A checked job: the client's payload, the one the worker runs, and its plan."""

    kind: str
    payload: dict[str, Any]
    run_payload: dict[str, Any]
    plan: Plan | None


def _plan_from_ledger(led: Any) -> Plan:
    rows = led.rows
    temp = max(int(r["frames"]) * int(r["width"]) * int(r["height"]) * 3 for r in rows)
    # limits are checked on the formulas' seconds: they do not drift with this machine's load or history
    # (the learned `est_seconds` the ledger shows would make a client's limit depend on them)
    formula = round(sum(float(r.get("est_formula", r.get("est_seconds") or 0.0)) for r in rows), 2)
    return Plan(formula, led.final.frames, led.final.width, led.final.height, temp, led.to_dict())


class Resolver:
    """Turns ids in a payload into the owner's server paths (uploads and finished outputs)."""

    def __init__(self, owner: str, uploads: UploadStore, store: JobStore) -> None:
        self.owner, self.uploads, self.store = owner, uploads, store

    def _not_id(self, where: str, v: Any, what: str) -> Refused:
        if isinstance(v, str) and ("/" in v or "\\" in v or v.startswith((".", "~"))):
            return Refused(422, f"{where}: paths are not accepted; give {what}")
        return Refused(422, f"{where}={_short(v)} is not {what}")

    def upload(self, where: str, v: Any, kinds: tuple[str, ...]) -> Any:
        """The owner's upload named by id `v`, of one of `kinds`."""
        what = f"the id of an {'/'.join(kinds)} upload (POST /uploads)"
        if not isinstance(v, str) or not UPLOAD_ID.match(v):
            raise self._not_id(where, v, what)
        try:
            rec = self.uploads.get(v, self.owner)
        except KeyError:
            raise Refused(422, f"{where}={v!r}: no such upload") from None
        if rec.kind not in kinds:
            raise Refused(422, f"{where}={v!r} is an {rec.kind} upload, not {'/'.join(kinds)}")
        if not Path(rec.path).is_file():
            raise Refused(422, f"{where}={v!r}: the upload's file is gone; upload it again")
        return rec

    def files(self, d: dict[str, Any], where: str) -> dict[str, Any]:
        """A copy of settings `d` whose file-naming fields (`Param.upload`) hold the server paths of
        the owner's uploads they name by id; a path, URL or anything but such an id is refused."""
        from ..params import SPEC
        out = dict(d)
        for k, v in d.items():
            kinds = SPEC[k].upload if k in SPEC else None
            if kinds and v is not None:
                out[k] = self.upload(f"{where}.{k}", v, kinds).path
        return out

    def output(self, where: str, v: Any) -> tuple[Path, dict[str, Any]]:
        """The output file and manifest of the owner's finished job `v`."""
        from ..outputs import read_manifest
        if not isinstance(v, str) or not OUTPUT_ID.match(v):
            raise self._not_id(where, v, "an output id (a finished job's id)")
        try:
            job = self.store.get(v)
        except KeyError:
            job = None
        if job is None or job.owner != self.owner:
            raise Refused(422, f"{where}={v!r}: no such output")
        if job.status != "done" or not job.result.get("output"):
            raise Refused(422, f"{where}={v!r}: job {v} is {job.status}, it has no output")
        out, mpath = Path(job.result["output"]), Path(job.result.get("manifest") or "")
        if not out.exists() or not mpath.is_file():
            raise Refused(422, f"{where}={v!r}: the output was deleted")
        try:
            return out, read_manifest(mpath)
        except ValueError:
            raise Refused(422, f"{where}={v!r}: its manifest is unreadable") from None

    def video(self, where: str, v: Any) -> tuple[str, Any]:
        """A video input by upload id or output id: (server path, ClipSpec)."""
        from ..clip import ClipSpec
        if isinstance(v, str) and UPLOAD_ID.match(v):
            rec = self.upload(where, v, ("video",))
            i = rec.info
            return rec.path, ClipSpec(int(i["frames"]), float(i["fps"]), int(i["width"]), int(i["height"]))
        out, m = self.output(where, v)
        fin = (m.get("ledger") or {}).get("final") or (m.get("plan") or {})
        try:
            spec = ClipSpec(int(fin["frames"]), float(fin["fps"]), int(fin["width"]), int(fin["height"]))
        except (KeyError, TypeError, ValueError):
            raise Refused(422, f"{where}={v!r}: its manifest records no clip shape") from None
        return str(out) + ("/" if out.is_dir() else ""), spec


def _check_request_types(req: dict[str, Any], where: str) -> None:
    """Types of a request's fields as JSON sends them (the spec then checks ranges)."""
    from ..request import GenerationRequest
    types = {f.name: f.type for f in fields(GenerationRequest)}
    for k, v in req.items():
        if k not in types:
            raise Refused(422, f"{where}: unknown field {k!r}")
        t = str(types[k])
        if k == "loras":
            if not isinstance(v, list) or len(v) > MAX_LORAS:
                raise Refused(422, f"{where}.loras must be a list of at most {MAX_LORAS} objects")
            for i, lr in enumerate(v):
                lr = _obj(lr, f"{where}.loras[{i}]", ("name", "strength"))
                if not isinstance(lr.get("name"), str):
                    raise Refused(422, f"{where}.loras[{i}].name must be a string")
                s = lr.get("strength", 1.0)
                if isinstance(s, bool) or not isinstance(s, int | float):
                    raise Refused(422, f"{where}.loras[{i}].strength={_short(s)} must be a number")
        elif k == "extra":
            if not isinstance(v, dict) or len(v) > 32:
                raise Refused(422, f"{where}.extra must be an object of at most 32 settings")
            for ek, ev in v.items():
                if ev is not None and not isinstance(ev, str | int | float | bool):
                    raise Refused(422, f"{where}.extra.{ek}={_short(ev)} must be a string, number or bool")
        elif v is None:
            if "None" not in t:
                raise Refused(422, f"{where}.{k} must not be null")
        else:
            base = "str" if t.startswith("str") else "float" if t.startswith("float") else \
                "int" if t.startswith("int") else "bool" if t.startswith("bool") else None
            ok = {"str": (str,), "float": (int, float), "int": (int,), "bool": (bool,)}.get(base or "", ())
            if base and (not isinstance(v, ok) or (base != "bool" and isinstance(v, bool))):
                want = "number" if base == "float" else base
                raise Refused(422, f"{where}.{k}={_short(v)} must be a {want}")


class Planner:
    """Checks and plans each kind of job for one owner."""

    def __init__(self, owner: str, resolver: Resolver, device: str) -> None:
        self.owner, self.r, self.device = owner, resolver, device

    def _out(self, stem: str, codec: str | None) -> str:
        from postfx.assemble import extension_for

        from ..outputs import new_output_path, owner_dir
        ext = extension_for(codec)
        out = str(new_output_path(stem, ext, root=owner_dir(self.owner)))
        return out + "/" if ext == "/" else out

    def generate(self, p: dict[str, Any]) -> Intake:
        from ..engines import check_request
        from ..pipeline import make_ledger
        from ..request import GenerationRequest
        p = _obj(p, "payload", ("request",))
        req_d = dict(_obj(p.get("request"), "payload.request", tuple(f.name for f in
                                                                     fields(GenerationRequest))))
        _check_request_types(req_d, "payload.request")
        if "image" not in req_d:
            raise Refused(422, "payload.request.image is required: the id of an image upload (POST /uploads)")
        req_d["image"] = self.r.upload("payload.request.image", req_d["image"], ("image",)).path
        req_d = self.r.files(req_d, "payload.request")
        try:
            req = check_request(GenerationRequest.from_dict(req_d))
            out = self._out(req.prompt[:30] or "clip", req.codec)
            led = make_ledger(req, self.device, out)
        except (ValueError, TypeError, KeyError) as e:
            raise Refused(422, f"payload.request: {e}") from None
        return Intake("generate", p, {"request": req.to_dict(), "out": out}, _plan_from_ledger(led))

    def post(self, p: dict[str, Any]) -> Intake:
        from ..pipeline import plan_post
        p = _obj(p, "payload", ("input", "settings"))
        if "input" not in p:
            raise Refused(422, "payload.input is required: an upload id (video) or an output id")
        path, spec = self.r.video("payload.input", p["input"])
        settings = _obj(p.get("settings") or {}, "payload.settings", tuple(_post_fields()))
        _check_request_types(settings, "payload.settings")
        settings = self.r.files(settings, "payload.settings")
        try:
            out = self._out(Path(path.rstrip("/")).stem[:30] + "-post", settings.get("codec"))
            led = plan_post(spec, settings, out, self.device, "input")
        except (ValueError, TypeError) as e:
            raise Refused(422, f"payload.settings: {e}") from None
        return Intake("post", p, {"input": path, "settings": settings, "out": out}, _plan_from_ledger(led))

    def rerun(self, p: dict[str, Any]) -> Intake:
        from ..outputs import manifest_path_for
        from ..pipeline import plan_rerun
        p = _obj(p, "payload", ("manifest", "overrides"))
        if "manifest" not in p:
            raise Refused(422, "payload.manifest is required: the output id of a finished generation")
        out_path, m = self.r.output("payload.manifest", p["manifest"])
        overrides = _obj(p.get("overrides") or {}, "payload.overrides", tuple(_post_fields()))
        _check_request_types(overrides, "payload.overrides")
        overrides = self.r.files(overrides, "payload.overrides")
        codec = overrides.get("codec", (m.get("request") or {}).get("codec"))
        try:
            out = self._out("rerun", codec if isinstance(codec, str) else None)
            led = plan_rerun(m, overrides, out, self.device)
        except (ValueError, TypeError, KeyError) as e:
            raise Refused(422, f"payload: {e}") from None
        return Intake("rerun", p, {"manifest": str(manifest_path_for(out_path)), "overrides": overrides,
                                   "out": out}, _plan_from_ledger(led))

    def sequence(self, p: dict[str, Any]) -> Intake:
        from ..estimates import sequence_formula
        from ..sequence.plan import plan_sequence
        from ..sequence.spec import load_spec
        p = _obj(p, "payload", ("spec",))
        spec = _obj(p.get("spec"), "payload.spec", ("version", "clips", "output", "audio", "drift_threshold"))
        clips = spec.get("clips")
        if not isinstance(clips, list) or not 1 <= len(clips) <= MAX_SEQUENCE_ENTRIES:
            raise Refused(422, f"payload.spec.clips must be a list of 1..{MAX_SEQUENCE_ENTRIES} entries")
        run_clips = []
        known: dict[str, Any] = {}   # the uploads' stored facts: planning runs no ffmpeg
        for i, c in enumerate(clips):
            if not isinstance(c, dict):
                raise Refused(422, f"payload.spec.clips[{i}] must be a JSON object")
            c = dict(c)
            if "path" in c:
                where = f"payload.spec.clips[{i}].path"
                server_path, facts = self.r.video(where, c["path"])
                if isinstance(c["path"], str) and UPLOAD_ID.match(c["path"]):  # its sound, as recorded
                    rec = self.r.upload(where, c["path"], ("video",))
                    known["sound:" + server_path.rstrip("/")] = rec.info
                c["path"] = server_path
                known[server_path.rstrip("/")] = facts
            run_clips.append(c)
        run_spec = {**spec, "clips": run_clips}
        if spec.get("audio") is not None:
            a = _obj(spec["audio"], "payload.spec.audio", ("path", "offset", "volume", "fade_in", "fade_out",
                                                           "loop", "duck_db", "duck_attack", "duck_release"))
            rec = self.r.upload("payload.spec.audio.path", a.get("path"), ("audio",))
            run_spec["audio"] = {**a, "path": rec.path}
            known[rec.path] = float(rec.info["duration"])
        try:
            loaded = load_spec(run_spec, base_dir=None)
            out = self._out("sequence", loaded.output.codec)
            plan = plan_sequence(loaded, out, known=known)
        except (ValueError, TypeError) as e:
            raise Refused(422, f"payload.spec: {self._hide_paths(str(e), run_spec, spec)}") from None
        est = sequence_formula(plan.frames, plan.width, plan.height, plan.codec)
        return Intake("sequence", p, {"spec": run_spec, "out": out},
                      Plan(round(est, 2), plan.frames, plan.width, plan.height,
                           plan.frames * plan.width * plan.height * 3, {"sequence": plan.to_dict()}))

    @staticmethod
    def _hide_paths(msg: str, run_spec: dict[str, Any], spec: dict[str, Any]) -> str:
        """Put the client's ids back where a message names a resolved server path."""
        for rc, cc in zip(run_spec.get("clips", []), spec.get("clips", []), strict=False):
            if isinstance(rc, dict) and isinstance(cc, dict) and "path" in rc:
                msg = msg.replace(str(rc["path"]).rstrip("/"), str(cc.get("path")))
        if isinstance(run_spec.get("audio"), dict) and isinstance(spec.get("audio"), dict):
            msg = msg.replace(str(run_spec["audio"]["path"]), str(spec["audio"].get("path")))
        return msg

    def weights(self, p: dict[str, Any]) -> Intake:
        p = _obj(p, "payload", ("group",))
        group = p.get("group", "all")
        if group not in ("rife", "realesrgan", "all"):
            raise Refused(422, f"payload.group={_short(group)} is not one of rife, realesrgan, all")
        return Intake("weights", p, {"group": group}, None)


def file_fields() -> list[tuple[str, str, tuple[str, ...]]]:
    """Every payload field that names a file, per job kind: (kind, field path, what it takes).

    What it takes: upload kinds ("image", "video", "audio") and/or "output" (a finished job's id).
    Built from the schemas (the parameter spec's `upload` marks, the request, the sequence spec),
    so a new file field in the spec shows up here and in the test that walks this list."""
    from ..params import SPEC
    marked = [n for n, prm in SPEC.items() if prm.upload]
    post = [n for n in marked if n in _post_fields()]
    return ([("generate", "payload.request.image", ("image",))]
            + [("generate", f"payload.request.{n}", SPEC[n].upload) for n in marked]
            + [("post", "payload.input", ("video", "output"))]
            + [("post", f"payload.settings.{n}", SPEC[n].upload) for n in post]
            + [("rerun", "payload.manifest", ("output",))]
            + [("rerun", f"payload.overrides.{n}", SPEC[n].upload) for n in post]
            + [("sequence", "payload.spec.clips[].path", ("video", "output")),
               ("sequence", "payload.spec.audio.path", ("audio",))])


def _post_fields() -> list[str]:
    from ..pipeline import POST_FIELDS
    return POST_FIELDS


def prepare(body: Any, *, owner: str, admin: bool, uploads: UploadStore, store: JobStore,
            limits: Limits, device: str = "cpu") -> Intake:
    """Check, resolve and plan a job body `{"kind": ..., "payload": {...}}` for `owner`."""
    body = _obj(body, "body", ("kind", "payload"))
    kind = body.get("kind", "generate")
    if kind not in CLIENT_KINDS + ADMIN_KINDS:
        raise Refused(422, f"kind={_short(kind)} is not one of {', '.join(CLIENT_KINDS)}")
    if kind in ADMIN_KINDS and not admin:
        raise Refused(403, f"kind={kind!r} needs an admin token")
    if "payload" not in body:
        raise Refused(422, "body.payload is required (a JSON object)")
    try:   # valid, bounded text in every field before anything reads it (it is stored as sent)
        check_text(body["payload"], "payload")
        check_payload_size(len(json.dumps(body["payload"])))
    except BadText as e:
        raise Refused(422, str(e)) from None
    planner = Planner(owner, Resolver(owner, uploads, store), device)
    intake = getattr(planner, kind)(body["payload"])
    if intake.plan is not None:
        intake.plan.check(limits)
    return intake
