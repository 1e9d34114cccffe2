"""Warping-GAN checkpoints: ``model.json`` (family ``warp``, format ``warp-gan``, arch = WarpConfig) and
``weights.safetensors`` (the WarpingGAN state dict: ``parser.*``, ``aligner.*``, ``renderer.*``).

Written by ``training/train_warp.py``; there is no public checkpoint of this architecture to convert.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import safetensors.torch
import torch

from deployments.warp.networks import WarpConfig, WarpingGAN

FAMILY = "warp"
FORMAT = "warp-gan"


def config_from_manifest(manifest: dict[str, Any]) -> WarpConfig:
    """The manifest's arch as a WarpConfig; unknown or missing fields are named in the error."""
    arch = dict(manifest.get("arch") or {})
    known = {f.name for f in dataclasses.fields(WarpConfig)}
    unknown = sorted(set(arch) - known)
    if unknown:
        raise ValueError(f"warp arch has unknown fields {unknown}; known: {sorted(known)}")
    return WarpConfig(**arch)


def load_model(weights: bytes, manifest: dict[str, Any], device: str = "cpu") -> WarpingGAN:
    """safetensors bytes + manifest -> WarpingGAN in eval mode; mismatched keys or shapes are refused by name."""
    if manifest.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT!r} checkpoint: format {manifest.get('format')!r}")
    model = WarpingGAN(config_from_manifest(manifest))
    state = safetensors.torch.load(weights)
    missing = sorted(set(model.state_dict()) - set(state))
    extra = sorted(set(state) - set(model.state_dict()))
    if missing or extra:
        raise ValueError(f"warp weights do not match the arch: missing {missing[:5]}, unexpected {extra[:5]}")
    model.load_state_dict(state, strict=True)
    return model.eval().to(torch.device(device))
