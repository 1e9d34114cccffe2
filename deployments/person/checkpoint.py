"""Disentangled-person checkpoints: ``model.json`` (family ``person``, format ``disentangled-person``,
arch = PersonConfig) and ``weights.safetensors`` (the DisentangledPersonGenerator state dict:
``foreground.*``, ``background.*``, ``pose.*``, ``decoder.*``, ``mappings.*``).

Written by ``training/train_person.py``; there is no public checkpoint of this architecture to convert.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import torch

from deployments import project_format
from deployments.person.networks import FACTORS, DisentangledPersonGenerator, PersonConfig
from deployments.person.spec import FAMILY as FAMILY_SPEC
from schemas.warp import KEYPOINT_NAMES

FAMILY = FAMILY_SPEC.name
FORMAT = "disentangled-person"


def config_from_manifest(manifest: dict[str, Any]) -> PersonConfig:
    return project_format.config_from_manifest(PersonConfig, manifest, FAMILY)


def load_model(weights: bytes, manifest: dict[str, Any], device: str = "cpu") -> DisentangledPersonGenerator:
    """safetensors bytes + manifest -> DisentangledPersonGenerator in eval mode; mismatched keys or shapes are refused by name."""
    if manifest.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT!r} checkpoint: format {manifest.get('format')!r}")
    model = project_format.load_weights(DisentangledPersonGenerator(config_from_manifest(manifest)), weights, FAMILY)
    return model.eval().to(torch.device(device))


@dataclasses.dataclass
class Example:
    """An example person shipped with a checkpoint: the image and its keypoints."""

    image: Any  # (H, W, 3) uint8 array
    keypoints: list  # 18 x [x, y] or None


def export(model: DisentangledPersonGenerator, out_dir: Path, name: str, description: str, examples: list[Example] = ()) -> dict[str, Any]:
    """Write model.json, weights.safetensors and examples/*.png; the manifest lists each example by its
    image's asset id (the sha256 of its PNG, as an upload of it gets) with its keypoints."""
    from service.images import encode_png

    out_dir.mkdir(parents=True, exist_ok=True)
    listed: dict[str, dict[str, Any]] = {}
    if examples:
        (out_dir / "examples").mkdir(exist_ok=True)
    for i, example in enumerate(examples):
        image_png = encode_png(example.image)
        (out_dir / "examples" / f"{i:02d}.png").write_bytes(image_png)
        listed[hashlib.sha256(image_png).hexdigest()] = {"keypoints": example.keypoints}
    return project_format.write_export(
        model,
        out_dir,
        name=name,
        family=FAMILY,
        format=FORMAT,
        keypoint_names=list(KEYPOINT_NAMES),
        factors=list(FACTORS),
        embedding_dims={f: model.config.embedding_dim(f) for f in FACTORS},
        ops=FAMILY_SPEC.op_names(),
        description=description,
        examples=listed,
    )
