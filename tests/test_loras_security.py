"""LoRA names, previews and uploads as an attacker would try them (issue #10 item 8)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from studio import loras
from studio.engines import check_request
from studio.loras.engine import _adapter
from studio.request import GenerationRequest, LoraRef


@pytest.fixture()
def lib(tmp_path, monkeypatch):
    d = tmp_path / "loras"
    d.mkdir()
    monkeypatch.setenv("STUDIO_LORAS_DIR", str(d))
    return d


def _lora(path) -> None:
    save_file({"unet.blk.to_q.lora_A.weight": torch.zeros(2, 8),
               "unet.blk.to_q.lora_B.weight": torch.zeros(8, 2)}, str(path))


BAD = ["../secret", "../../etc/x", "a/b", "/abs/path", ".", "..", ".hidden", "", "x" * 129, "a b",
       "na\x00me", "évil", "a\\b", "~root", None, 5]


@pytest.mark.parametrize("name", BAD)
def test_bad_names_are_refused_everywhere(lib, name):
    for fn in (loras.check_name, loras.lora_path, loras.find_lora, loras.lora_hash):
        with pytest.raises(loras.LoraError, match="is not allowed"):
            fn(name)
    with pytest.raises(loras.LoraError, match="is not allowed"):
        loras.add_lora(lib / "x", name)


def test_dot_dot_never_reaches_a_safetensors_outside(lib, tmp_path):
    _lora(tmp_path / "secret.safetensors")  # beside loras/, not in it
    with pytest.raises(loras.LoraError, match="not allowed"):
        loras.find_lora("../secret")
    req = GenerationRequest(image="in.png", prompt="cat", engine="i2vgen-xl", frames=4, width=32, height=32,
                            steps=2, loras=[LoraRef("../secret", 1.0)])
    with pytest.raises(ValueError, match=r"LoRA name '\.\./secret' is not allowed"):
        check_request(req)


def test_a_symlink_out_of_the_library_is_refused(lib, tmp_path):
    _lora(tmp_path / "outside.safetensors")
    os.symlink(tmp_path / "outside.safetensors", lib / "link.safetensors")
    with pytest.raises(loras.LoraError, match="resolves outside the LoRA folder"):
        loras.find_lora("link")
    assert [i.name for i in loras.list_loras()] == []  # not listed either


def test_good_names_work(lib):
    for name in ("ink", "ink-wash_v1.2", "A.b-C_9"):
        _lora(lib / f"{name}.safetensors")
        assert loras.find_lora(name).path == (lib / f"{name}.safetensors").resolve()
    assert _adapter("a.b") != _adapter("a_b")  # distinct peft adapter names


@pytest.mark.parametrize("preview", ["../outside.png", "/etc/passwd", "sub/../../x.png", "..", 5])
def test_preview_outside_the_library_is_ignored_with_a_message(lib, tmp_path, preview):
    (tmp_path / "outside.png").write_bytes(b"png")
    _lora(lib / "ink.safetensors")
    (lib / "ink.json").write_text(json.dumps({"family": "svd", "preview": preview}))
    info = loras.find_lora("ink")
    assert info.preview is None
    if isinstance(preview, str) and preview:
        assert any("outside the LoRA folder; ignored" in p for p in info.problems), info.problems
    assert info.family == "svd"


def test_preview_inside_is_kept_and_bad_json_does_not_break_listing(lib):
    _lora(lib / "ink.safetensors")
    (lib / "ink.png").write_bytes(b"png")
    (lib / "ink.json").write_text(json.dumps({"preview": "ink.png"}))
    assert loras.find_lora("ink").preview == (lib / "ink.png").resolve()
    _lora(lib / "broken.safetensors")
    (lib / "broken.json").write_text("{not json")
    items = {i.name: i for i in loras.list_loras()}
    assert items["broken"].family is None and "not valid metadata" in items["broken"].problems[0]


def test_upload_with_an_existing_name_is_refused_unless_replacing(lib, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    _lora(a)
    save_file({"unet.blk.to_q.lora_A.weight": torch.ones(2, 8),
               "unet.blk.to_q.lora_B.weight": torch.ones(8, 2)}, str(b))
    loras.add_lora(a, "ink", family="i2vgen-xl")
    first = (lib / "ink.safetensors").read_bytes()
    with pytest.raises(loras.LoraError, match="a LoRA named 'ink' already exists"):
        loras.add_lora(b, "ink")
    assert (lib / "ink.safetensors").read_bytes() == first
    loras.add_lora(b, "ink", replace=True)
    assert (lib / "ink.safetensors").read_bytes() == b.read_bytes() != first
    assert json.loads((lib / "ink.json").read_text())["family"] == "i2vgen-xl"
    assert not list(lib.glob(".*"))  # no temp file left


def test_save_meta_checks_its_fields(lib):
    _lora(lib / "ink.safetensors")
    loras.save_meta("ink", {"family": "wan2.1-i2v-14b", "default_strength": 0.7})
    assert loras.find_lora("ink").family == "wan2.1-i2v-14b"
    with pytest.raises(loras.LoraError, match="outside -4..4"):
        loras.save_meta("ink", {"default_strength": 9})
    with pytest.raises(loras.LoraError, match="no field"):
        loras.save_meta("ink", {"preview": "../../x.png"})
    with pytest.raises(loras.LoraError, match="not a family name"):
        loras.save_meta("ink", {"family": "../x"})


def test_loras_on_an_engine_that_takes_none_are_refused(lib):
    _lora(lib / "ink.safetensors")
    req = GenerationRequest(image="in.png", prompt="zoom in", engine="camera", loras=[LoraRef("ink", 1.0)])
    with pytest.raises(ValueError, match="engine 'camera' takes no LoRAs"):
        check_request(req)
