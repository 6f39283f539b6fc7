"""The REST API over the same job queue and core as the Streamlit studio (FastAPI), safe to expose.

Every route but `GET /health` needs `Authorization: Bearer <token>` (`python -m studio tokens`).
A token sees its own jobs, uploads and outputs only (an admin token sees all, `?owner=` to filter);
another owner's id answers 404 as if it did not exist.  Clients never name a server path: inputs are
uploaded (`POST /uploads`) and then named by id, outputs are named by the id of the job that made
them, and the server picks every output path under `outputs/<owner>/`.

    GET    /health                    liveness (no token)
    POST   /uploads                   multipart field `file`: an image, video or audio file -> its id
    GET    /uploads, /uploads/{id}    the owner's uploads;  DELETE /uploads/{id}
    POST   /jobs                      {"kind": generate|post|rerun|sequence, "payload": {...}} -> 201
    POST   /ledger                    the same body: the pre-run ledger and limits check, nothing queued
                                      (planned from stored upload facts; metered as a submission)
    GET    /jobs, /jobs/{id}          status, progress, error, result (?status= &kind= &limit= &owner=)
    POST   /jobs/{id}/cancel          cancel;   GET /jobs/{id}/preview  the latest preview (JPEG)
    DELETE /jobs/{id}                 forget a finished job and its output (409 while it runs)
    GET    /jobs/{id}/result          the finished file (same as /outputs/{id}/file)
    GET    /outputs, /outputs/{id}    finished outputs with their manifests (server paths removed)
    GET    /outputs/{id}/file         download;  DELETE /outputs/{id}
    GET    /models                    engines and post-processing weights, with status
    GET    /me                        this token's name and limits
    GET    /metrics                   Prometheus text (admin token)

The front door (`guard.Guard`) checks Host (421), token (401), rate (429), body type (415) and size
(413) before a route runs.  Bad input answers 400/422 with a message naming the field, never 500.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from . import incoming
from .guard import LOOPBACK_HOSTS, BodyTooLarge, Guard, GuardConfig, RateLimiter
from .intake import Refused, prepare
from .metrics import Metrics
from .store import STATUSES, Job, JobStore, QueueFull
from .textcheck import clean
from .tokens import Token, TokenStore
from .uploads import QuotaExceeded, UploadStore, clean_name, max_upload_mb
from .views import public_job, redact, scrub
from .worker import JobQueue

log = logging.getLogger(__name__)

MAX_LIST = 200
NO_WORKER = ("waiting: no worker is running, so nothing takes queued jobs; start one with "
             "`python -m studio worker` (or run `python -m studio stack api`, the API plus its workers)")
VALIDATE_AT_ONCE = 2   # uploads decoded at the same time (each may take a few GB for a huge image)


def _bad(status: int, msg: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail=msg, headers=headers)


@dataclass
class ApiConfig:
    """How the API is exposed: allowed hosts, CORS origins, body limits, the device it plans for."""

    allowed_hosts: set[str] = field(default_factory=lambda: set(LOOPBACK_HOSTS))
    cors_origins: list[str] = field(default_factory=list)
    max_json_bytes: int = 1_000_000
    max_upload_bytes: int | None = None     # default: $STUDIO_MAX_UPLOAD_MB
    device: str | None = None               # default: what this machine has


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise _bad(400, "body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad(400, f"body is not valid JSON: {str(e)[:120]}") from None


def create_app(queue: JobQueue | None = None, config: ApiConfig | None = None) -> FastAPI:
    """The FastAPI app; `queue` defaults to a started queue over $STUDIO_JOBS_DB (stopped on shutdown)."""
    from contextlib import asynccontextmanager

    cfg = config or ApiConfig()
    own_queue = queue is None
    queue = queue or JobQueue()
    store: JobStore = queue.store
    tokens, uploads = TokenStore(store), UploadStore(store)
    metrics = Metrics(store)
    limiter = RateLimiter()
    upload_limit = cfg.max_upload_bytes or int(max_upload_mb() * 1e6)
    validate_slots = anyio.CapacityLimiter(VALIDATE_AT_ONCE)
    from ..outputs import outputs_dir
    incoming.sweep(outputs_dir())   # uploads left half-validated by a killed API

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        if own_queue:
            queue.start()
        yield
        if own_queue:
            queue.stop()

    app = FastAPI(title="Image-to-video studio", version="2", lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    app.state.queue = queue
    if own_queue:
        queue.start()   # the dispatcher starts with the process, not on the first request

    def device() -> str:
        if cfg.device is None:
            from ..pipeline import default_device
            cfg.device = default_device()
        return cfg.device

    # -- errors: every one is a JSON {"detail"}, never a traceback ------------------------------
    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": scrub(exc.message)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        where = ".".join(str(x) for x in errs[0].get("loc", ())) if errs else "request"
        msg = errs[0].get("msg", "invalid") if errs else "invalid"
        return JSONResponse({"detail": f"{where}: {msg}"}, status_code=422)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)

    def who(request: Request) -> Token:
        return request.scope["state"]["token"]

    def scope_owner(request: Request, owner: str | None) -> str | None:
        """The owner whose things a listing shows: the token's own, or for an admin any (`?owner=`)."""
        tok = who(request)
        if tok.admin:
            return owner
        if owner is not None and owner != tok.owner:
            raise _bad(403, f"owner={owner[:40]!r}: only an admin token can list another owner's things")
        return tok.owner

    def own_job(request: Request, job_id: str) -> Job:
        tok = who(request)
        try:
            job = store.get(job_id)
        except KeyError:
            job = None
        if job is None or (not tok.admin and job.owner != tok.owner):
            raise _bad(404, f"no job with id {job_id[:40]!r}")
        return job

    def submit_rate(tok: Token) -> None:
        wait = limiter.allow(f"submit:{tok.name}", tok.limits.submits_per_min)
        if wait:
            raise _bad(429, f"over {tok.limits.submits_per_min} submissions a minute for token {tok.name!r}; "
                            f"retry in {wait:.0f} s", {"Retry-After": str(int(wait))})

    async def json_of(request: Request) -> Any:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _bad(415, f"this route takes application/json, not {ctype or 'no content-type'!r}")
        return _json_body(await request.body())

    # -- routes ---------------------------------------------------------------------------------
    @app.get("/health")
    def health() -> dict[str, Any]:
        live = queue.workers()
        return {"status": "ok", "workers": len(live), "devices": sorted({w["device"] for w in live}),
                "busy": sum(1 for w in live if w["busy"])}

    @app.get("/me")
    def me(request: Request) -> dict[str, Any]:
        return who(request).to_dict()

    @app.post("/uploads", status_code=201)
    async def upload(request: Request) -> dict[str, Any]:
        tok = who(request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "multipart/form-data":
            raise _bad(415, f"/uploads takes multipart/form-data with a field 'file', not {ctype!r}")
        submit_rate(tok)
        try:
            form = await request.form(max_files=1, max_fields=4, max_part_size=64 * 1024)
        except BodyTooLarge:
            raise
        except Exception as e:  # noqa: BLE001 - a malformed multipart body is the client's error
            raise _bad(400, f"malformed multipart body: {str(e)[:120]}") from None
        try:
            f = form.get("file")
            if f is None or not hasattr(f, "read"):
                raise _bad(400, "multipart body needs a file field 'file'")
            name = clean_name(getattr(f, "filename", None))
            tmp_dir = incoming.make(owner_uploads(tok.owner))
            tmp = tmp_dir / "file"
            try:
                size = 0
                with open(tmp, "wb") as out:
                    while chunk := await f.read(1 << 20):
                        size += len(chunk)
                        if size > upload_limit:
                            raise _bad(413, f"{name} is over the upload limit of {upload_limit:,} bytes")
                        out.write(chunk)
                if size == 0:
                    raise _bad(400, f"{name} is empty (0 bytes)")
                try:
                    def keep() -> Any:
                        return uploads.add(tok.owner, name, tmp, max_total_bytes=tok.limits.max_upload_bytes)
                    rec = await anyio.to_thread.run_sync(keep, limiter=validate_slots)
                except QuotaExceeded as e:
                    raise _bad(413, str(e)) from None
                except ValueError as e:
                    raise _bad(400, scrub(str(e)) or "not accepted") from None
            finally:
                shutil.rmtree(tmp_dir, ignore_errors=True)
        finally:
            await form.close()
        return rec.public()

    def owner_uploads(owner: str) -> Path:
        from .uploads import uploads_dir
        return uploads_dir(owner)

    @app.get("/uploads")
    def list_uploads(request: Request, owner: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if not 1 <= limit <= MAX_LIST:
            raise _bad(422, f"limit={limit} is outside 1..{MAX_LIST}")
        return [u.public() for u in uploads.list(scope_owner(request, owner), limit)]

    def own_upload(request: Request, up_id: str) -> Any:
        tok = who(request)
        try:
            return uploads.get(up_id, None if tok.admin else tok.owner)
        except KeyError:
            raise _bad(404, f"no upload with id {up_id[:40]!r}") from None

    @app.get("/uploads/{up_id}")
    def get_upload(request: Request, up_id: str) -> dict[str, Any]:
        return own_upload(request, up_id).public()

    @app.delete("/uploads/{up_id}")
    def delete_upload(request: Request, up_id: str) -> dict[str, Any]:
        rec = own_upload(request, up_id)
        uploads.delete(rec.id, rec.owner)
        return {"deleted": rec.id}

    def take_in(request: Request, body: Any) -> Any:
        tok = who(request)
        return prepare(body, owner=tok.owner, admin=tok.admin, uploads=uploads, store=store,
                       limits=tok.limits, device=device())

    @app.post("/jobs", status_code=201)
    async def submit(request: Request) -> dict[str, Any]:
        tok = who(request)
        body = await json_of(request)
        submit_rate(tok)
        intake = await run_in_threadpool(take_in, request, body)
        try:
            job = queue.submit(intake.kind, intake.payload, owner=tok.owner, run_payload=intake.run_payload,
                               max_active=tok.limits.max_queued)
        except QueueFull as e:
            raise _bad(429, f"{e}; wait for one to finish", {"Retry-After": "5"}) from None
        return public_job(job)

    @app.post("/ledger")
    async def ledger(request: Request) -> dict[str, Any]:
        body = await json_of(request)
        submit_rate(who(request))   # planning costs work too: metered with submissions
        intake = await run_in_threadpool(take_in, request, body)
        plan = intake.plan
        if plan is None:
            return {"kind": intake.kind, "plan": None}
        return {"kind": intake.kind, "est_seconds": plan.est_seconds, "frames": plan.frames,
                "width": plan.width, "height": plan.height, "temp_bytes": plan.temp_bytes,
                "ledger": redact(plan.ledger)}

    @app.get("/jobs")
    def list_jobs(request: Request, status: str | None = None, kind: str | None = None, limit: int = 50,
                  owner: str | None = None) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise _bad(422, f"status={status[:40]!r} is not one of {', '.join(STATUSES)}")
        if not 1 <= limit <= MAX_LIST:
            raise _bad(422, f"limit={limit} is outside 1..{MAX_LIST}")
        return [public_job(j, brief=True) for j in store.list(status=status, kind=kind, limit=limit,
                                                              owner=scope_owner(request, owner), brief=True)]

    @app.get("/jobs/{job_id}")
    def get_job(request: Request, job_id: str) -> dict[str, Any]:
        d = public_job(own_job(request, job_id))
        if d["status"] == "queued" and not d["message"] and not queue.workers():
            d["message"] = NO_WORKER
        return d

    @app.post("/jobs/{job_id}/cancel")
    def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
        own_job(request, job_id)
        return public_job(queue.cancel(job_id))

    @app.delete("/jobs/{job_id}")
    def delete_job(request: Request, job_id: str) -> dict[str, Any]:
        from .retention import forget
        job = own_job(request, job_id)
        if job.is_active:
            raise _bad(409, f"job {job.id} is {job.status}; cancel it (POST /jobs/{job.id}/cancel) and "
                            "delete it once it has stopped")
        forget(store, job)
        return {"deleted": job.id}

    @app.get("/jobs/{job_id}/preview")
    def job_preview(request: Request, job_id: str) -> Any:
        job = own_job(request, job_id)
        p = Path(job.preview or "")
        if not job.preview or not p.is_file():
            raise _bad(404, f"job {job_id} has no preview yet")
        return FileResponse(p, media_type="image/jpeg")

    def output_file(request: Request, job_id: str) -> Any:
        job = own_job(request, job_id)
        if job.status != "done":
            raise _bad(409, f"job {job_id} is {job.status}, not done")
        out = Path(str(job.result.get("output") or "").rstrip("/"))
        if not job.result.get("output") or not out.exists():
            raise _bad(404, f"the output of job {job_id} no longer exists")
        if out.is_dir():   # a PNG-frame folder: sent as a zip made for this download
            tmp = Path(tempfile.mkdtemp(prefix=f"studio-zip-{os.getpid()}-"))
            archive = shutil.make_archive(str(tmp / out.name), "zip", root_dir=out)
            return FileResponse(archive, filename=out.name + ".zip", media_type="application/zip",
                                background=BackgroundTask(shutil.rmtree, tmp, True))
        return FileResponse(out, filename=out.name)

    app.get("/jobs/{job_id}/result")(output_file)
    app.get("/outputs/{job_id}/file")(output_file)

    def output_record(job: Job, with_manifest: bool) -> dict[str, Any]:
        out = Path(str(job.result.get("output") or "").rstrip("/"))
        rec: dict[str, Any] = {"id": job.id, "kind": job.kind, "owner": job.owner, "name": out.name,
                               "created": job.finished, "file": f"/outputs/{job.id}/file"}
        if with_manifest:
            try:
                rec["manifest"] = redact(json.loads(Path(job.result.get("manifest") or "").read_text()))
            except (OSError, ValueError):
                rec["manifest"] = None
        return clean(rec)

    @app.get("/outputs")
    def list_outputs(request: Request, owner: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        if not 1 <= limit <= MAX_LIST:
            raise _bad(422, f"limit={limit} is outside 1..{MAX_LIST}")
        jobs = store.list(status="done", limit=limit, owner=scope_owner(request, owner))
        return [output_record(j, False) for j in jobs
                if j.result.get("output") and Path(str(j.result["output"]).rstrip("/")).exists()]

    def own_output(request: Request, job_id: str) -> Job:
        job = own_job(request, job_id)
        out = str(job.result.get("output") or "")
        if job.status != "done" or not out or not Path(out.rstrip("/")).exists():
            raise _bad(404, f"no output with id {job_id[:40]!r}")
        return job

    @app.get("/outputs/{job_id}")
    def get_output(request: Request, job_id: str) -> dict[str, Any]:
        return output_record(own_output(request, job_id), True)

    @app.delete("/outputs/{job_id}")
    def delete_output(request: Request, job_id: str) -> dict[str, Any]:
        from ..outputs import delete_output as remove
        job = own_output(request, job_id)
        remove(job.result["output"])
        return {"deleted": job.id}

    @app.get("/models")
    def models() -> dict[str, Any]:
        from dataclasses import asdict

        from ..engines import engine_ids, get_engine
        from ..weights import all_weights, status
        engines = {}
        for eid in engine_ids():
            try:
                engines[eid] = asdict(get_engine(eid).status())
            except Exception as e:  # noqa: BLE001 - report, don't fail the listing
                engines[eid] = {"present": False, "detail": f"cannot load: {type(e).__name__}"}
        weights = {wid: asdict(status(wid)) for wid in sorted(all_weights())}
        return redact({"engines": engines, "weights": weights})

    @app.get("/metrics")
    def metrics_route(request: Request) -> Response:
        if not who(request).admin:
            raise _bad(403, "/metrics needs an admin token")
        return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    guarded: Callable[..., Any] = app.build_middleware_stack

    def build() -> Any:
        inner = guarded()
        if cfg.cors_origins:
            from starlette.middleware.cors import CORSMiddleware
            inner = CORSMiddleware(inner, allow_origins=cfg.cors_origins,
                                   allow_methods=["GET", "POST", "DELETE"],
                                   allow_headers=["Authorization", "Content-Type"])
        gc = GuardConfig(allowed_hosts=set(cfg.allowed_hosts), max_json_bytes=cfg.max_json_bytes,
                         max_upload_bytes=upload_limit,
                         bad_tokens_per_min=int(os.environ.get("STUDIO_API_BAD_TOKENS_PER_MIN") or 120))
        return Guard(inner, config=gc, authenticate=tokens.authenticate, limiter=limiter,
                     on_response=metrics.count_http, route_of=route_of)

    def route_of(scope: dict[str, Any]) -> str:
        from starlette.routing import Match
        for r in app.router.routes:
            if r.matches(scope)[0] == Match.FULL:
                return getattr(r, "path", "unmatched")
        return "unmatched"

    app.build_middleware_stack = build  # type: ignore[method-assign]
    app.state.tokens, app.state.uploads, app.state.metrics = tokens, uploads, metrics
    return app
