"""Warping-GAN checkpoints: ``model.json`` (family ``warp``, format ``warp-gan``, arch = WarpConfig) and
``weights.safetensors`` (the WarpingGAN state dict: ``parser.*``, ``aligner.*``, ``renderer.*``).

Written by ``training/train_warp.py``; there is no public checkpoint of this architecture to convert.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import torch

from deployments import project_format
from deployments.warp.networks import WarpConfig, WarpingGAN
from deployments.warp.spec import FAMILY as FAMILY_SPEC
from schemas.warp import KEYPOINT_NAMES

FAMILY = FAMILY_SPEC.name
FORMAT = "warp-gan"


def config_from_manifest(manifest: dict[str, Any]) -> WarpConfig:
    return project_format.config_from_manifest(WarpConfig, manifest, FAMILY)


def load_model(weights: bytes, manifest: dict[str, Any], device: str = "cpu") -> WarpingGAN:
    """safetensors bytes + manifest -> WarpingGAN in eval mode; mismatched keys or shapes are refused by name."""
    if manifest.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT!r} checkpoint: format {manifest.get('format')!r}")
    model = project_format.load_weights(WarpingGAN(config_from_manifest(manifest)), weights, FAMILY)
    return model.eval().to(torch.device(device))


@dataclasses.dataclass
class Example:
    """An example input shipped with a checkpoint: the image, its parsing and keypoints, and a target pose to try."""

    image: Any  # (H, W, 3) uint8 array
    parsing: Any  # (H, W) uint8 LIP class indices
    keypoints: list  # 18 x [x, y] or None
    target_keypoints: list  # 18 x [x, y] or None


def export(model: WarpingGAN, out_dir: Path, name: str, description: str, examples: list[Example] = ()) -> dict[str, Any]:
    """Write model.json, weights.safetensors and examples/*.png; the manifest lists each example by its
    image's asset id (the sha256 of its PNG, as an upload of it gets) with keypoints and parsing id."""
    from service.images import encode_png

    out_dir.mkdir(parents=True, exist_ok=True)
    listed: dict[str, dict[str, Any]] = {}
    if examples:
        (out_dir / "examples").mkdir(exist_ok=True)
    for i, example in enumerate(examples):
        image_png, parsing_png = encode_png(example.image), encode_png(example.parsing)
        (out_dir / "examples" / f"{i:02d}.png").write_bytes(image_png)
        (out_dir / "examples" / f"{i:02d}-parsing.png").write_bytes(parsing_png)
        listed[hashlib.sha256(image_png).hexdigest()] = {
            "keypoints": example.keypoints,
            "parsing": hashlib.sha256(parsing_png).hexdigest(),
            "target_keypoints": example.target_keypoints,
        }
    return project_format.write_export(
        model,
        out_dir,
        name=name,
        family=FAMILY,
        format=FORMAT,
        keypoint_names=list(KEYPOINT_NAMES),
        ops=FAMILY_SPEC.op_names(),
        description=description,
        examples=listed,
    )
