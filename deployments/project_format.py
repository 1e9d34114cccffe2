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
