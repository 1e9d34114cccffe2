"""The project's own checkpoint format, for architectures with no public checkpoint (warp, person):
``model.json`` whose ``arch`` is the generator's config dataclass, and ``weights.safetensors``
holding its state dict."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import safetensors.torch
from torch import nn

Config = TypeVar("Config")
Module = TypeVar("Module", bound=nn.Module)


def config_from_manifest(config_class: type[Config], manifest: dict[str, Any], family: str) -> Config:
    """The manifest's arch as ``config_class``; unknown fields are named in the error."""
    arch = dict(manifest.get("arch") or {})
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(arch) - known)
    if unknown:
        raise ValueError(f"{family} arch has unknown fields {unknown}; known: {sorted(known)}")
    return config_class(**arch)


def load_weights(model: Module, weights: bytes, family: str) -> Module:
    """safetensors bytes into ``model``, every key and shape as the arch makes them; mismatches are refused by name."""
    state = safetensors.torch.load(weights)
    missing = sorted(set(model.state_dict()) - set(state))
    extra = sorted(set(state) - set(model.state_dict()))
    if missing or extra:
        raise ValueError(f"{family} weights do not match the arch: missing {missing[:5]}, unexpected {extra[:5]}")
    model.load_state_dict(state, strict=True)
    return model


def write_weights(model: nn.Module, path) -> None:
    """The model's state dict as a safetensors file at ``path``."""
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def write_export(
    model: nn.Module,
    out_dir,
    *,
    name: str,
    family: str,
    format: str,
    ops: list[str],
    description: str,
    examples: dict[str, dict[str, Any]],
    **family_fields: Any,
) -> dict[str, Any]:
    """Write ``weights.safetensors`` and ``model.json`` into ``out_dir`` and return the manifest.

    The manifest's common fields come from ``model.config`` (a dataclass with ``height`` and ``width``);
    ``family_fields`` are the family's own (keypoint names, factors...), ``examples`` maps each shipped
    example's asset id to what the family records about it."""
    import json
    from pathlib import Path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_weights(model, out_dir / "weights.safetensors")
    config = model.config
    manifest = {
        "name": name,
        "family": family,
        "format": format,
        "arch": dataclasses.asdict(config),
        "resolution": None,
        "image_size": [config.height, config.width],
        **family_fields,
        "ops": ops,
        "random_init": False,
        "description": description,
        "examples": examples,
    }
    (out_dir / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
