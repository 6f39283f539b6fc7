"""`python -m studio models` and the Models page: per-component files, formats, sizes, what is
missing, and download commands whose program exists (`hf`; the old CLI name appears nowhere)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OLD_CLI = "huggingface" + "-cli"  # split so that this file does not match its own grep
VENV_BIN = str(Path(sys.executable).parent)
HF = str(Path(VENV_BIN) / "hf")


def _cli_models(env_extra: dict[str, str]) -> str:
    import os
    env = dict(os.environ, **env_extra)
    out = subprocess.run([sys.executable, "-m", "studio", "models"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return out.stdout + out.stderr


def _commands(text: str) -> list[str]:
    cmds = []
    for line in text.splitlines():
        if "get it:" in line:
            cmds.append(line.split("get it:", 1)[1].strip())
        elif "ComfyUI single files" in line and "): " in line:
            cmds.append(line.split("): ", 1)[1].strip())
    return cmds


def test_cli_prints_commands_that_exist_and_never_the_old_cli(tmp_path):
    text = _cli_models({"STUDIO_MODELS_DIR": str(tmp_path / "m"), "HF_HUB_CACHE": str(tmp_path / "hf")})
    assert OLD_CLI not in text
    cmds = [c for c in _commands(text) if not c.startswith("python -m studio")]
    assert len(cmds) >= 6, text  # every diffusion engine is missing here
    for c in cmds:
        argv = shlex.split(c)
        # works as shown from any folder: the `hf` beside this Python, an absolute --local-dir
        assert argv[0] == str(Path(VENV_BIN) / "hf") and argv[1] == "download", c
        assert Path(argv[0]).is_file(), f"{argv[0]} does not exist"
        dest = argv[argv.index("--local-dir") + 1]
        assert Path(dest).is_absolute() and dest.startswith(str((tmp_path / "m").resolve()) + "/"), c
    # the program really runs (offline: only its help)
    help_out = subprocess.run([str(Path(VENV_BIN) / "hf"), "download", "--help"], capture_output=True,
                              text=True, timeout=120)
    assert help_out.returncode == 0 and "--local-dir" in help_out.stdout and "--include" in help_out.stdout


def test_no_file_in_the_repo_names_the_old_cli():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    hits = []
    for f in files:
        p = ROOT / f
        if p.suffix in (".py", ".md", ".txt", ".toml", ".json", ".cfg", ".sh", "") and p.is_file():
            try:
                if OLD_CLI in p.read_text(errors="ignore"):
                    hits.append(f)
            except OSError:
                continue
    assert hits == []


def test_cli_lists_each_component_file_format_and_size(tmp_path):
    pytest.importorskip("diffusers")
    import tiny_layouts as tl
    pipe = tl.tiny_wan_for_layouts()
    tl.save_configs(pipe, tmp_path / "configs" / "wan-i2v")
    comfy = tmp_path / "comfy"
    tl.save_file(tl.fp8_state(tl.wan_transformer_to_original(pipe.transformer.state_dict()), scaled=False),
                 comfy / "diffusion_models" / "wan_tiny_fp8_e4m3fn.safetensors")
    tl.save_file(tl.wan_vae_to_original(pipe.vae.state_dict()), comfy / "vae" / "wan_tiny_vae.safetensors")
    text = _cli_models({"STUDIO_MODELS_DIR": str(tmp_path / "m"), "HF_HUB_CACHE": str(tmp_path / "hf"),
                        "STUDIO_CONFIGS_DIR": str(tmp_path / "configs"), "STUDIO_COMFYUI_DIR": str(comfy)})
    block = text.split("  wan-i2v", 1)[1].split("\n  wan2.2", 1)[0]
    assert "missing image_encoder, text_encoder, tokenizer" in block
    tr_line = next(line for line in block.splitlines() if line.strip().startswith("transformer"))
    size = (comfy / "diffusion_models" / "wan_tiny_fp8_e4m3fn.safetensors").stat().st_size
    assert "safetensors fp8_e4m3fn (ComfyUI/original keys)" in tr_line and "wan_tiny_fp8_e4m3fn" in tr_line
    assert f"{size / 1e3:.1f} KB" in tr_line or f"{size / 1e6:.1f} MB" in tr_line
    assert "vae" in block and "wan_tiny_vae.safetensors" in block
    assert "text_encoder   MISSING" in block
    assert (f'{HF} download Wan-AI/Wan2.1-I2V-14B-480P-Diffusers --include "image_encoder/*" '
            f'--include "text_encoder/*" --include "tokenizer/*" '
            f'--local-dir {(tmp_path / "m").resolve()}/wan-i2v') in block


def test_models_page_shows_components_and_hf_commands(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    at = AppTest.from_file(str(ROOT / "app_pages" / "4_Models.py"), default_timeout=60).run()
    assert not at.exception
    codes = [c.value for c in at.code]
    texts = codes + [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert not any(OLD_CLI in t for t in texts)
    dest = (tmp_path / "m").resolve()
    assert f"{HF} download Wan-AI/Wan2.1-I2V-14B-480P-Diffusers --local-dir {dest}/wan-i2v" in codes
    # the ComfyUI layout, once chosen: its single files, then the tokenizer from the diffusers repo
    at.radio(key="fetch_layout_wan-i2v").set_value("ComfyUI single files (fp8)").run()
    codes = [c.value for c in at.code]
    assert any(c.startswith(f"{HF} download Comfy-Org/Wan_2.1_ComfyUI_repackaged") and
               c.endswith(f"--local-dir {dest}/wan-i2v") for c in codes)
    assert f"{HF} download Wan-AI/Wan2.1-I2V-14B-480P-Diffusers --include 'tokenizer/*' --local-dir " \
           f"{dest}/wan-i2v" in codes
    frames = [df.value for df in at.dataframe]
    comps = {r for f in frames if "component" in f.columns for r in f["component"]}
    assert {"transformer", "text_encoder", "image_encoder", "vae", "tokenizer"} <= comps
