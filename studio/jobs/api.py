"""The REST API over the same job queue and core as the Streamlit studio (FastAPI).

    POST /jobs                 generate: JSON {"request": {...}, "image_base64": "..."} or multipart
                               (field `request` = JSON text, file `image`); other kinds: {"kind", "payload"}
    GET  /jobs                 recent jobs (?status=queued&kind=generate&limit=50)
    GET  /jobs/{id}            one job
    POST /jobs/{id}/cancel     cancel it
    GET  /jobs/{id}/result     the output file of a finished job
    POST /ledger               the pre-run ledger for a request
    GET  /models               engines and post-processing weights, with status
    GET  /outputs              outputs with their manifests

Bad input answers 422 (a refused setting) or 400 (a bad image or body), the message naming the value.
`serve(host, port)` runs it with uvicorn (`python -m studio serve`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse

from .store import STATUSES
from .worker import JobQueue, job_kinds

log = logging.getLogger(__name__)


def _bad(status: int, msg: str) -> HTTPException:
    return HTTPException(status_code=status, detail=msg)


def _check_request(data: Any, image: str | None = None) -> Any:
    from ..engines import check_request
    from ..request import GenerationRequest
    if not isinstance(data, dict):
        raise _bad(400, "request must be a JSON object")
    if image is not None:
        data = {**data, "image": image}
    try:
        return check_request(GenerationRequest.from_dict(data))
    except (ValueError, TypeError) as e:
        raise _bad(422, str(e)) from None


def _save_image(name: str, data: bytes) -> str:
    from .uploads import accept_image
    try:
        return str(accept_image(name, data))
    except ValueError as e:
        raise _bad(400, str(e)) from None


def create_app(queue: JobQueue | None = None) -> FastAPI:
    """The FastAPI app; `queue` defaults to a started queue over $STUDIO_JOBS_DB (stopped on shutdown)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        yield
        if queue is None and app.state.queue is not None:
            app.state.queue.stop()

    app = FastAPI(title="Image-to-video studio", version="1", lifespan=lifespan)
    app.state.queue = queue

    def q() -> JobQueue:
        if app.state.queue is None:
            app.state.queue = JobQueue().start()
        return app.state.queue

    async def _parse_submit(request: Request) -> tuple[str, dict[str, Any]]:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            try:
                req = json.loads(str(form.get("request") or "{}"))
            except ValueError as e:
                raise _bad(400, f"form field 'request' is not JSON: {e}") from None
            upload = form.get("image")
            if upload is None or not hasattr(upload, "read"):
                raise _bad(400, "multipart body needs a file field 'image'")
            img = _save_image(upload.filename or "image", await upload.read())
            return "generate", {"request": _check_request(req, img).to_dict()}
        try:
            body = await request.json()
        except ValueError as e:
            raise _bad(400, f"body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise _bad(400, "body must be a JSON object")
        kind = body.get("kind", "generate")
        if kind != "generate":
            if kind not in job_kinds():
                raise _bad(422, f"kind={kind!r} is not one of {', '.join(job_kinds())}")
            return kind, dict(body.get("payload") or {})
        img = None
        if body.get("image_base64"):
            try:
                raw = base64.b64decode(body["image_base64"], validate=True)
            except (binascii.Error, ValueError):
                raise _bad(400, "image_base64 is not valid base64") from None
            img = _save_image(str(body.get("image_name") or "image.png"), raw)
        req = _check_request(body.get("request"), img)
        if not req.image or not Path(req.image).is_file():
            raise _bad(400, f"image={req.image!r} is not a file; send image_base64 or a multipart 'image'")
        return "generate", {"request": req.to_dict()}

    @app.post("/jobs", status_code=201)
    async def submit(request: Request) -> dict[str, Any]:
        kind, payload = await _parse_submit(request)
        return q().submit(kind, payload).to_dict()

    @app.get("/jobs")
    def list_jobs(status: str | None = None, kind: str | None = None,
                  limit: int = 50) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise _bad(422, f"status={status!r} is not one of {', '.join(STATUSES)}")
        if not 1 <= limit <= 1000:
            raise _bad(422, f"limit={limit} is outside 1..1000")
        return [j.to_dict() for j in q().list(status=status, kind=kind, limit=limit)]

    def _job(job_id: str) -> Any:
        try:
            return q().get(job_id)
        except KeyError:
            raise _bad(404, f"no job with id {job_id!r}") from None

    @app.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return _job(job_id).to_dict()

    @app.post("/jobs/{job_id}/cancel")
    def cancel_job(job_id: str) -> dict[str, Any]:
        _job(job_id)
        return q().cancel(job_id).to_dict()

    @app.get("/jobs/{job_id}/result")
    def job_result(job_id: str) -> Any:
        job = _job(job_id)
        if job.status != "done":
            raise _bad(409, f"job {job_id} is {job.status}, not done")
        out = Path(str(job.result.get("output") or ""))
        if not out.is_file():
            raise _bad(404, f"the output of job {job_id} ({out.name}) no longer exists")
        return FileResponse(out, filename=out.name)

    @app.post("/ledger")
    async def ledger(request: Request) -> dict[str, Any]:
        from ..pipeline import make_ledger
        try:
            body = await request.json()
        except ValueError as e:
            raise _bad(400, f"body is not JSON: {e}") from None
        data = body.get("request", body) if isinstance(body, dict) else body
        req = _check_request(data)
        try:
            return make_ledger(req).to_dict()
        except ValueError as e:
            raise _bad(422, str(e)) from None

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
                engines[eid] = {"present": False, "detail": f"cannot load: {e}"}
        weights = {wid: asdict(status(wid)) for wid in sorted(all_weights())}
        return {"engines": engines, "weights": weights}

    @app.get("/outputs")
    def outputs() -> list[dict[str, Any]]:
        from ..outputs import list_outputs
        return [{"path": str(r.path), "manifest_path": str(r.manifest_path), "created": r.created,
                 "manifest": r.manifest} for r in list_outputs()]

    return app


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the REST API with uvicorn (blocks)."""
    import uvicorn
    uvicorn.run(create_app(), host=host, port=port, log_level="info")
