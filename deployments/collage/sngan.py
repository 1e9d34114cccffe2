"""SNGAN-projection ResNet generator with categorical conditional batch norm, in plain PyTorch.

This is the generator of "cGANs with Projection Discriminator" (Miyato & Koyama 2018) as released
in Chainer (pfnet-research/sngan_projection, ``gen_models/resnet.py``), which Neural Collage
(pfnet-research/neural-collage) edits. Module names follow the Chainer link paths, so a Chainer
``.npz`` maps onto this module's state dict key by key (``block2/b1/gammas/W`` ->
``block2.b1.gammas``; see ``deployments/collage/checkpoint.py``):

    l1                       Linear z -> (C0 * bottom_width**2), reshaped to (C0, bw, bw)
    block{2..n+1}            ResBlock: CBN, ReLU, 2x nearest upsample, 3x3 conv, CBN, ReLU, 3x3 conv;
                             shortcut: upsample, 1x1 conv
    b{n+2}                   plain (unconditional) batch norm
    l{n+2}                   3x3 conv to RGB, then tanh

Conditioning: every CBN of a block takes the class either as soft class weights (B, K) (a one-hot
row is an ordinary class label) or, for spatial CBN (sCBN, Neural Collage), as a spatial class-weight
map (B, K, H, W) that is average-pooled to the feature's size; gain and bias are then mixed per
pixel. Chainer's BatchNormalization eps is 2e-5; eval mode uses the running statistics only, so
the generator is deterministic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deployments.collage.conditioning import ClassMixture, CollageGenerator, Condition, condition_batch, mix_by_class, pool_class_map  # noqa: F401  (pool_class_map: re-exported)
from deployments.shapes import assert_shape

CHAINER_BN_EPS = 2e-5

FeatureEdit = Callable[[int, torch.Tensor], torch.Tensor]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class SNGANConfig:
    """Architecture of the generator; the defaults are the paper's ImageNet 128 px model."""

    z_dim: int = 128  # length of z
    n_classes: int = 1000  # number of classes (rows of every CBN's gain/bias tables)
    ch: int = 64  # base channel count; block widths are ch times the multipliers
    bottom_width: int = 4  # side of the first feature map; each block doubles it
    channel_multipliers: tuple[int, ...] = (16, 16, 8, 4, 2, 1)  # widths: l1 output, then each block's output

    def __post_init__(self) -> None:
        _check(self.z_dim >= 1 and self.n_classes >= 1 and self.ch >= 1, f"invalid SNGAN config {self}")
        _check(len(self.channel_multipliers) >= 2, "channel_multipliers needs the l1 width and at least one block")
        object.__setattr__(self, "channel_multipliers", tuple(int(m) for m in self.channel_multipliers))

    @property
    def n_blocks(self) -> int:
        return len(self.channel_multipliers) - 1

    @property
    def resolution(self) -> int:
        return self.bottom_width * 2**self.n_blocks

    @property
    def num_classes(self) -> int:
        return self.n_classes

    @property
    def block_resolutions(self) -> list[int]:
        return [self.bottom_width * 2 ** (i + 1) for i in range(self.n_blocks)]

    @property
    def block_channels(self) -> list[int]:
        return [self.ch * m for m in self.channel_multipliers[1:]]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channel_multipliers"] = list(self.channel_multipliers)
        return d


class CategoricalConditionalBatchNorm(nn.Module):
    """Batch norm whose gain and bias are rows of per-class tables, mixed by class weights.

    num_features: channels C of the input.
    n_classes: K, rows of ``gammas`` (init 1) and ``betas`` (init 0), each (K, C).
    """

    def __init__(self, num_features: int, n_classes: int, eps: float = CHAINER_BN_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.gammas = nn.Parameter(torch.ones(n_classes, num_features))
        self.betas = nn.Parameter(torch.zeros(n_classes, num_features))
        self.register_buffer("avg_mean", torch.zeros(num_features))
        self.register_buffer("avg_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor, condition: Condition) -> torch.Tensor:
        """x (B, C, H, W); condition: class weights (B, K), a spatial map (B, K, h, w) or a ClassMixture."""
        if self.training:  # batch statistics, running averages updated (training only)
            normed = F.batch_norm(x, self.avg_mean, self.avg_var, None, None, True, 0.1, self.eps)
        else:
            normed = (x - self.avg_mean[:, None, None]) * torch.rsqrt(self.avg_var[:, None, None] + self.eps)
        gamma = mix_by_class(condition, lambda v: v @ self.gammas, x.shape[-2:])
        beta = mix_by_class(condition, lambda v: v @ self.betas, x.shape[-2:])
        return normed * gamma + beta


class ResBlock(nn.Module):
    """Upsampling residual block with two CBNs.

    in_channels / out_channels: channels of the input and of the output (the hidden width = out).
    n_classes: rows of the CBN tables.
    """

    def __init__(self, in_channels: int, out_channels: int, n_classes: int) -> None:
        super().__init__()
        self.b1 = CategoricalConditionalBatchNorm(in_channels, n_classes)
        self.c1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.b2 = CategoricalConditionalBatchNorm(out_channels, n_classes)
        self.c2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.c_sc = nn.Conv2d(in_channels, out_channels, 1)  # upsampling always makes the shortcut learnable

    def forward(self, x: torch.Tensor, condition: Condition) -> torch.Tensor:
        h = F.relu(self.b1(x, condition))
        h = self.c1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.c2(F.relu(self.b2(h, condition)))
        return h + self.c_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class SNGANGenerator(CollageGenerator):
    """z (B, z_dim) + class weights (B, K) -> images (B, 3, R, R) in [-1, 1]."""

    def __init__(self, config: SNGANConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.ch * m for m in config.channel_multipliers]
        n = config.n_blocks
        self.l1 = nn.Linear(config.z_dim, widths[0] * config.bottom_width**2)
        for i in range(n):
            self.add_module(f"block{i + 2}", ResBlock(widths[i], widths[i + 1], config.n_classes))
        self.add_module(f"b{n + 2}", nn.BatchNorm2d(widths[-1], eps=CHAINER_BN_EPS))
        self.add_module(f"l{n + 2}", nn.Conv2d(widths[-1], 3, 3, padding=1))

    def blocks(self) -> list[ResBlock]:
        return [getattr(self, f"block{i + 2}") for i in range(self.config.n_blocks)]

    def forward(
        self,
        z: torch.Tensor,
        class_weights: torch.Tensor,
        truncation: float = 1.0,
        class_maps: Sequence[Condition | None] | None = None,
        feature_edit: FeatureEdit | None = None,
    ) -> torch.Tensor:
        """Generate images.

        z: (B, z_dim) latents.
        class_weights: (B, K) soft class vectors (one-hot rows = class labels).
        truncation: unused here (no truncation-dependent statistics); part of the family contract.
        class_maps: per block, None (use class_weights) or a spatial class condition for that
            block's CBNs (sCBN): a map (B, K, H, W) or a ClassMixture, at any size (pooled per layer).
        feature_edit: called as ``feature_edit(i, h)`` on each block's output h; its return value
            continues the forward pass (feature blending, feature capture).
        """
        cfg = self.config
        assert_shape(z, (None, cfg.z_dim), "z")
        batch = z.shape[0]
        assert_shape(class_weights, (batch, cfg.n_classes), "class_weights")
        _check(class_maps is None or len(class_maps) == cfg.n_blocks, f"class_maps needs one entry per block ({cfg.n_blocks})")
        h = self.l1(z).view(batch, -1, cfg.bottom_width, cfg.bottom_width)
        for i, block in enumerate(self.blocks()):
            condition = class_maps[i] if class_maps is not None and class_maps[i] is not None else class_weights
            _check(condition_batch(condition) == batch, f"class map of block {i} is not for a batch of {batch}")
            h = block(h, condition)
            if feature_edit is not None:
                h = feature_edit(i, h)
        n = cfg.n_blocks
        h = F.relu(getattr(self, f"b{n + 2}")(h))
        return torch.tanh(getattr(self, f"l{n + 2}")(h))
