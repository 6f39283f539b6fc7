"""Engine weights fetched from a local server in the Hub's shape (never the real Hub), as a job:
sizes and free disk first, progress, cancel in the middle of a file, resume with a Range request."""

from __future__ import annotations

import hashlib
import shlex
import time
from pathlib import Path

import pytest
from hubserver import HubServer, tiny_svd_repo

from studio.context import Cancelled, RunContext
from studio.engines import get_engine
from studio.hubfetch import PARTIAL, command, download, find_layout, free_bytes, layouts, plan

REPO = "stabilityai/stable-video-diffusion-img2vid"
BIG = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    files = tiny_svd_repo()
    srv = HubServer({REPO: files}).start()
    monkeypatch.setenv("HF_ENDPOINT", srv.url)
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("STUDIO_JOBS_DB", str(tmp_path / "jobs.sqlite"))
    srv.files = files
    yield srv
    srv.stop()


def _wait(cond, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_plan_gives_sizes_free_disk_and_a_command_that_works_as_shown(hub, tmp_path):
    eng = get_engine("svd")
    lay = layouts(eng)[0]
    assert lay.key == "diffusers" and lay.dest == (tmp_path / "models" / "svd").resolve()
    p = plan(lay)
    assert p.total == sum(len(b) for b in hub.files.values()) and p.have == 0
    assert {f[1] for f in p.files} == set(hub.files)
    assert free_bytes(lay.dest) > 0        # the folder does not exist yet: its disk is measured
    # only what the page asked about was requested: one metadata call, no file bytes
    assert [r[1] for r in hub.requests if r[1].startswith("/api/models")] == [f"/api/models/{REPO}"]
    assert not [r for r in hub.requests if "/resolve/" in r[1]] and not hub.bytes_sent
    (argv,) = [shlex.split(c) for c in command(lay)]
    assert Path(argv[0]).is_file() and argv[0].endswith("/hf") and argv[1:3] == ["download", REPO]
    assert argv[argv.index("--local-dir") + 1] == str(lay.dest)
    # a component-only layout asks for those folders only; an unknown layout names the known ones
    part = plan(find_layout(eng, "diffusers", ["unet"]))
    assert {f[1] for f in part.files} == {"unet/config.json", BIG}
    with pytest.raises(ValueError, match="layout='gguf' is not one of diffusers for engine 'svd'"):
        find_layout(eng, "gguf")


def test_comfyui_layout_takes_the_single_files_and_the_tokenizer():
    lay = find_layout(get_engine("wan-i2v"), "comfyui")
    assert "fp8" in lay.label
    single, tok = lay.sources
    assert single.repo == "Comfy-Org/Wan_2.1_ComfyUI_repackaged"
    assert "split_files/diffusion_models/wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors" in single.files
    assert tok.patterns == ("tokenizer/*",)
    cmds = command(lay)
    assert len(cmds) == 2 and all("--local-dir " + str(lay.dest) in c for c in cmds)
    assert cmds[0].endswith("split_files/vae/wan_2.1_vae.safetensors --local-dir " + str(lay.dest))


def test_download_reports_progress_and_cancel_keeps_the_partial_then_resume_uses_range(hub, tmp_path):
    hub.chunk, hub.delay = 32 << 10, 0.01         # ~1 s for the 3 MB weights file
    lay = layouts(get_engine("svd"))[0]
    seen: list[tuple[str, int, int]] = []
    ctx = RunContext()

    def progress(stage, i, n):
        seen.append((stage, i, n))
        if i > len(hub.files[BIG]) // 3:
            ctx.cancel.set()
    ctx.progress = progress
    with pytest.raises(Cancelled):
        download(lay, ctx)
    total = sum(len(b) for b in hub.files.values())
    assert seen and all(s == "download" and n == total for s, _, n in seen)
    assert [i for _, i, _ in seen] == sorted(i for _, i, _ in seen)   # it only goes forward
    partial = lay.dest / PARTIAL / f"{BIG}.part"
    kept = partial.stat().st_size
    assert 0 < kept < len(hub.files[BIG]) and not (lay.dest / BIG).exists()
    assert (lay.dest / "model_index.json").read_bytes() == hub.files["model_index.json"]
    p = plan(lay)
    assert p.have == total - len(hub.files[BIG]) + kept and p.to_fetch == len(hub.files[BIG]) - kept

    hub.requests.clear()
    hub.delay = 0.0
    seen.clear()
    res = download(lay, RunContext(progress=lambda s, i, n: seen.append((s, i, n))))
    assert res["files"] == [BIG]                                     # the finished files were kept
    gets = [(m, path, rng) for m, path, rng in hub.requests if "/resolve/" in path]
    assert gets == [("GET", f"/{REPO}/resolve/{hub.commits[REPO]}/{BIG}", f"bytes={kept}-")]
    assert hashlib.sha256((lay.dest / BIG).read_bytes()).hexdigest() == \
        hashlib.sha256(hub.files[BIG]).hexdigest()
    assert seen[0][1] == total - len(hub.files[BIG]) + kept and seen[-1][1:] == (total, total)
    assert not (lay.dest / PARTIAL).exists()
    assert get_engine("svd").status().present                       # the studio now finds them


def test_a_file_that_does_not_match_the_hub_hash_is_removed(hub):
    from studio.weights import WeightsError
    lay = layouts(get_engine("svd"))[0]
    hub.corrupt.add(BIG)                      # the bytes sent differ from the listed sha256
    with pytest.raises(WeightsError, match=f"{BIG}: sha256 does not match the Hub's"):
        download(lay, RunContext())
    assert not (lay.dest / BIG).exists() and not (lay.dest / PARTIAL / f"{BIG}.part").exists()


def test_the_weights_job_fetches_cancels_and_resumes(hub):
    from studio.jobs import JobQueue
    hub.chunk, hub.delay = 32 << 10, 0.01
    q = JobQueue(devices=["cpu"]).start()
    try:
        job = q.submit("weights", {"engine": "svd", "layout": "diffusers"})
        total = sum(len(b) for b in hub.files.values())
        running = _wait(lambda: (j := q.get(job.id)).stage == "download" and 0 < j.i < total and j)
        assert running.n == total
        q.cancel(job.id)
        done = q.wait(job.id, timeout=60)
        assert done.status == "cancelled", (done.status, done.error)
        dest = layouts(get_engine("svd"))[0].dest
        kept = (dest / PARTIAL / f"{BIG}.part").stat().st_size
        assert 0 < kept < len(hub.files[BIG])
        hub.delay = 0.0
        again = q.wait(q.submit("weights", {"engine": "svd", "layout": "diffusers"}).id, timeout=120)
        assert again.status == "done", again.error
        assert again.result["files"] == [BIG] and again.result["bytes"] == total
        assert any(r[2] == f"bytes={kept}-" for r in hub.requests)
        # a hostile payload names no path: an unknown engine or layout is refused with its value
        bad = q.wait(q.submit("weights", {"engine": "svd", "layout": "../../etc"}).id, timeout=60)
        assert bad.status == "failed" and "layout='../../etc'" in bad.error
    finally:
        q.stop()
