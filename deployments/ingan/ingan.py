"""InGAN (Shocher et al., ICCV 2019): an image-specific generator that retargets its one training image.

The generator reads the image itself, not a latent: entry conv at the input's size, a geometric step
that resamples the entry features onto the requested output grid (a plain resize, or a homography
warp), then an encoder-decoder (downscaling blocks, residual bottleneck, upscaling blocks with skip
connections from the downscaling path), tanh. So one forward pass gives the image at any output
size whose sides are multiples of ``2 ** n_downscales``.

The discriminator is a stack of fully convolutional patch discriminators, one per scale of a pyramid
(factor 1.4 between scales, as the paper): each judges the distribution of patches at its scale,
so an output of any size and aspect can be compared with the one real image.

Plain PyTorch modules; layouts follow the paper's code (assafshocher/InGAN, ``networks.py``):
BatchNorm + LeakyReLU(0.2) conv blocks, strided by max-pooling, nearest upsampling, 1x1-3x3-1x1
bottleneck residual blocks. The discriminator's convs are spectrally normalised as in the paper's
code; the generator's are not (its checkpoint stays plain weights; the paper's G has it too).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deployments.shapes import assert_shape


@dataclasses.dataclass(frozen=True)
class InGANConfig:
    base_channels: int = 64  # channels of the entry block; doubled by each downscaling block
    n_downscales: int = 3  # downscaling (and upscaling) blocks: output sides snap to multiples of 2**n_downscales
    n_resblocks: int = 6  # bottleneck residual blocks at the coarsest scale

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def size_multiple(self) -> int:
        return 2**self.n_downscales


def conv_block(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Reflection pad, conv, BatchNorm, LeakyReLU(0.2): keeps the spatial size."""
    return nn.Sequential(
        nn.ReflectionPad2d(kernel_size // 2),
        nn.Conv2d(in_channels, out_channels, kernel_size),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.2),
    )


class ResidualBlock(nn.Module):
    """x + (1x1 down to C/4, 3x3, 1x1 back to C), each conv batch-normalised; (B, C, H, W) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // 4)
        self.body = nn.Sequential(
            nn.Conv2d(channels, inner, 1),
            nn.BatchNorm2d(inner),
            nn.LeakyReLU(0.2),
            nn.ReflectionPad2d(1),
            nn.Conv2d(inner, inner, 3),
            nn.BatchNorm2d(inner),
            nn.LeakyReLU(0.2),
            nn.Conv2d(inner, channels, 1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def homography_grid(homography: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sampling grid (B, h, w, 2) for ``F.grid_sample`` (align_corners=False) of an output of ``size``.

    ``homography`` (B, 3, 3) maps output coordinates to input coordinates, both normalised to
    [-1, 1] (x right, y down, pixel centres as grid_sample places them). The identity gives exactly
    the grid of a bilinear resize, so the plain resize path is this with the identity.
    """
    assert_shape(homography, (None, 3, 3), "homography")
    height, width = size
    ys = (torch.arange(height, dtype=homography.dtype, device=homography.device) * 2 + 1) / height - 1
    xs = (torch.arange(width, dtype=homography.dtype, device=homography.device) * 2 + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1).reshape(1, -1, 3)  # (1, h*w, 3)
    mapped = points @ homography.transpose(1, 2)  # (B, h*w, 3)
    grid = mapped[..., :2] / mapped[..., 2:3]
    return grid.reshape(homography.shape[0], height, width, 2)


class GeometricTransform(nn.Module):
    """Entry features (B, C, H, W) -> (B, C, h, w) resampled on the output grid: bilinear, reflecting
    at the borders where a homography reaches outside the input."""

    def forward(self, features: torch.Tensor, size: tuple[int, int], homography: torch.Tensor | None = None) -> torch.Tensor:
        batch = features.shape[0]
        if homography is None:
            homography = torch.eye(3, dtype=features.dtype, device=features.device).expand(batch, 3, 3)
        grid = homography_grid(homography.to(features.dtype), size)
        return F.grid_sample(features, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class Generator(nn.Module):
    """G(x; size, homography): (B, 3, H, W) in [-1, 1] -> (B, 3, h, w) in [-1, 1].

    ``h`` and ``w`` must be multiples of ``config.size_multiple`` (the encoder halves them
    ``n_downscales`` times and the decoder's skips must line up); the input may have any size.
    """

    def __init__(self, config: InGANConfig) -> None:
        super().__init__()
        self.config = config
        c, n = config.base_channels, config.n_downscales
        self.entry = conv_block(3, c, 7)
        self.geometric = GeometricTransform()
        self.down = nn.ModuleList(conv_block(c * 2**i, c * 2 ** (i + 1), 3) for i in range(n))
        self.bottleneck = nn.Sequential(*(ResidualBlock(c * 2**n) for _ in range(config.n_resblocks)))
        self.up = nn.ModuleList(conv_block(c * 2 ** (i + 1), c * 2**i, 3) for i in reversed(range(n)))
        self.exit = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(c, 3, 7), nn.Tanh())

    def forward(self, image: torch.Tensor, size: tuple[int, int], homography: torch.Tensor | None = None) -> torch.Tensor:
        assert_shape(image, (None, 3, None, None), "image")
        height, width = int(size[0]), int(size[1])
        multiple = self.config.size_multiple
        assert height > 0 and width > 0 and height % multiple == 0 and width % multiple == 0, (
            f"output size {height}x{width} must be positive multiples of {multiple}"
        )
        features = self.geometric(self.entry(image), (height, width), homography)
        skips = []
        for block in self.down:
            skips.append(features)
            features = F.max_pool2d(block(features), 2)
        features = self.bottleneck(features)
        for block, skip in zip(self.up, reversed(skips)):
            features = block(F.interpolate(features, scale_factor=2.0, mode="nearest")) + skip  # U-Net skip, same scale and width
        return self.exit(features)


class PatchDiscriminator(nn.Module):
    """One scale: (B, 3, H, W) -> (B, 1, H', W') map in [0, 1], each value judging one patch
    (receptive field 9 px before the stride, 13 px in all)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm  # as the paper's D: keeps it from saturating the sigmoid early
        self.net = nn.Sequential(
            sn(nn.Conv2d(3, channels, 3)),
            nn.BatchNorm2d(channels),
            nn.LeakyReLU(0.2),
            sn(nn.Conv2d(channels, 2 * channels, 3, stride=2)),
            nn.BatchNorm2d(2 * channels),
            nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * channels, 2 * channels, 3)),
            nn.BatchNorm2d(2 * channels),
            nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * channels, 1, 1)),
            nn.Sigmoid(),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


class MultiScaleDiscriminator(nn.Module):
    """Patch discriminators on an image pyramid: scale k sees the image downscaled by ``factor ** k``.

    The number of scales follows the real image: as many as keep its shorter side at least
    ``min_size`` (a coarser scale would only ever see generated images). ``forward`` returns one map
    per scale the image fills (a smaller generated image fills fewer).
    """

    def __init__(
        self, image_size: tuple[int, int], channels: int = 64, factor: float = 1.4, min_size: int = 16, max_scales: int = 8
    ) -> None:
        super().__init__()
        self.factor = factor  # downscaling between neighbouring scales (the paper: 1.4)
        self.min_size = min_size  # shorter side of the smallest image a scale sees
        shorter = min(image_size)
        assert shorter >= min_size, f"image side {shorter} is below the discriminator's smallest input {min_size}"
        n_scales = 1 + int(math.floor(math.log(shorter / min_size) / math.log(factor)))
        self.nets = nn.ModuleList(PatchDiscriminator(channels) for _ in range(min(n_scales, max_scales)))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        assert min(image.shape[2:]) >= self.min_size, f"image {tuple(image.shape[2:])} is below the smallest input {self.min_size}"
        maps = []
        for k, net in enumerate(self.nets):
            if k and min(image.shape[2:]) / self.factor**k < self.min_size:
                break  # a smaller (generated) image fills fewer scales
            scaled = (
                image
                if k == 0
                else F.interpolate(image, scale_factor=self.factor**-k, mode="bilinear", align_corners=False, recompute_scale_factor=True)
            )
            maps.append(net(scaled))
        return maps
