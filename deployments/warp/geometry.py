"""Sampling grids for the Soft-Gated Warping-GAN: affine, thin-plate spline (TPS) and their composition.

A grid (n, H, W, 2) holds, for every output pixel, the (x, y) position in [-1, 1] to read from the
input (``torch.nn.functional.grid_sample`` convention, ``align_corners=False`` throughout). The
geometric matcher predicts an affine transform and then TPS offsets of a 3 x 3 control grid; the
warp applied to the condition's features is the affine warp of the TPS-warped positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deployments.shapes import assert_shape

IDENTITY_AFFINE = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def identity_grid(n: int, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, H, W, 2) grid that reads every pixel from where it is."""
    return affine_grid(IDENTITY_AFFINE.to(device).expand(n, 2, 3), height, width)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """theta (n, 2, 3) maps output (x, y, 1) to input (x, y) -> grid (n, H, W, 2)."""
    assert_shape(theta, (None, 2, 3), "theta")
    return F.affine_grid(theta, [theta.shape[0], 1, height, width], align_corners=False)


def apply_affine(theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """theta (n, 2, 3) applied to points (n, ..., 2) -> (n, ..., 2)."""
    flat = points.reshape(points.shape[0], -1, 2)
    moved = flat @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]
    return moved.reshape(points.shape)


def compose_grids(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The grid of warping by ``inner`` and then by ``outer``: reading the input at outer(inner(p)).

    outer (n, Ho, Wo, 2) is sampled bilinearly at inner's positions (n, H, W, 2); points that fall
    outside outer are extrapolated from its border (padding "border"), so composition with an
    identity leaves a grid unchanged up to float error."""
    assert_shape(outer, (None, None, None, 2), "outer grid")
    assert_shape(inner, (outer.shape[0], None, None, 2), "inner grid")
    sampled = F.grid_sample(outer.permute(0, 3, 1, 2), inner, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.permute(0, 2, 3, 1)


class TpsGridGenerator(nn.Module):
    """Thin-plate-spline grids from offsets of a ``points_per_side`` x ``points_per_side`` control grid.

    The spline f maps output positions to input positions with f(P_i) = P_i + offset_i at the control
    points P_i (evenly spaced in [-1, 1]) and minimal bending elsewhere: f(p) = a0 + a1 x + a2 y +
    sum_i w_i U(|p - P_i|), U(r) = r^2 log r^2. The linear system depends on the control points only,
    so its inverse is computed once; zero offsets give the identity grid.
    """

    def __init__(self, height: int, width: int, points_per_side: int = 3) -> None:
        super().__init__()
        self.height, self.width = height, width  # the output grid's size
        axis = torch.linspace(-1, 1, points_per_side)
        control = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)  # (k, 2) x, y
        k = control.shape[0]
        system = torch.zeros(k + 3, k + 3, dtype=torch.float64)
        system[:k, :k] = self._kernel(control.double(), control.double())
        system[:k, k] = 1
        system[:k, k + 1 :] = control.double()
        system[k, :k] = 1
        system[k + 1 :, :k] = control.double().T
        self.register_buffer("control", control)
        self.register_buffer("inverse", torch.linalg.inv(system).float())
        positions = identity_grid(1, height, width)[0].reshape(-1, 2)  # (H*W, 2)
        basis = torch.cat([self._kernel(positions.double(), control.double()).float(), torch.ones(len(positions), 1), positions], dim=1)
        self.register_buffer("basis", basis)  # (H*W, k + 3): [U(|p - P_i|), 1, x, y]

    @staticmethod
    def _kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        squared = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return squared * torch.log(squared.clamp_min(1e-12))

    @property
    def num_params(self) -> int:
        return self.control.numel()

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        """offsets (n, k, 2) or (n, 2k) of the control points -> grid (n, H, W, 2)."""
        n, k = offsets.shape[0], self.control.shape[0]
        targets = self.control + offsets.reshape(n, k, 2)
        padded = torch.cat([targets, targets.new_zeros(n, 3, 2)], dim=1)  # (n, k + 3, 2): values, then the side conditions
        coefficients = self.inverse @ padded  # (n, k + 3, 2): w_i, then a0, a1, a2
        return (self.basis @ coefficients).reshape(n, self.height, self.width, 2)
