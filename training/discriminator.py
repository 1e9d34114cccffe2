"""StyleGAN2 residual discriminator (training only), in the layout of the PyTorch port.

    FromRGB 1x1 conv -> ResBlock (3x3 conv, 3x3 conv with blur + stride-2 downsampling, 1x1
    downsampled skip, sum / sqrt(2)) per resolution down to 4x4 -> minibatch stddev feature ->
    3x3 conv -> flatten -> linear -> linear to one logit per image.

Equalized learning rate everywhere (weights scaled by 1/sqrt(fan_in) at run time), so the same
Adam step size suits every layer. Shapes: images (N, 3, R, R) -> logits (N, 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deployments.style.stylegan2 import BLUR_KERNEL, Blur, EqualLinear, FusedLeakyReLU, StyleGAN2Config


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate; ``downsample`` blurs then strides by 2 (anti-aliased)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, downsample: bool = False, bias: bool = True, activate: bool = True
    ) -> None:
        super().__init__()
        self.blur = None
        if downsample:
            p = (len(BLUR_KERNEL) - 2) + (kernel_size - 1)
            self.blur = Blur(BLUR_KERNEL, pad=((p + 1) // 2, p // 2))
        self.stride = 2 if downsample else 1
        self.padding = 0 if downsample else kernel_size // 2
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        # The activation carries the bias (FusedLeakyReLU), as in the port.
        self.activate = FusedLeakyReLU(out_channels) if activate and bias else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias and not activate else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.blur is not None:
            x = self.blur(x)
        x = F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)
        return self.activate(x) if self.activate is not None else x


class ResBlock(nn.Module):
    """(N, in, H, W) -> (N, out, H/2, W/2): two convs on the main path, a 1x1 skip, averaged in variance."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = EqualConv2d(in_channels, in_channels, 3)
        self.conv2 = EqualConv2d(in_channels, out_channels, 3, downsample=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, downsample=True, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """Residual discriminator with the generator's channel table (``StyleGAN2Config.channels``)."""

    def __init__(self, config: StyleGAN2Config, stddev_group: int = 4) -> None:
        super().__init__()
        channels = config.channels()
        resolution = config.resolution
        self.stddev_group = stddev_group  # images per group of the minibatch-stddev feature
        blocks: list[nn.Module] = [EqualConv2d(3, channels[resolution], 1)]
        res = resolution
        while res > 4:
            blocks.append(ResBlock(channels[res], channels[res // 2]))
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        c4 = channels[4]
        self.final_conv = EqualConv2d(c4 + 1, c4, 3)
        self.final_linear = nn.Sequential(EqualLinear(c4 * 16, c4, activation="fused_lrelu"), EqualLinear(c4, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.blocks(images)
        n, c, h, w = x.shape
        # Minibatch stddev: a feature that tells the critic how varied a group of images is,
        # which penalises a generator that collapses to few modes.
        group = min(n, self.stddev_group)
        while n % group:
            group -= 1
        std = x.view(group, -1, c, h, w).var(0, unbiased=False).add(1e-8).sqrt().mean([1, 2, 3])  # (N/group,)
        std = std.view(-1, 1, 1, 1).repeat(group, 1, h, w)
        x = self.final_conv(torch.cat([x, std], 1))
        return self.final_linear(x.flatten(1))
