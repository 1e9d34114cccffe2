"""Soft-Gated Warping-GAN (Dong et al., NeurIPS 2018, arXiv 1810.11610) in plain PyTorch.

Stage I, :class:`PoseGuidedParser`: condition image + condition parsing + target pose heatmaps ->
target parsing logits (a ResNet generator). Stage II: :class:`GeometricMatcher` aligns the condition
parsing with the synthesised target parsing (an affine transform, then TPS offsets of a 3 x 3 control
grid, both regressed from a feature correlation), and :class:`Renderer` draws the target image from
the target pose and parsing, its condition features warped by that grid through a
:class:`SoftGatedWarpingBlock`. Images are in [-1, 1]; parsings are one-hot / softmax (n, 20, H, W);
poses are 18 heatmaps (deployments/warp/pose.py).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from deployments.warp.geometry import IDENTITY_AFFINE, TpsGridGenerator, affine_grid, compose_grids
from deployments.warp.pose import NUM_KEYPOINTS

NUM_PARSING_CLASSES = 20  # LIP


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class ResidualBlock(nn.Module):
    """x + conv-norm-relu-conv-norm(x), reflection padded: the ResNet generator's middle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _down(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), _norm(out_channels), nn.ReLU(inplace=True))


def _up(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        _norm(out_channels),
        nn.ReLU(inplace=True),
    )


class ResnetGenerator(nn.Module):
    """7x7 conv, ``downsamplings`` stride-2 convs, ``blocks`` residual blocks, as many upsamplings, 7x7 conv.

    Input (n, in_channels, H, W) -> output (n, out_channels, H, W), H and W multiples of 2^downsamplings.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int = 64, blocks: int = 9, downsamplings: int = 2) -> None:
        super().__init__()
        self.downsamplings = downsamplings  # the input side must divide by 2 ** downsamplings
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, channels, 7), _norm(channels), nn.ReLU(inplace=True)]
        width = channels
        for _ in range(downsamplings):
            layers.append(_down(width, width * 2))
            width *= 2
        layers += [ResidualBlock(width) for _ in range(blocks)]
        for _ in range(downsamplings):
            layers.append(_up(width, width // 2))
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2**self.downsamplings
        assert x.shape[-2] % factor == 0 and x.shape[-1] % factor == 0, f"H and W must divide by {factor}, got {tuple(x.shape[-2:])}"
        return self.net(x)


class PoseGuidedParser(nn.Module):
    """Stage I: (condition image, condition parsing, target pose) -> target parsing logits (n, 20, H, W)."""

    def __init__(self, channels: int = 64, blocks: int = 9) -> None:
        super().__init__()
        self.generator = ResnetGenerator(3 + NUM_PARSING_CLASSES + NUM_KEYPOINTS, NUM_PARSING_CLASSES, channels, blocks)

    def forward(self, image: torch.Tensor, parsing: torch.Tensor, target_pose: torch.Tensor) -> torch.Tensor:
        return self.generator(torch.cat([image, parsing, target_pose], dim=1))


class FeatureExtractor(nn.Module):
    """Parsing (n, 20, H, W) -> L2-normalised features (n, C, H/16, W/16) for the correlation."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        widths = [NUM_PARSING_CLASSES, channels, channels * 2, channels * 4, channels * 4]
        self.net = nn.Sequential(*[_down(a, b) for a, b in zip(widths, widths[1:])])

    def forward(self, parsing: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(parsing), dim=1)


class GeometricMatcher(nn.Module):
    """Siamese features of two parsings -> their correlation -> ``num_params`` transform parameters.

    The last layer starts at zero weight with ``initial`` as its bias, so an untrained matcher
    predicts that transform (the identity affine, or zero TPS offsets)."""

    def __init__(self, height: int, width: int, num_params: int, initial: torch.Tensor, channels: int = 32) -> None:
        super().__init__()
        self.features = FeatureExtractor(channels)  # shared by both inputs: the siamese part
        cells = (height // 16) * (width // 16)
        self.regressor = nn.Sequential(
            nn.Conv2d(cells, 64, 3, padding=1),
            _norm(64),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 32, 3, padding=1),
            _norm(32),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        self.head = nn.Linear(32 * cells, num_params)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(initial.reshape(-1))

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        a, b = self.features(source), self.features(target)
        n, c, h, w = a.shape
        # correlation[n, i, y, x] = <a at cell i, b at (y, x)>: for every target cell, its match everywhere in the source
        correlation = torch.einsum("nci,ncj->nij", a.reshape(n, c, h * w), b.reshape(n, c, h * w)).reshape(n, h * w, h, w)
        return self.head(self.regressor(F.relu(correlation)))


class ParsingAligner(nn.Module):
    """The two matchers: affine, then TPS between the affine-warped condition parsing and the target
    parsing. forward -> the combined grid (n, H, W, 2) that reads condition pixels for the target."""

    def __init__(self, height: int, width: int, channels: int = 32) -> None:
        super().__init__()
        self.height, self.width = height, width
        self.tps = TpsGridGenerator(height, width)
        self.affine = GeometricMatcher(height, width, 6, IDENTITY_AFFINE, channels)
        self.thin_plate = GeometricMatcher(height, width, self.tps.num_params, torch.zeros(self.tps.num_params), channels)

    def forward(self, condition_parsing: torch.Tensor, target_parsing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (grid, affine-only grid, affine-warped condition parsing)."""
        theta = self.affine(condition_parsing, target_parsing).reshape(-1, 2, 3)
        affine = affine_grid(theta, self.height, self.width)
        aligned = F.grid_sample(condition_parsing, affine, align_corners=False)
        tps = self.tps(self.thin_plate(aligned, target_parsing))
        return compose_grids(affine, tps), affine, aligned


class SoftGatedWarpingBlock(nn.Module):
    """features + gate * (warp(features) - features).

    The gate (n, 1, h, w) in [0, 1) comes from the pose difference (target minus condition heatmaps)
    through bias-free convolutions and tanh(relu(.)): no pose change gives exactly zero, so the
    features pass unwarped; the larger the change, the more of the warped features replace them.
    A 1x1 conv refines the warped features before the gate mixes them in."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.Conv2d(NUM_KEYPOINTS, 32, 3, padding=1, bias=False), nn.ReLU(inplace=True), nn.Conv2d(32, 1, 3, padding=1, bias=False)
        )
        self.refine = nn.Conv2d(channels, channels, 1)
        nn.init.dirac_(self.refine.weight)
        nn.init.zeros_(self.refine.bias)

    def forward(self, features: torch.Tensor, grid: torch.Tensor, pose_difference: torch.Tensor) -> torch.Tensor:
        h, w = features.shape[-2:]
        small_grid = F.interpolate(grid.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
        warped = self.refine(F.grid_sample(features, small_grid, align_corners=False))
        gate = torch.tanh(F.relu(self.gate(F.interpolate(pose_difference, size=(h, w), mode="area"))))
        return features + gate * (warped - features)


class Renderer(nn.Module):
    """Stage II: (condition image, condition parsing, target pose, target parsing, grid) -> target image.

    An appearance encoder reads the condition image and parsing; a target encoder the target pose
    and parsing. The appearance features go through the soft-gated warping block (``warping=False``
    skips it: the ablation), are concatenated with the target features, and a residual decoder
    draws the image (tanh)."""

    def __init__(self, channels: int = 32, blocks: int = 4, warping: bool = True) -> None:
        super().__init__()
        self.warping = warping  # False: the ablation without the warping block, trained the same way
        self.appearance = nn.Sequential(
            nn.Conv2d(3 + NUM_PARSING_CLASSES, channels, 7, padding=3),
            _norm(channels),
            nn.ReLU(inplace=True),
            _down(channels, channels * 2),
            _down(channels * 2, channels * 4),
        )
        self.target = nn.Sequential(
            nn.Conv2d(NUM_KEYPOINTS + NUM_PARSING_CLASSES, channels, 7, padding=3),
            _norm(channels),
            nn.ReLU(inplace=True),
            _down(channels, channels * 2),
            _down(channels * 2, channels * 4),
        )
        self.warp = SoftGatedWarpingBlock(channels * 4) if warping else None
        self.fuse = nn.Conv2d(channels * 8, channels * 4, 1)
        self.decoder = nn.Sequential(
            *[ResidualBlock(channels * 4) for _ in range(blocks)],
            _up(channels * 4, channels * 2),
            _up(channels * 2, channels),
            nn.Conv2d(channels, 3, 7, padding=3),
            nn.Tanh(),
        )

    def forward(
        self,
        image: torch.Tensor,
        parsing: torch.Tensor,
        target_pose: torch.Tensor,
        target_parsing: torch.Tensor,
        grid: torch.Tensor,
        pose_difference: torch.Tensor,
    ) -> torch.Tensor:
        assert image.shape[-2] % 4 == 0 and image.shape[-1] % 4 == 0, f"H and W must divide by 4, got {tuple(image.shape[-2:])}"
        appearance = self.appearance(torch.cat([image, parsing], dim=1))
        if self.warp is not None:
            appearance = self.warp(appearance, grid, pose_difference)
        target = self.target(torch.cat([target_pose, target_parsing], dim=1))
        return self.decoder(self.fuse(torch.cat([appearance, target], dim=1)))


@dataclasses.dataclass(frozen=True)
class WarpConfig:
    height: int = 128  # image height (multiple of 16)
    width: int = 64  # image width (multiple of 16)
    parser_channels: int = 32  # Stage I ResNet generator width (the paper: 64)
    parser_blocks: int = 9  # Stage I residual blocks
    matcher_channels: int = 32  # geometric matcher feature width
    renderer_channels: int = 32  # Stage II encoder/decoder width
    renderer_blocks: int = 4  # Stage II decoder residual blocks
    warping: bool = True  # the soft-gated warping block (False: the ablation)


class WarpingGAN(nn.Module):
    """Parser + aligner + renderer: pose transfer in one call (the generator of the `warp` family)."""

    def __init__(self, config: WarpConfig = WarpConfig()) -> None:
        super().__init__()
        assert config.height % 16 == 0 and config.width % 16 == 0, f"image sides must divide by 16, got {config.height}x{config.width}"
        self.config = config
        self.parser = PoseGuidedParser(config.parser_channels, config.parser_blocks)
        self.aligner = ParsingAligner(config.height, config.width, config.matcher_channels)
        self.renderer = Renderer(config.renderer_channels, config.renderer_blocks, config.warping)

    def forward(self, image: torch.Tensor, parsing: torch.Tensor, pose: torch.Tensor, target_pose: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (n, 3, H, W) in [-1, 1], parsing (n, 20, H, W) one-hot, poses (n, 18, H, W) heatmaps ->
        {"parsing_logits", "target_parsing" (softmax), "grid", "image"}."""
        logits = self.parser(image, parsing, target_pose)
        target_parsing = logits.softmax(dim=1)
        grid, _, _ = self.aligner(parsing, target_parsing)
        rendered = self.renderer(image, parsing, target_pose, target_parsing, grid, target_pose - pose)
        return {"parsing_logits": logits, "target_parsing": target_parsing, "grid": grid, "image": rendered}
