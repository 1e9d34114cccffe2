"""EdgeConnect generators (Nazeri et al. 2019) in plain PyTorch: edge completion, then image completion.

Both generators share one layout (the official knazeri/edge-connect ``src/networks.py``), and the
module names below reproduce its state-dict keys (``nn.Sequential`` indices included), so the
official ``EdgeModel_gen.pth`` / ``InpaintingModel_gen.pth`` map onto these modules key by key:

    encoder   reflect-pad 3, 7x7 conv (in -> C), IN, ReLU,
              4x4 conv stride 2 (C -> 2C), IN, ReLU, 4x4 conv stride 2 (2C -> 4C), IN, ReLU
    middle    ``residual_blocks`` ResnetBlocks at 4C: reflect-pad 2, 3x3 conv dilation 2, IN, ReLU,
              reflect-pad 1, 3x3 conv, IN; plus the input
    decoder   4x4 transposed conv stride 2 (4C -> 2C), IN, ReLU, 4x4 transposed conv (2C -> C), IN,
              ReLU, reflect-pad 3, 7x7 conv (C -> out)

IN = InstanceNorm2d without affine parameters or running statistics. The official edge generator
wraps every conv but the last in spectral norm (its ResnetBlock convs then have no bias); spectral
norm is a training-time reparametrisation, so these modules hold the effective weights and the
converter folds ``weight_orig / sigma`` into them (``deployments/inpaint/checkpoint.py``).

Inputs and outputs (the official conventions): images in [0, 1]; mask 1 = hole.
    EdgeGenerator:    (gray with the hole filled white, edges outside the hole, mask) (B, 3, H, W)
                      -> edge probability (B, 1, H, W), sigmoid
    InpaintGenerator: (image with the hole filled white, completed edges) (B, 4, H, W)
                      -> image (B, 3, H, W) = (tanh + 1) / 2
H and W must be multiples of 4 (two stride-2 stages).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from deployments.inpaint.sizes import SIZE_MULTIPLE
from deployments.shapes import assert_shape

OFFICIAL_CHANNELS = 64
OFFICIAL_RESIDUAL_BLOCKS = 8


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class EdgeConnectConfig:
    """Architecture of both generators; the defaults are the official models."""

    channels: int = OFFICIAL_CHANNELS  # C: width after the first conv (2C, 4C deeper)
    residual_blocks: int = OFFICIAL_RESIDUAL_BLOCKS  # dilated residual blocks in the middle

    def __post_init__(self) -> None:
        _check(self.channels >= 1 and self.residual_blocks >= 0, f"invalid EdgeConnect config {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _norm_relu(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels, track_running_stats=False), nn.ReLU(True)]


class ResnetBlock(nn.Module):
    """x + (pad, dilated 3x3 conv, IN, ReLU, pad, 3x3 conv, IN)(x).

    dim: channels in and out.
    dilation: of the first conv (2 in EdgeConnect).
    bias: whether the convs have biases (the official edge generator's spectral-norm convs do not).
    """

    def __init__(self, dim: int, dilation: int = 2, bias: bool = True) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            nn.Conv2d(dim, dim, 3, dilation=dilation, bias=bias),
            nn.InstanceNorm2d(dim, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=bias),
            nn.InstanceNorm2d(dim, track_running_stats=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class _EncoderDecoder(nn.Module):
    """The shared layout; subclasses fix in/out channels, residual-conv biases and the output map."""

    in_channels = 0
    out_channels = 0
    residual_bias = True

    def __init__(self, config: EdgeConnectConfig = EdgeConnectConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(self.in_channels, c, 7),
            *_norm_relu(c),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),
            *_norm_relu(2 * c),
            nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1),
            *_norm_relu(4 * c),
        )
        self.middle = nn.Sequential(*[ResnetBlock(4 * c, 2, bias=self.residual_bias) for _ in range(config.residual_blocks)])
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1),
            *_norm_relu(2 * c),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),
            *_norm_relu(c),
            nn.ReflectionPad2d(3),
            nn.Conv2d(c, self.out_channels, 7),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        assert_shape(x, (None, self.in_channels, None, None), f"{type(self).__name__}'s input")
        _check(
            x.shape[-2] % SIZE_MULTIPLE == 0 and x.shape[-1] % SIZE_MULTIPLE == 0,
            f"height and width must be multiples of {SIZE_MULTIPLE}, got {tuple(x.shape[-2:])}",
        )
        return self.decoder(self.middle(self.encoder(x)))


class EdgeGenerator(_EncoderDecoder):
    """(gray_masked, edges_masked, mask) (B, 3, H, W) in [0, 1] -> edge map (B, 1, H, W) in (0, 1)."""

    in_channels, out_channels, residual_bias = 3, 1, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


class InpaintGenerator(_EncoderDecoder):
    """(image_masked, edges) (B, 4, H, W) in [0, 1] -> image (B, 3, H, W) in [0, 1]."""

    in_channels, out_channels, residual_bias = 4, 3, True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(self.logits(x)) + 1) / 2


class EdgeConnect(nn.Module):
    """Both generators; state-dict keys ``edge.*`` and ``inpaint.*`` (the project format)."""

    compile_targets = ("edge", "inpaint")  # the ops call each generator in turn (torch.compile, acceleration.py)

    def __init__(self, config: EdgeConnectConfig = EdgeConnectConfig()) -> None:
        super().__init__()
        self.config = config
        self.edge = EdgeGenerator(config)
        self.inpaint = InpaintGenerator(config)
