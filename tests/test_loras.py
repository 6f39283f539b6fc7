"""LoRA library: listing, metadata, safetensors only, key layouts, validation reports."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from studio import loras


class _Eng:
    id = "i2vgen-xl"
    family = "i2vgen-xl"


def _model():
    m = torch.nn.Module()
    m.blk = torch.nn.Module()
    m.blk.to_q = torch.nn.Linear(8, 8)
    m.blk.conv = torch.nn.Conv2d(4, 6, 3, padding=1)
    return m


def test_list_and_metadata(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_LORAS_DIR", str(tmp_path))
    save_file({"unet.blk.to_q.lora_A.weight": torch.zeros(2, 8)}, str(tmp_path / "ink.safetensors"))
    (tmp_path / "ink.json").write_text(json.dumps({"family": "svd", "trigger_words": ["ink"],
                                                   "default_strength": 0.6, "preview": "ink.png"}))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "bare.safetensors"))
    items = {i.name: i for i in loras.list_loras()}
    assert sorted(items) == ["bare", "ink"]
    assert items["ink"].family == "svd" and items["ink"].trigger_words == ["ink"]
    assert items["ink"].default_strength == 0.6 and items["ink"].preview == tmp_path / "ink.png"
    assert items["bare"].family is None and items["bare"].default_strength == 1.0
    assert len(loras.lora_hash("ink")) == 64
    with pytest.raises(loras.LoraError, match="not found"):
        loras.find_lora("nope")


def test_only_safetensors(tmp_path):
    p = tmp_path / "evil.ckpt"
    p.write_bytes(b"not a pickle we will ever open")
    with pytest.raises(loras.LoraError, match="only .safetensors"):
        loras.load_state(p)
    rep = loras.validate_lora(p, _Eng())
    assert not rep.ok and "only .safetensors" in rep.message


@pytest.mark.parametrize("keys", [
    {"unet.blk.to_q.lora_A.weight": (2, 8), "unet.blk.to_q.lora_B.weight": (8, 2)},
    {"blk.to_q.lora.down.weight": (2, 8), "blk.to_q.lora.up.weight": (8, 2)},
    {"lora_unet_blk_to_q.lora_down.weight": (2, 8), "lora_unet_blk_to_q.lora_up.weight": (8, 2),
     "lora_unet_blk_to_q.alpha": ()},
])
def test_key_layouts_are_understood(keys):
    sd = {k: torch.ones(s) for k, s in keys.items()}
    groups, unmatched = loras.parse_keys(sd, {"blk.to_q", "blk.conv"})
    assert list(groups) == ["blk.to_q"] and unmatched == []
    assert groups["blk.to_q"]["down"].shape == (2, 8)


def test_validate_counts_and_refuses(tmp_path):
    p = tmp_path / "mix.safetensors"
    save_file({"unet.blk.to_q.lora_A.weight": torch.zeros(2, 8),
               "unet.blk.to_q.lora_B.weight": torch.zeros(8, 2),
               "unet.blk.conv.lora_A.weight": torch.zeros(2, 4, 3, 3),
               "unet.blk.conv.lora_B.weight": torch.zeros(6, 2, 1, 1),
               "unet.other.lora_A.weight": torch.zeros(2, 8)}, str(p))
    rep = loras.validate_lora(p, _Eng(), _model())
    assert rep.ok and rep.matched == 4 and rep.unmatched == 1
    (tmp_path / "mix.json").write_text(json.dumps({"family": "ltx-video"}))
    rep = loras.validate_lora(p, _Eng(), _model())
    assert not rep.ok and "family 'ltx-video'" in rep.message
    bad = tmp_path / "bad.safetensors"
    save_file({"unet.blk.to_q.lora_A.weight": torch.zeros(2, 5),
               "unet.blk.to_q.lora_B.weight": torch.zeros(8, 2)},
              str(bad))  # wrong in_features
    rep = loras.validate_lora(bad, _Eng(), _model())
    assert not rep.ok and rep.matched == 0


def test_injected_conv_and_linear_strengths(tmp_path):
    m = _model()
    p = tmp_path / "s.safetensors"
    g = torch.Generator().manual_seed(0)
    save_file({"lora_unet_blk_to_q.lora_down.weight": torch.randn(2, 8, generator=g),
               "lora_unet_blk_to_q.lora_up.weight": torch.randn(8, 2, generator=g),
               "lora_unet_blk_to_q.alpha": torch.tensor(1.0),
               "lora_unet_blk_conv.lora_down.weight": torch.randn(2, 4, 3, 3, generator=g),
               "lora_unet_blk_conv.lora_up.weight": torch.randn(6, 2, 1, 1, generator=g)}, str(p))
    x, xc = torch.randn(3, 8, generator=g), torch.randn(1, 4, 5, 5, generator=g)
    base_q, base_c = m.blk.to_q(x), m.blk.conv(xc)
    rep = loras.inject(m, "s", p)
    assert rep.ok and rep.matched == 4
    loras.activate(m, {"s": 0.0})
    assert torch.equal(m.blk.to_q(x), base_q) and torch.equal(m.blk.conv(xc), base_c)
    loras.activate(m, {"s": 1.0})
    sd = loras.load_state(p)
    down, up = sd["lora_unet_blk_to_q.lora_down.weight"], sd["lora_unet_blk_to_q.lora_up.weight"]
    want = base_q + 0.5 * (x @ down.T @ up.T)
    assert torch.allclose(m.blk.to_q(x), want, atol=1e-5)  # alpha/rank = 1/2
    assert not torch.allclose(m.blk.conv(xc), base_c)
