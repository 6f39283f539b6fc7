"""LoRAs: the one face the rest of the studio uses.

Inside the package, each module holds one concern:

- `library`: the library on disk (`loras/<name>.safetensors` + sidecar JSON): names, metadata,
  uploads, hashes;
- `formats`: LoRA files as people publish them: keys and shapes, layout and family, conversion to
  diffusers/peft keys;
- `layers`: our own low-rank layers for the UNet engines (I2VGen-XL, SVD);
- `engine`: the key-only check against a denoiser (`validate_lora`, `check_refs`) and loading and
  stacking into a pipeline (`apply_loras`).

Code outside the package imports from `studio.loras` only; a request's LoRA check reads
`check_refs` -> `validate_lora` -> `formats.scan` and never leaves the package.
"""

from __future__ import annotations

from .engine import LoraReport, apply_loras, check_refs, expert_slots, inject, validate_lora
from .formats import guess_family, module_shapes, read_shapes, shapes_from_config
from .layers import LoraLayer, activate, parse_keys, shapes_fit, target_modules
from .library import (
    EXPERTS,
    NAME_RE,
    LoraError,
    LoraInfo,
    add_lora,
    check_name,
    check_safetensors,
    expert_from_name,
    find_lora,
    list_loras,
    load_state,
    lora_hash,
    lora_path,
    loras_dir,
    read_info,
    save_meta,
)

__all__ = [
    "EXPERTS", "NAME_RE", "LoraError", "LoraInfo", "LoraLayer", "LoraReport", "activate", "add_lora",
    "apply_loras", "check_name", "check_refs", "check_safetensors", "expert_from_name", "expert_slots",
    "find_lora",
    "guess_family", "inject", "list_loras", "load_state", "lora_hash", "lora_path", "loras_dir",
    "module_shapes", "parse_keys", "read_info", "read_shapes", "save_meta", "shapes_fit",
    "shapes_from_config", "target_modules", "validate_lora",
]
