"""The command line: generate, post, rerun, models, sequence, serve.

Exit codes: 0 success; 2 bad input (message names the value, no traceback); 1 failure;
130 cancelled (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .params import SPEC, add_arguments

GEN_FLAGS = ["prompt", "negative_prompt", "engine", "frames", "fps", "width", "height", "seed", "steps",
             "guidance", "motion", "speed"]
POST_FLAGS = ["interpolate", "target_fps", "upscale", "upscaler", "color_match", "order",
              "scene_threshold"]
OUT_FLAGS = ["codec", "crf", "preset", "audio", "audio_mode", "audio_gain", "audio_fade"]


class CliError(Exception):
    """A failure with a message for the user and an exit code."""

    def __init__(self, msg: str, code: int) -> None:
        super().__init__(msg)
        self.code = code


def _given(ns: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """Flags the user actually gave, checked against the spec (so errors name the flag's value)."""
    out = {}
    for n in names:
        v = getattr(ns, n, None)
        if v is not None:
            out[n] = SPEC[n].check(v)
    return out


def _parse_loras(items: list[str]) -> list[dict[str, Any]]:
    out = []
    for it in items or []:
        name, _, s = it.partition(":")
        try:
            strength = float(s) if s else 1.0
        except ValueError:
            raise ValueError(f"--lora {it!r}: strength {s!r} is not a number") from None
        out.append({"name": name, "strength": strength})
    return out


def _parse_extra(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items or []:
        k, eq, v = it.partition("=")
        if not eq:
            raise ValueError(f"--set {it!r} must look like name=value")
        out[k.strip()] = v.strip()
    return out


def _ctx(ns: argparse.Namespace):
    from .context import RunContext
    from .pipeline import default_device
    from .progress import StderrProgress
    dev = ns.device if ns.device != "auto" else default_device()
    prog = None if ns.quiet else StderrProgress()
    return RunContext(device=dev, progress=prog), prog


def cmd_generate(ns: argparse.Namespace) -> int:
    """`generate IMAGE --prompt ...`: print the ledger, run, write the video and PATH.json."""
    from .pipeline import generate, make_ledger, request_from_manifest
    from .request import GenerationRequest, LoraRef

    if ns.from_manifest:
        req = request_from_manifest(ns.from_manifest)
        for k, v in _given(ns, GEN_FLAGS + POST_FLAGS + OUT_FLAGS).items():
            setattr(req, k, v)
        if ns.image:
            req.image = ns.image
    else:
        if not ns.image:
            raise ValueError("generate needs an IMAGE (or --from-manifest M.json)")
        req = GenerationRequest(image=ns.image, **_given(ns, GEN_FLAGS + POST_FLAGS + OUT_FLAGS))
        req.loras = [LoraRef(**d) for d in _parse_loras(ns.lora)]
        req.extra = _parse_extra(ns.set)
    if getattr(ns, "speed_tier", None):
        req.extra = dict(req.extra or {}) | {"speed": ns.speed_tier}
    if not Path(req.image).exists():
        raise ValueError(f"image {req.image!r} does not exist")
    from .images import probe_image
    probe_image(req.image)  # header-level checks (format, size, bombs) before the ledger is printed
    ctx, prog = _ctx(ns)
    ledger = make_ledger(req, ctx.device, ns.out)
    print(ledger.to_text())
    if ns.plan:
        return 0
    res = generate(req, ns.out, ctx, ledger=ledger)
    if prog:
        prog.close()
    _wrote(res)
    return 0


def _wrote(res: Any) -> None:
    print(f"wrote {res.output}\nmanifest {res.manifest_path}")
    out = ((res.manifest.get("audio") or {}).get("output") or {})
    if out.get("file"):   # a GIF or PNG folder cannot carry sound: it was saved beside the frames
        where = res.output / out["file"] if res.output.is_dir() else res.output.with_name(out["file"])
        print(f"sound {where} (a {res.manifest['output']['codec'].upper()} cannot carry sound)")


def _post_values(ns: argparse.Namespace) -> dict[str, Any]:
    return _given(ns, POST_FLAGS + OUT_FLAGS)


def cmd_post(ns: argparse.Namespace) -> int:
    """`post INPUT --out PATH`: post-process an existing video or PNG folder."""
    from .pipeline import post_process
    ctx, prog = _ctx(ns)
    res = post_process(ns.input, _post_values(ns), ns.out, ctx)
    if prog:
        prog.close()
    print(json.dumps(res.manifest["ledger"]["final"]))
    _wrote(res)
    return 0


def cmd_rerun(ns: argparse.Namespace) -> int:
    """`rerun M.json [--upscale 4 ...]`: re-run post-processing from a saved manifest."""
    from .pipeline import rerun
    ctx, prog = _ctx(ns)
    res = rerun(ns.manifest, _post_values(ns), ns.out, ctx)
    if prog:
        prog.close()
    _wrote(res)
    return 0


def cmd_models(ns: argparse.Namespace) -> int:
    """`models` lists engines and post-processing models; `models fetch GROUP` fetches weights."""
    from . import weights
    from .engines import engine_ids, get_engine
    if ns.action == "fetch":
        paths = weights.fetch(ns.group or "all", force=ns.force)
        for p in paths:
            print(f"ok {p}")
        return 0
    print("engines:")
    for eid in engine_ids():
        parts: list[str] = []
        try:
            eng = get_engine(eid)
            st = eng.status()
            state, detail = ("ready" if st.present else "missing"), st.detail
            cmd = f"\n      get it: {st.command}" if (st.command and not st.present) else ""
            if hasattr(eng, "inventory"):
                from .engines.loading import report_lines
                inv = eng.inventory()
                if inv.folder is None and inv.parts:  # per component: file, format, size, what is missing
                    parts, cmd = report_lines(inv), ""
                    detail = "all components found" if st.present else f"missing {', '.join(inv.missing)}"
        except Exception as e:  # noqa: BLE001 - an engine whose deps fail to import is "unavailable"
            state, detail, cmd = "unavailable", f"{type(e).__name__}: {e}", ""
        print(f"  {eid:<14} {state:<8} {detail}{cmd}")
        for line in parts:
            print(f"      {line}")
    print("post-processing models:")
    for wid, wf in weights.all_weights().items():
        st = weights.status(wid)
        if st.present:
            size = f"{(st.size_bytes or 0) / 1e6:.1f} MB"
            print(f"  {wid:<18} present  {size:>9}  sha256 {(st.sha256 or '?')[:16]}  {st.path}")
        else:
            print(f"  {wid:<18} missing  get it: {wf.command}")
    return 0


def cmd_sequence(ns: argparse.Namespace) -> int:
    """`sequence SPEC.json --out PATH`: render a multi-clip sequence."""
    from .sequence import render_file
    ctx, prog = _ctx(ns)
    out = render_file(Path(ns.spec), ns.out, ctx)
    if prog:
        prog.close()
    print(f"wrote {out}")
    return 0


def cmd_serve(ns: argparse.Namespace) -> int:
    """`serve`: the REST API over the same core and job queue."""
    from .jobs.server import serve
    serve(ns.host, ns.port, allowed_hosts=ns.allow_host, cors_origins=ns.cors_origin)
    return 0


def cmd_worker(ns: argparse.Namespace) -> int:
    """`worker`: run jobs from the store on one device (local) or on a Ray cluster's actors (ray)."""
    if ns.devices:
        from .jobs.parallel import run_parallel_worker
        devices = [d.strip() for d in ns.devices.split(",") if d.strip()]
        return run_parallel_worker(devices, mode=ns.parallel, with_parent=ns.with_parent)
    from .jobs.workerproc import run_worker
    return run_worker(device=ns.device, executor=ns.executor, address=ns.address, with_parent=ns.with_parent)


def cmd_stack(ns: argparse.Namespace) -> int:
    """`stack api|ui`: the API or the studio, plus one worker per GPU (or one CPU worker), as children."""
    from .jobs.workerproc import run_stack
    return run_stack(ns.what, ns.port, workers=ns.workers, extra=ns.extra, allow_hosts=ns.allow_host)


def cmd_tokens(ns: argparse.Namespace) -> int:
    """`tokens create NAME | list | revoke NAME`: the REST API's tokens (stored hashed in the jobs DB)."""
    from .jobs import JobStore
    from .jobs.tokens import Limits, TokenStore
    tokens = TokenStore(JobStore())
    if ns.action == "list":
        for t in tokens.list():
            d = t.to_dict()
            flags = "admin" if t.admin else "     "
            print(f"{t.name:<32} {flags} rate {d['rate_per_min']}/min, submits {d['submits_per_min']}/min, "
                  f"queued {d['max_queued']}, {d['max_seconds']:g} s, {d['max_frames']} frames, "
                  f"{d['max_pixels']:,} px, {d['max_temp_bytes'] / 1e9:g} GB temp")
        return 0
    if not ns.name:
        raise ValueError(f"tokens {ns.action} needs a NAME")
    if ns.action == "revoke":
        tokens.revoke(ns.name)
        print(f"revoked {ns.name}")
        return 0
    base = Limits()
    given = {k: getattr(ns, k) for k in ("rate_per_min", "submits_per_min", "max_queued", "max_seconds",
                                        "max_frames", "max_pixels") if getattr(ns, k) is not None}
    if ns.max_temp_gb is not None:
        given["max_temp_bytes"] = int(ns.max_temp_gb * 1e9)
    limits = Limits(**{**base.__dict__, **given})
    token = tokens.create(ns.name, admin=ns.admin, limits=limits)
    print(token)
    print(f"(token for {ns.name!r}{', admin' if ns.admin else ''}; shown once, stored only as a hash)",
          file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree; flags come from the parameter spec."""
    p = argparse.ArgumentParser(prog="python -m studio", description="Image-to-video studio")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
        sp.add_argument("--quiet", action="store_true", help="no progress bar")

    g = sub.add_parser("generate", help="image + motion prompt -> video")
    g.add_argument("image", nargs="?", help="input image (PNG, JPEG, WebP, BMP, TIFF)")
    add_arguments(g, GEN_FLAGS + POST_FLAGS + OUT_FLAGS)
    g.add_argument("--lora", action="append", metavar="NAME[:STRENGTH]", help="LoRA from loras/")
    g.add_argument("--set", action="append", metavar="NAME=VALUE", help="engine-specific setting")
    from .speed import SPEED, TIERS
    g.add_argument("--speed-tier", choices=TIERS, default=None,
                   help=f"{SPEED.help} Same as --set speed=TIER (diffusion engines; --speed is the "
                        "camera's).")
    g.add_argument("--out", help="output path (.mp4 .webm .gif .mov, or a folder ending in /)")
    g.add_argument("--from-manifest", metavar="M.json", help="reproduce a run from its manifest")
    g.add_argument("--plan", action="store_true", help="print the ledger and stop")
    common(g)
    g.set_defaults(fn=cmd_generate)

    po = sub.add_parser("post", help="post-process an existing video or PNG folder")
    po.add_argument("input")
    add_arguments(po, POST_FLAGS + OUT_FLAGS)
    po.add_argument("--out", required=True)
    common(po)
    po.set_defaults(fn=cmd_post)

    r = sub.add_parser("rerun", help="re-run post-processing from a saved manifest")
    r.add_argument("manifest")
    add_arguments(r, POST_FLAGS + OUT_FLAGS)
    r.add_argument("--out")
    common(r)
    r.set_defaults(fn=cmd_rerun)

    m = sub.add_parser("models", help="list models, or `models fetch rife|realesrgan|all`")
    m.add_argument("action", nargs="?", default="list", choices=("list", "fetch"))
    m.add_argument("group", nargs="?")
    m.add_argument("--force", action="store_true", help="fetch again even if present")
    m.set_defaults(fn=cmd_models)

    s = sub.add_parser("sequence", help="render a sequence spec (JSON) to a video")
    s.add_argument("spec")
    s.add_argument("--out", required=True)
    common(s)
    s.set_defaults(fn=cmd_sequence)

    sv = sub.add_parser("serve", help="run the REST API")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--allow-host", action="append", metavar="NAME",
                    help="a Host name the API answers to besides loopback and --host (repeatable)")
    sv.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                    help="allow cross-origin calls from this origin (none by default; repeatable)")
    sv.set_defaults(fn=cmd_serve)

    w = sub.add_parser("worker", help="run jobs from the queue (one device, or a Ray cluster)")
    w.add_argument("--device", default="cpu", help="cpu or cuda:N (local executor)")
    w.add_argument("--executor", default="local", choices=("local", "ray"))
    w.add_argument("--address", help="Ray cluster address (default $RAY_ADDRESS)")
    w.add_argument("--devices", help="several devices that run one job together, e.g. cuda:0,cuda:1 "
                   "(or cpu,cpu); jobs whose payload asks for gpus > 1 use all of them")
    w.add_argument("--parallel", default="auto", help="how a gang splits a job: auto, cfg, ulysses, ring, "
                   "or a product (cfg+ulysses, cfg+ring, ulysses+ring, cfg+ulysses+ring)")
    w.add_argument("--with-parent", action="store_true", help=argparse.SUPPRESS)
    w.set_defaults(fn=cmd_worker)

    st = sub.add_parser("stack", help="the API (api) or the studio (ui) with its workers, as child processes")
    st.add_argument("what", choices=("api", "ui"))
    st.add_argument("--port", type=int, default=8000)
    st.add_argument("--workers", type=int, help="how many workers (default: one per GPU, else one on CPU)")
    st.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                    help="also answer this Host name (a proxy in front); the studio adds $STUDIO_ALLOW_HOSTS")
    st.add_argument("extra", nargs="*", help="more arguments for serve / streamlit (after --)")
    st.set_defaults(fn=cmd_stack)

    t = sub.add_parser("tokens", help="REST API tokens: create NAME, list, revoke NAME")
    t.add_argument("action", choices=("create", "list", "revoke"))
    t.add_argument("name", nargs="?")
    t.add_argument("--admin", action="store_true", help="sees every owner's jobs; may fetch weights")
    t.add_argument("--rate", dest="rate_per_min", type=int, metavar="PER_MIN", help="requests a minute (600)")
    t.add_argument("--submits", dest="submits_per_min", type=int, metavar="PER_MIN",
                   help="submissions and uploads a minute (60)")
    t.add_argument("--max-queued", type=int, metavar="N", help="queued + running jobs at once (20)")
    t.add_argument("--max-seconds", type=float, help="a job's estimated seconds (7200)")
    t.add_argument("--max-frames", type=int, help="output frames of a job (3600)")
    t.add_argument("--max-pixels", type=int, help="pixels of an output frame (16777216 = 4096²)")
    t.add_argument("--max-temp-gb", type=float, help="frame buffers a job may hold, GB (20)")
    t.set_defaults(fn=cmd_tokens)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    from .context import Cancelled
    from .weights import WeightsError

    parser = build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if ns.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return ns.fn(ns)
    except ValueError as e:      # bad input: ImageError, spec checks, bad manifest ...
        print(f"error: {e}", file=sys.stderr)
        return 2
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Cancelled):
        print("cancelled; nothing was written", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
        logging.getLogger("studio").debug("failure", exc_info=True)
        print(f"failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
