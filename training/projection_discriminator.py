"""Spectrally normalised ResNet projection discriminator (Miyato & Koyama 2018), for training the
SNGAN-projection generator of ``deployments/collage/sngan.py`` (``training.train_collage``).

    D(x, y) = psi(phi(x)) + <embed(y), phi(x)>

phi: an optimised first block (conv, ReLU, conv, 2x average pool; shortcut pool then 1x1 conv),
then residual blocks (ReLU, conv, ReLU, conv, optional 2x average pool; learnable shortcut when
the width or size changes), a ReLU and a global *sum* pool over space. psi: a linear layer to one
logit. The class enters only through the inner product with a per-class embedding (the
projection). Every weight is spectrally normalised (one power iteration per forward pass).
Class labels may be ids (B,) or soft class weights (B, K) (the embedding is then mixed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _sn_conv(cin: int, cout: int, k: int) -> nn.Module:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    nn.init.xavier_uniform_(conv.weight, gain=2**0.5 if k == 3 else 1.0)
    nn.init.zeros_(conv.bias)
    return spectral_norm(conv)


class OptimizedBlock(nn.Module):
    """First block: operates on the image directly (no ReLU before the first conv)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.c1, self.c2, self.c_sc = _sn_conv(cin, cout, 3), _sn_conv(cout, cout, 3), _sn_conv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.c2(F.relu(self.c1(x))), 2)
        return h + self.c_sc(F.avg_pool2d(x, 2))


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        self.c1, self.c2 = _sn_conv(cin, cout, 3), _sn_conv(cout, cout, 3)
        self.c_sc = _sn_conv(cin, cout, 1) if (cin != cout or downsample) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c2(F.relu(self.c1(F.relu(x))))
        sc = x
        if self.c_sc is not None:
            sc = self.c_sc(sc)
        if self.downsample:
            h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)
        return h + sc


class ProjectionDiscriminator(nn.Module):
    """images (B, 3, R, R) + labels (B,) long or (B, K) float -> logits (B,).

    ch: base width; ``channel_multipliers`` give each block's width (the first block is the
    optimised one); a block downsamples unless it is one of the last ``n_keep`` blocks (at 32 px
    with (1, 2, 2, 2) and n_keep=2: 32 -> 16 -> 8, then two blocks at 8x8, as in the SNGAN CIFAR
    discriminator).
    """

    def __init__(self, n_classes: int, ch: int = 64, channel_multipliers: tuple[int, ...] = (2, 2, 2, 2), n_keep: int = 2) -> None:
        super().__init__()
        widths = [ch * m for m in channel_multipliers]
        self.n_classes = n_classes
        self.block1 = OptimizedBlock(3, widths[0])
        blocks = []
        for i in range(1, len(widths)):
            blocks.append(DBlock(widths[i - 1], widths[i], downsample=i < len(widths) - n_keep))
        self.blocks = nn.ModuleList(blocks)
        self.l_out = nn.Linear(widths[-1], 1)
        nn.init.xavier_uniform_(self.l_out.weight)
        self.l_out = spectral_norm(self.l_out)
        self.embed = nn.Embedding(n_classes, widths[-1])
        nn.init.xavier_uniform_(self.embed.weight)
        self.embed = spectral_norm(self.embed)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)
        for block in self.blocks:
            h = block(h)
        h = F.relu(h).sum(dim=(2, 3))  # global sum pooling
        out = self.l_out(h).squeeze(1)
        if labels.dim() == 1:
            e = self.embed(labels)
        else:  # soft class weights
            e = labels @ self.embed.weight
        return out + (e * h).sum(1)
