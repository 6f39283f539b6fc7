"""The same tiny LTX-2 as a diffusers folder; as a whole original LTX-2 checkpoint (transformer,
audio VAE, vocoder and text connectors in one file with the original keys, in a ComfyUI
`checkpoints/` folder); with an fp8 e4m3fn and a GGUF Q8_0 transformer: the same frames and
sound for one seed (original keys: equal frames; fp8 and GGUF: within the tolerances of
test_weight_layouts.py).  The other components come from their diffusers component folders (the
video VAE's original layout is not covered here: diffusers' converter expects the 4-block VAE)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("gguf")
import tiny_av_models as ta  # noqa: E402
import tiny_layouts as tl  # noqa: E402
import torch  # noqa: E402
from test_weight_layouts import FP8_TOL, GGUF_TOL, _use  # noqa: E402

from studio.context import RunContext  # noqa: E402
from studio.engines import get_engine  # noqa: E402
from studio.engines import weightfiles as wf  # noqa: E402
from studio.request import GenerationRequest  # noqa: E402

EID = "ltx2"
IMAGE = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ltx2-layouts")
    pipe = ta.tiny_ltx2()
    tl.save_configs(pipe, root / "configs" / EID)
    tr = pipe.transformer.state_dict()
    pipe.save_pretrained(str(root / "a" / EID), safe_serialization=True)
    for name in ("b", "c", "d"):  # every component as a folder but the transformer
        d = root / name / EID
        shutil.copytree(root / "a" / EID, d)
        shutil.rmtree(d / "transformer")
        (d / "model_index.json").unlink()
    # b) a whole original checkpoint: transformer, audio VAE, vocoder and text connectors in one file
    #    (plus a video-VAE key of another shape: that part is refused and comes from its folder)
    whole = {**ta.ltx2_transformer_to_original(tr),
             **ta.ltx2_audio_vae_to_original(pipe.audio_vae.state_dict()),
             **ta.ltx2_vocoder_to_original(pipe.vocoder.state_dict()),
             **ta.ltx2_connectors_to_original(pipe.connectors.state_dict()),
             "vae.per_channel_statistics.mean-of-means": torch.zeros(4)}
    for comp in ("audio_vae", "vocoder", "connectors"):
        shutil.rmtree(root / "b" / EID / comp)
    tl.save_file(whole, root / "comfy" / "checkpoints" / "ltx-2-tiny-dev.safetensors")
    # c) fp8 e4m3fn transformer, original keys
    tl.save_file(tl.fp8_state(ta.ltx2_transformer_to_original(tr), scaled=False),
                 root / "c" / EID / "ltx-2-tiny-dev-fp8.safetensors")
    # d) GGUF Q8_0 transformer, original keys without the prefix
    q8 = tl.save_gguf_q8(ta.ltx2_transformer_to_original(tr, prefix=""),
                         root / "d" / EID / "ltx-2-tiny-Q8_0.gguf", arch="ltxv")
    return {"pipe": pipe, "root": root, "q8_tensors": q8, "whole": whole}


def _run(seed: int = 0):
    eng = get_engine(EID)
    req = GenerationRequest(image="in.png", prompt="a cat zooming in", engine=EID, frames=9, width=32,
                            height=32, fps=24, steps=2, guidance=3.0, seed=seed)
    req.extra = {k: p.default for k, p in eng.extra_spec().items()}
    loaded = eng.load("cpu", req.extra)
    clip = eng.run(loaded.pipe, IMAGE, req, RunContext())
    return clip.frames.astype(int), clip.audio.samples, loaded


def test_original_ltx2_keys_convert_back_to_exactly_the_diffusers_keys(layouts):
    sd = layouts["pipe"].transformer.state_dict()
    whole = dict(layouts["whole"])
    kinds = wf._kinds({wf._strip(k) for k in whole})
    assert kinds["ltx2_transformer"] == "original"
    back = wf.convert(dict(whole), "original", "LTX2VideoTransformer3DModel")
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    pipe = layouts["pipe"]
    for comp, cls in (("audio_vae", "AutoencoderKLLTX2Audio"), ("vocoder", "LTX2Vocoder"),
                      ("connectors", "LTX2TextConnectors")):
        sd = getattr(pipe, comp).state_dict()
        back = wf.convert(dict(whole), "original", cls)
        assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd), comp


def test_every_ltx2_transformer_layout_gives_the_same_frames_and_sound(layouts, monkeypatch):
    _use(monkeypatch, layouts, "a")
    ref, ref_audio, loaded = _run()
    assert "weights" not in loaded.info and ref.shape == (9, 32, 32, 3)
    seed_gap = np.abs(_run(seed=1)[0] - ref).mean()
    assert seed_gap > 2.0

    _use(monkeypatch, layouts, "b", comfy=True)   # the whole original checkpoint in checkpoints/
    inv = get_engine(EID).inventory()
    assert inv.present and inv.folder is None, (inv.missing, inv.rejected)
    assert inv.parts["transformer"].path.parent.name == "checkpoints"
    for comp in ("audio_vae", "vocoder", "connectors"):   # one file fills all four
        assert inv.parts[comp].path == inv.parts["transformer"].path, comp
    assert inv.parts["vae"].source == "folder"
    single, audio, loaded = _run()
    assert loaded.info["weights"]["transformer"].startswith("safetensors fp32 (ComfyUI/original keys)")
    # frames equal; the sound within float32 rounding (the loads differ in the last bits)
    assert np.array_equal(single, ref) and np.abs(audio - ref_audio).max() < 1e-4

    _use(monkeypatch, layouts, "c")               # fp8: stored as fp8, frames close
    inv = get_engine(EID).inventory()
    assert inv.parts["transformer"].info.precision == "fp8_e4m3fn"
    f8, _, loaded = _run()
    f8_gap = tl.fp8_gap(loaded, f8, ref)
    assert 0 < f8_gap < FP8_TOL * seed_gap, (f8_gap, seed_gap)

    _use(monkeypatch, layouts, "d")               # GGUF Q8_0 through diffusers' GGUF loader
    inv = get_engine(EID).inventory()
    assert inv.parts["transformer"].info.precision == "gguf Q8_0"
    q8, _, loaded = _run()
    assert 1 <= tl.gguf_count(loaded) <= layouts["q8_tensors"]
    gap = np.abs(q8 - ref).mean()
    print(f"LTX-2 mean abs (of 255): seed gap {seed_gap:.3f}, fp8 {f8_gap:.3f}, gguf Q8_0 {gap:.3f}")
    assert gap < GGUF_TOL * seed_gap, (gap, seed_gap)
    from studio.modelmgr import MANAGER
    MANAGER.evict()
