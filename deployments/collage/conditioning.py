"""Class conditioning shared by the collage generators: class vectors, spatial class-weight maps.

A conditional batch norm gets its per-channel gain and bias from the class. The class arrives in
one of three forms:

* class weights (B, K): one soft class vector per sample (a one-hot row is an ordinary label);
* a dense spatial class-weight map (B, K, H, W): Neural Collage's W(h, w, c);
* a :class:`ClassMixture`: the same map stored as J weighted components per sample, each with its
  own class vector. A collage mixes a handful of classes, so J is small; with K = 1000 classes the
  dense map at 128 px would be 65 MB per sample.

Gain and bias are linear in the class vector, so mixing classes per pixel equals mixing the gains
and biases per pixel: that is how sCBN is computed here.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Union

import torch
import torch.nn.functional as F
from torch import nn


class ClassMixture(NamedTuple):
    """Spatial class weights as J components: map(b, :, h, w) = sum_j weights[b, j, h, w] * classes[b, j, :]."""

    weights: torch.Tensor  # (B, J, H, W), usually summing to 1 over J at every pixel
    classes: torch.Tensor  # (B, J, K) class vector of each component

    def dense(self) -> torch.Tensor:
        """The (B, K, H, W) spatial class-weight map."""
        return torch.einsum("bjhw,bjk->bkhw", self.weights, self.classes)


Condition = Union[torch.Tensor, ClassMixture]


def pool_class_map(class_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Spatial weights (B, J, H, W) at a layer's size (h, w): area average when shrinking
    (weights that sum to 1 per pixel still do), nearest when growing."""
    size = (int(size[0]), int(size[1]))
    if tuple(class_map.shape[-2:]) == size:
        return class_map
    if class_map.shape[-2] >= size[0] and class_map.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(class_map, size)
    return F.interpolate(class_map, size=size, mode="nearest")


def condition_batch(condition: Condition) -> int:
    return condition.weights.shape[0] if isinstance(condition, ClassMixture) else condition.shape[0]


def mix_by_class(condition: Condition, rows_of: Callable[[torch.Tensor], torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Per-channel values of the condition, broadcastable against features (B, C, h, w).

    rows_of: maps class vectors (..., K) to per-channel values (..., C) and is linear in them
        (a gain table, an embedding followed by a linear layer, ...).
    size: (h, w) of the features; spatial conditions are pooled to it.
    Returns (B, C, 1, 1) for class weights, (B, C, h, w) for a spatial condition.
    """
    if isinstance(condition, ClassMixture):
        per_component = rows_of(condition.classes)  # (B, J, C)
        return torch.einsum("bjhw,bjc->bchw", pool_class_map(condition.weights, size), per_component)
    if condition.dim() == 2:
        return rows_of(condition)[:, :, None, None]
    if condition.dim() == 4:
        pooled = pool_class_map(condition, size)
        return rows_of(pooled.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    raise ValueError(f"a class condition is (B, K), (B, K, H, W) or a ClassMixture, got shape {tuple(condition.shape)}")


class CollageGenerator(nn.Module):
    """The collage family's generator contract (``deployments/collage/ops.py`` relies on it).

    Subclasses set ``self.config``, whose fields and properties supply the figures, and implement
    ``forward(z, class_weights, truncation=1.0, class_maps=None, feature_edit=None)``.
    """

    config: Any

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def n_blocks(self) -> int:
        """Blocks that layers in the API name (class maps and feature edits act per block)."""
        return self.config.n_blocks

    @property
    def block_resolutions(self) -> list[int]:
        """Output side of each block, in block order."""
        return self.config.block_resolutions

    @property
    def block_channels(self) -> list[int]:
        """Output channels of each block, in block order."""
        return self.config.block_channels
