"""The LoRA block of the Models & LoRAs page and the Generate page's LoRA section, driven by AppTest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save
from streamlit.testing.v1 import AppTest

from studio.ui.common import shutdown_queues

ROOT = Path(__file__).resolve().parent.parent
MODELS = str(ROOT / "app_pages" / "4_Models.py")
GEN = str(ROOT / "app_pages" / "1_Generate.py")


@pytest.fixture(autouse=True)
def lib(tmp_path, monkeypatch):
    shutdown_queues()
    d = tmp_path / "loras"
    d.mkdir()
    monkeypatch.setenv("STUDIO_LORAS_DIR", str(d))
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path / "models"))  # full-size configs: studio/configs
    yield d
    shutdown_queues()


def wan5b_lora(seed: float = 0.0) -> bytes:
    """A kohya-layout Wan 2.2 TI2V 5B LoRA (hidden size 3072) for two attention layers."""
    sd = {}
    for m in ("blocks_0_self_attn_q", "blocks_1_cross_attn_k"):
        sd[f"lora_unet_{m}.lora_down.weight"] = torch.full((2, 3072), seed)
        sd[f"lora_unet_{m}.lora_up.weight"] = torch.zeros(3072, 2)
        sd[f"lora_unet_{m}.alpha"] = torch.tensor(2.0)
    return save(sd)


def page(path: str = MODELS) -> AppTest:
    return AppTest.from_file(path, default_timeout=90).run()


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="lora_upload").set_value((name, data, "application/octet-stream"))
    return at.run()


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def test_upload_lists_the_lora_with_its_family_and_no_empty_notice(lib):
    at = page()
    assert not at.exception and "No LoRAs yet." in captions(at)
    at = upload(at, "style5b.safetensors", wan5b_lora())
    assert not at.exception, at.exception
    assert [s.value for s in at.success] and "Added style5b.safetensors (family wan2.2-ti2v-5b)" in \
        at.success[0].value and "wan2.2-ti2v" in at.success[0].value
    assert "No LoRAs yet." not in captions(at)   # not beside a successful upload
    assert any("**style5b** · family `wan2.2-ti2v-5b`" in m.value for m in at.markdown)
    assert json.loads((lib / "style5b.json").read_text())["family"] == "wan2.2-ti2v-5b"
    # a rerun with the uploader still holding the file does not handle it again ("already exists")
    at.run()
    assert not at.error and "Added style5b" in at.success[0].value
    # after a reload the family is still there, read from the sidecar
    at = page()
    assert any("family `wan2.2-ti2v-5b`" in m.value for m in at.markdown)
    assert at.selectbox(key="lora_family_style5b").value == "wan2.2-ti2v-5b"


def test_family_can_be_set_on_the_page_and_is_stored_beside_the_lora(lib):
    (lib / "bare.safetensors").write_bytes(wan5b_lora())   # no sidecar: family unknown
    at = page()
    assert any("**bare** · family `?`" in m.value for m in at.markdown)
    sb = at.selectbox(key="lora_family_bare")
    assert sb.value == "(not set)" and {"wan2.2-ti2v-5b", "wan2.1-i2v-14b", "ltx-video"} <= set(sb.options)
    sb.set_value("wan2.2-ti2v-5b")
    at.button[[b.label for b in at.button].index("Save metadata")].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert json.loads((lib / "bare.json").read_text())["family"] == "wan2.2-ti2v-5b"
    at = page()  # reload
    assert any("**bare** · family `wan2.2-ti2v-5b`" in m.value for m in at.markdown)


def test_same_name_upload_is_refused_unless_replace_is_ticked(lib):
    at = upload(page(), "ink.safetensors", wan5b_lora(0.0))
    first = (lib / "ink.safetensors").read_bytes()
    at = page()
    at = upload(at, "ink.safetensors", wan5b_lora(1.0))
    assert "a LoRA named 'ink' already exists" in at.error[0].value
    assert (lib / "ink.safetensors").read_bytes() == first
    at.checkbox(key="lora_replace").check().run()
    assert not at.error and "Added ink.safetensors" in at.success[0].value
    assert (lib / "ink.safetensors").read_bytes() == wan5b_lora(1.0) != first
    assert not [p for p in lib.iterdir() if p.name.startswith(".")]


def test_unet_lora_upload_does_not_fit_wan_or_ltx(lib):
    sd = {"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(2, 320),
          "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.zeros(320, 2)}
    at = upload(page(), "sd.safetensors", save(sd))
    assert not at.exception
    msg = at.success[0].value
    fits = msg.split("it fits: ")[1]
    assert "i2vgen-xl" in fits and not any(e in fits for e in ("wan", "ltx"))


def test_camera_engine_does_not_invite_loras(lib):
    at = page(GEN)
    assert not at.exception
    assert at.selectbox(key="gen_engine").value == "camera"
    caps = captions(at)
    assert any("takes no LoRAs" in c for c in caps), caps
    assert not any("add some" in c for c in caps), caps


def test_a14b_expert_is_read_from_the_name_and_can_be_set(lib):
    """A Wan 2.2 A14B pair's halves: the card says which expert (from the name), and the form stores
    another choice beside the LoRA."""
    (lib / "orbit_high_noise.safetensors").write_bytes(wan5b_lora())
    (lib / "orbit.safetensors").write_bytes(wan5b_lora())
    at = page()
    assert any("**orbit_high_noise**" in m.value and "high-noise expert (from its name)" in m.value
               for m in at.markdown), [m.value for m in at.markdown]
    assert not any("**orbit** ·" in m.value and "expert" in m.value for m in at.markdown)
    assert at.selectbox(key="lora_expert_orbit_high_noise").value == "high_noise"
    sb = at.selectbox(key="lora_expert_orbit")
    assert sb.value == "both"
    sb.set_value("low_noise")
    forms = [b for b in at.button if b.label == "Save metadata"]
    forms[[f.form_id for f in forms].index("lora_meta_orbit")].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert json.loads((lib / "orbit.json").read_text())["expert"] == "low_noise"
    at = page()
    assert any("**orbit** ·" in m.value and "low-noise expert (from its metadata)" in m.value
               for m in at.markdown)


@pytest.mark.parametrize("data, words", [
    (b"\xff" * 4096, "does not start with a safetensors header"),   # "header too large" in the library
    (b"<!doctype html><title>404</title>" * 4, "does not start with a safetensors header"),
    (wan5b_lora()[:300], "is cut short (its header alone is"),        # a partial download
    (wan5b_lora()[:-8], "damaged header or is cut short"),
])
def test_a_junk_lora_is_refused_in_plain_words(lib, data, words):
    at = upload(page(), "junk.safetensors", data)
    assert not at.exception, at.exception
    msg = at.error[0].value
    assert msg.startswith("junk.safetensors was refused: not a safetensors file: junk.safetensors ")
    assert words in msg
    assert "deserializing" not in msg.lower() and "SafetensorError(" not in msg
    assert not (lib / "junk.safetensors").exists()


def test_a_junk_lora_already_in_the_library_is_reported_in_plain_words(lib):
    from studio import loras
    from studio.engines import get_engine
    (lib / "junk.safetensors").write_bytes(b"\xff" * 4096)
    rep = loras.validate_lora(lib / "junk.safetensors", get_engine("wan2.2-ti2v"))
    assert not rep.ok and rep.message.startswith("not a safetensors file: junk.safetensors")
    with pytest.raises(loras.LoraError, match="not a safetensors file: junk.safetensors"):
        loras.load_state(lib / "junk.safetensors")
