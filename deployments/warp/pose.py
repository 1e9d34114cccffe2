"""Pose encoding: COCO-18 keypoints as 18 Gaussian heatmaps, the form every network of the family takes."""

from __future__ import annotations

import torch

from deployments.shapes import assert_shape

NUM_KEYPOINTS = 18


def heatmap_sigma(height: int) -> float:
    """The Gaussian width of the heatmaps at an image height: 2 px at 128 px high, never below 1 px.
    Training and serving must agree on it."""
    return max(1.0, height / 64)


def pose_heatmaps(keypoints: torch.Tensor, visible: torch.Tensor, height: int, width: int, sigma: float = 2.0) -> torch.Tensor:
    """keypoints (n, 18, 2) pixel (x, y), visible (n, 18) bool -> (n, 18, H, W) in [0, 1].

    Channel j is exp(-|p - k_j|^2 / (2 sigma^2)), peaking at 1 on the keypoint; an invisible joint's
    channel is all zeros, so "not there" never looks like "there, far away"."""
    assert_shape(keypoints, (None, NUM_KEYPOINTS, 2), "keypoints")
    assert_shape(visible, (keypoints.shape[0], NUM_KEYPOINTS), "visible")
    ys = torch.arange(height, dtype=torch.float32, device=keypoints.device)[None, None, :, None]
    xs = torch.arange(width, dtype=torch.float32, device=keypoints.device)[None, None, None, :]
    x, y = keypoints[..., 0, None, None].float(), keypoints[..., 1, None, None].float()
    maps = torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return maps * visible[..., None, None].to(maps.dtype)


def keypoint_tensors(points: list[list[float] | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical API keypoints (18 x [x, y] or null) -> (coordinates (18, 2), visible (18,) bool)."""
    assert len(points) == NUM_KEYPOINTS, len(points)
    coordinates = torch.tensor([p if p is not None else [0.0, 0.0] for p in points], dtype=torch.float32)
    return coordinates, torch.tensor([p is not None for p in points])
