"""Step previews: a linear latent->RGB map fitted from the pipeline's VAE; previews of a tiny run are
RGB images of the request's size that change step by step; a cancel after a preview lands within a
step."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("diffusers")
import tiny_models as tm  # noqa: E402

from studio.context import Cancelled, RunContext  # noqa: E402
from studio.engines import get_engine  # noqa: E402
from studio.engines.previews import LatentRGB, _smooth_images, fit  # noqa: E402
from studio.request import GenerationRequest  # noqa: E402

IMAGE = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
_PIPES: dict[str, object] = {}
CASES = {"wan-i2v": (5, 32, 32), "ltx-video": (9, 32, 32)}


def _pipe(eid):
    if eid not in _PIPES:
        _PIPES[eid] = tm.BUILDERS[eid]()
    return _PIPES[eid]


def _req(eid, steps=4, **extra):
    frames, w, h = CASES[eid]
    eng = get_engine(eid)
    req = GenerationRequest(image="in.png", prompt="a cat", engine=eid, frames=frames, width=w, height=h,
                            steps=steps, guidance=3.0, seed=0)
    req.extra = {k: p.default for k, p in eng.extra_spec().items()} | extra
    return req


def test_linear_fit_recovers_a_linear_decoder():
    rng = np.random.default_rng(1)
    true_m, true_b = rng.normal(size=(6, 3)) * 0.3, np.array([0.5, 0.4, 0.6])
    pinv = np.linalg.pinv(true_m)

    def encode(imgs):  # a "VAE" whose latent decodes linearly: latent = pinv(M) (rgb − b), 8×8 pooled
        rgb = (imgs + 1) / 2
        pooled = rgb.reshape(len(rgb), 3, 8, rgb.shape[2] // 8, 8, rgb.shape[3] // 8).mean(axis=(3, 5))
        return np.einsum("nchw,dc->ndhw", pooled - true_b[None, :, None, None], pinv.T)
    m = fit(encode, side=64, n=8, ridge=1e-9)
    assert m.residual < 1e-4
    img = _smooth_images(1, 64, seed=5)[0]
    lat = encode(img.transpose(2, 0, 1)[None] * 2 - 1)[0]
    got = m.image(lat, 64, 64).astype(float) / 255
    want = img.reshape(8, 8, 8, 8, 3).mean(axis=(1, 3)).repeat(8, 0).repeat(8, 1)
    assert np.abs(got - want).max() < 2 / 255


@pytest.mark.parametrize("eid", list(CASES))
def test_previews_are_images_of_the_request_size_that_change(eid):
    shots: list[np.ndarray] = []
    steps: list[int] = []
    eng = get_engine(eid)
    ctx = RunContext(progress=lambda s, i, n: steps.append(i), preview=shots.append)
    clip = eng.run(_pipe(eid), IMAGE, _req(eid, steps=4, preview_every=1), ctx)
    frames, w, h = CASES[eid]
    assert clip.meta["previews"] == 4 == len(shots) and steps == [1, 2, 3, 4]
    assert all(s.shape == (h, w, 3) and s.dtype == np.uint8 for s in shots)
    assert all(not np.array_equal(a, b) for a, b in zip(shots, shots[1:], strict=False))
    assert isinstance(_pipe(eid).__dict__["_studio_latent_rgb"], LatentRGB)
    # every 2nd step; and without ctx.preview, none and the same frames
    shots.clear()
    eng.run(_pipe(eid), IMAGE, _req(eid, steps=4, preview_every=2), ctx)
    assert len(shots) == 2
    plain = eng.run(_pipe(eid), IMAGE, _req(eid, steps=4, preview_every=1), RunContext())
    assert plain.meta["previews"] == 0 and np.array_equal(plain.frames, clip.frames)


def test_cancel_after_a_preview_lands_within_a_step():
    eid = "wan-i2v"
    pipe = _pipe(eid)
    ev = threading.Event()
    calls = {"n": 0}
    orig = type(pipe.transformer).forward

    def counting(self, *a, **k):
        calls["n"] += 1
        return orig(self, *a, **k)

    def on_preview(img):
        ev.set()  # the user presses Cancel on seeing the first preview
    ctx = RunContext(cancel=ev, preview=on_preview)
    type(pipe.transformer).forward = counting
    try:
        with pytest.raises(Cancelled):
            get_engine(eid).run(pipe, IMAGE, _req(eid, steps=6, preview_every=1), ctx)
    finally:
        type(pipe.transformer).forward = orig
    assert calls["n"] == 2  # one step: the conditional and the unconditional pass, nothing after
