"""InGAN checkpoints in the project's format: the generator and the image it was trained on, together.

An InGAN generator retargets one image and takes that image as its input, so a model is both:
``weights.safetensors`` holds ``generator.*`` (the state dict, BatchNorm statistics included) and
``source_image`` (uint8 (H, W, 3), the training image at the size it was trained on);
``model.json`` has family ``ingan``, format ``ingan``, ``arch`` (the ``InGANConfig``),
``image_size`` [H, W], ``size_multiple`` (output sides snap to it) and the training summary.
There is no public checkpoint format to convert: every InGAN model is trained for its image
(``fit`` jobs, ``training/train_ingan.py``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from deployments.ingan.ingan import Generator, InGANConfig
from deployments.ingan.spec import FAMILY as FAMILY_SPEC
from deployments.shapes import assert_shape

FAMILY = FAMILY_SPEC.name
FORMAT = "ingan"
WEIGHTS_FILE = "weights.safetensors"
MANIFEST_FILE = "model.json"
SOURCE_KEY = "source_image"


@dataclasses.dataclass
class InGANModel:
    """What the ``ingan`` family serves: the generator (eval mode) and its source image as a tensor."""

    generator: Generator
    source: torch.Tensor  # (1, 3, H, W) in [-1, 1], on the generator's device
    manifest: dict[str, Any]

    @property
    def size_multiple(self) -> int:
        return self.generator.config.size_multiple


def weights_bytes(generator: Generator, image: np.ndarray) -> bytes:
    """The safetensors bytes of a model: ``generator.*`` plus ``source_image``."""
    assert image.dtype == np.uint8, f"uint8 (H, W, 3) expected, got {image.dtype}"
    assert_shape(image, (None, None, 3), "image (uint8 H, W, 3)")
    tensors = {f"generator.{k}": v.detach().contiguous().cpu() for k, v in generator.state_dict().items()}
    tensors[SOURCE_KEY] = torch.from_numpy(np.array(image, dtype=np.uint8))  # a copy: decoded images are read-only
    return safetensors.torch.save(tensors, metadata={"format": FORMAT})


def manifest_for(
    generator: Generator, image: np.ndarray, *, name: str, description: str = "", training: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "family": FAMILY,
        "format": FORMAT,
        "source_format": None,
        "arch": generator.config.to_dict(),
        "resolution": None,
        "image_size": [int(image.shape[0]), int(image.shape[1])],
        "size_multiple": generator.config.size_multiple,
        "ops": FAMILY_SPEC.op_names(),
        "random_init": False,
        "description": description,
        "training": training or {},
    }


def export(
    generator: Generator,
    image: np.ndarray,
    out_dir: str | Path,
    *,
    name: str,
    description: str = "",
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/weights.safetensors`` + ``out_dir/model.json``; returns the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / WEIGHTS_FILE).write_bytes(weights_bytes(generator, image))
    manifest = manifest_for(generator, image, name=name, description=description, training=training)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_model(weights: bytes, manifest: dict[str, Any], device: str | torch.device = "cpu") -> InGANModel:
    tensors = safetensors.torch.load(weights)
    if SOURCE_KEY not in tensors:
        raise ValueError(f"InGAN weights have no {SOURCE_KEY!r} tensor (the image the generator retargets)")
    image = tensors.pop(SOURCE_KEY)
    generator = Generator(InGANConfig(**manifest["arch"]))
    generator.load_state_dict({k.removeprefix("generator."): v for k, v in tensors.items()}, strict=True)
    generator = generator.eval().to(device)
    source = image.permute(2, 0, 1).unsqueeze(0).float().to(device) / 127.5 - 1
    return InGANModel(generator, source, manifest)
