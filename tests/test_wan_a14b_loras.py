"""Wan 2.2 A14B LoRA pairs on a tiny two-expert pipeline: the high-noise half goes into
`transformer` only, the low-noise half into `transformer_2` only (by the sidecar's `expert` or the
file name), a LoRA that names no expert into both; each gives the frames of weights patched by
hand; and a LoRA marked as one expert is refused on an engine with one denoiser."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

pytest.importorskip("diffusers")
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from test_wan_a14b import IMAGE, _req, tiny_a14b  # noqa: E402

from studio import loras  # noqa: E402
from studio.context import RunContext  # noqa: E402
from studio.engines import check_request, get_engine  # noqa: E402
from studio.loras import LoraError  # noqa: E402
from studio.request import LoraRef  # noqa: E402

EID = "wan2.2-i2v-a14b"
BOUNDARY = 0.9   # the first of 4 steps is high-noise, the other 3 low-noise: each half shows
MODS = ("blocks.0.attn1.to_q", "blocks.1.attn2.to_v", "blocks.0.ffn.net.0.proj")


def _mats(pipe, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in MODS:
        lin = pipe.transformer.get_submodule(m)
        out[m] = (torch.randn(2, lin.in_features, generator=g) * 0.6,
                  torch.randn(lin.out_features, 2, generator=g) * 0.6)
    return out


def _write(path, mats, expert: str | None = None) -> None:
    """A ComfyUI-layout file (what A14B pairs ship as), alpha = rank."""
    sd = {}
    names = {"blocks.0.attn1.to_q": "blocks.0.self_attn.q", "blocks.1.attn2.to_v": "blocks.1.cross_attn.v",
             "blocks.0.ffn.net.0.proj": "blocks.0.ffn.0"}
    for m, (down, up) in mats.items():
        base = f"diffusion_model.{names[m]}"
        sd[f"{base}.lora_down.weight"], sd[f"{base}.lora_up.weight"] = down, up
        sd[f"{base}.alpha"] = torch.tensor(2.0)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    if expert is not None:
        path.with_suffix(".json").write_text(json.dumps({"expert": expert}))


def _patched(pipe, high=None, low=None):
    """A copy of `pipe` with W += up @ down merged by hand into the named experts."""
    p = copy.deepcopy(pipe)
    with torch.no_grad():
        for model, mats in ((p.transformer, high), (p.transformer_2, low)):
            for m, (down, up) in (mats or {}).items():
                model.get_submodule(m).weight += up @ down
    return p


def _run(pipe, refs=()):
    eng = get_engine(EID)
    req = _req(EID, steps=4)
    req.loras = list(refs)
    clip = eng.run(pipe, IMAGE, req, RunContext())
    return clip.frames.astype(int), clip.meta


def _close(a, b) -> bool:
    return int(np.abs(a - b).max()) <= 1


@pytest.fixture()
def lib(tmp_path, monkeypatch):
    d = tmp_path / "loras"
    d.mkdir()
    monkeypatch.setenv("STUDIO_LORAS_DIR", str(d))
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path / "models"))
    return d


def test_expert_from_the_name_or_the_sidecar(lib):
    assert loras.expert_from_name("style_high_noise") == "high_noise"
    assert loras.expert_from_name("Wan2.2-I2V-A14B-orbit-LOW") == "low_noise"
    assert loras.expert_from_name("orbit-HighNoise-v2") == "high_noise"
    for plain in ("low_light_style", "highway", "slow", "shallow-focus"):
        assert loras.expert_from_name(plain) is None, plain
    _write(lib / "orbit_high_noise.safetensors", {})
    _write(lib / "plain.safetensors", {}, expert="low_noise")
    assert loras.find_lora("orbit_high_noise").expert == "high_noise"
    plain = loras.find_lora("plain")
    assert (plain.expert, plain.expert_source) == ("low_noise", "metadata")
    loras.save_meta("orbit_high_noise", {"expert": "both"})       # the sidecar overrides the name
    assert loras.find_lora("orbit_high_noise").expert is None
    with pytest.raises(LoraError, match="expert='middle' is not one of high_noise, low_noise, both"):
        loras.save_meta("plain", {"expert": "middle"})


def test_a_pair_goes_into_its_experts_as_hand_patched_weights_do(lib):
    pipe = tiny_a14b(BOUNDARY)
    hi, lo = _mats(pipe, 1), _mats(pipe, 2)
    _write(lib / "orbit_high_noise.safetensors", hi)
    _write(lib / "orbit_low_noise.safetensors", lo)
    _write(lib / "orbit_both.safetensors", hi)                    # names no expert: both
    base, _ = _run(pipe)

    only_hi, meta = _run(pipe, [LoraRef("orbit_high_noise", 1.0)])
    assert [r["experts"] for r in meta["loras"]] == [["high_noise"]]
    assert "orbit_high_noise" in pipe.transformer.peft_config
    assert not getattr(pipe.transformer_2, "peft_config", {})
    want, _ = _run(_patched(pipe_base := tiny_a14b(BOUNDARY), high=hi))
    assert not _close(only_hi, base) and _close(only_hi, want), np.abs(only_hi - want).max()

    pair, meta = _run(pipe, [LoraRef("orbit_high_noise", 1.0), LoraRef("orbit_low_noise", 1.0)])
    assert [r["experts"] for r in meta["loras"]] == [["high_noise"], ["low_noise"]]
    assert set(pipe.transformer_2.peft_config) == {"orbit_low_noise"}
    want_pair, _ = _run(_patched(pipe_base, high=hi, low=lo))
    assert _close(pair, want_pair) and not _close(pair, only_hi), np.abs(pair - want_pair).max()

    both, meta = _run(pipe, [LoraRef("orbit_both", 1.0)])
    assert [r["experts"] for r in meta["loras"]] == [["high_noise", "low_noise"]]
    want_both, _ = _run(_patched(pipe_base, high=hi, low=hi))
    assert _close(both, want_both) and not _close(both, only_hi)

    # switching back: none in use gives exactly the base frames; the low half alone patches low only
    assert np.array_equal(_run(pipe)[0], base)
    only_lo, _ = _run(pipe, [LoraRef("orbit_low_noise", 1.0)])
    assert _close(only_lo, _run(_patched(pipe_base, low=lo))[0]) and not _close(only_lo, base)


def test_an_expert_half_is_refused_on_a_one_denoiser_engine(lib, tmp_path):
    import tiny_models as tm
    pipe = tm.tiny_wan()
    pipe.transformer.save_config(tmp_path / "models" / "wan-i2v" / "transformer")
    g = torch.Generator().manual_seed(0)
    lin = pipe.transformer.get_submodule("blocks.0.attn1.to_q")
    mats = {"blocks.0.attn1.to_q": (torch.randn(2, lin.in_features, generator=g),
                                    torch.randn(lin.out_features, 2, generator=g))}
    _write(lib / "orbit.safetensors", mats, expert="high_noise")
    req = _req("wan-i2v")
    req.loras = [LoraRef("orbit", 1.0)]
    with pytest.raises(LoraError, match=r"'orbit' is the high-noise half of a Wan 2.2 A14B pair .*engine "
                                        r"'wan-i2v' has one denoiser"):
        check_request(req)
    loras.save_meta("orbit", {"expert": "both"})
    check_request(req)                                             # the same file, no expert: fine
    # named as a half (no sidecar choice): accepted on one denoiser, and the report says so
    (lib / "orbit.json").unlink()
    (lib / "orbit.safetensors").rename(lib / "orbit_HIGH.safetensors")
    rep = loras.validate_lora(lib / "orbit_HIGH.safetensors", get_engine("wan-i2v"))
    assert rep.ok and rep.message.endswith("named as the high-noise half of a Wan 2.2 A14B pair (by its "
                                           "name), but engine 'wan-i2v' has one denoiser"), rep.message
