"""Generator images at the edge of a family: float tensors in [-1, 1] <-> uint8 arrays (shared by families)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from deployments.shapes import assert_shape
from schemas.common import STRIP_GAP


def to_uint8_images(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [-1, 1] -> numpy uint8 (N, H, W, 3); values outside [-1, 1] are clipped."""
    assert_shape(x, (None, 3, None, None), "images")
    x = x.detach().float().clamp(-1, 1)
    x = ((x + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def images_to_tensor(images: Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (H, W, 3) arrays of one size -> float (N, 3, H, W) in [-1, 1]."""
    shapes = {image.shape for image in images}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
        raise ValueError(f"images must all be uint8 (H, W, 3) of one size, got shapes {sorted(shapes)}")
    batch = torch.from_numpy(np.stack(images))
    if torch.device(device).type == "cuda":  # uint8 over the bus (4x less than float), from page-locked memory
        batch = batch.pin_memory().to(device, non_blocking=True)
    batch = batch.to(device=device, dtype=torch.float32)
    return batch.permute(0, 3, 1, 2) / 127.5 - 1.0


def strip(images: list[np.ndarray], gap: int = STRIP_GAP) -> tuple[np.ndarray, list[int]]:
    """uint8 (h, w, 3) images side by side on white, top-aligned, ``gap`` px apart -> (strip, x offset of each)."""
    height = max(image.shape[0] for image in images)
    width = sum(image.shape[1] for image in images) + gap * (len(images) - 1)
    canvas = np.full((height, width, 3), 255, np.uint8)
    offsets, x = [], 0
    for image in images:
        canvas[: image.shape[0], x : x + image.shape[1]] = image
        offsets.append(x)
        x += image.shape[1] + gap
    return canvas, offsets
