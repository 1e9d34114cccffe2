"""Part catalog of a StyleGAN2 generator (Editing in Style, Collins et al. 2020, section 3).

A catalog is found without labels: run the generator on many samples, cluster the activation
vectors that feed one layer (``cluster_layer``) with spherical k-means, and measure, for every
styled layer, how much each channel's (standardised, squared) activation falls inside each
cluster: the contribution matrix M (K, C) of that layer. A cluster is a "part" (eyes, hair, ...)
and M[k] says which channels of a layer draw it, which is what ``local_transfer`` queries.

"Activations of layer l" here are always the *input* of the modulated conv of style layer l, i.e.
the tensor its style coefficients scale channel by channel (for ``conv1`` the learned constant).

Stored form: ``catalog.safetensors`` (centroids + one M per style layer) and ``catalog.json``
(labels, cluster layer, layer table, how it was made). Labels live only in the JSON, so naming
clusters never changes the tensors or their sha256.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import safetensors.torch
import torch

from deployments.style import editing
from deployments.style.stylegan2 import Generator, StyleLayer
from schemas.style import clusters_of

CENTROIDS_KEY = "centroids"
CONTRIBUTION_PREFIX = "contribution."
LABEL_RE = r"^[a-z][a-z0-9_\-]{0,31}$"

# Colour of cluster k in part maps (a qualitative palette; cycles past 20 clusters).
PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
        [220, 190, 255],
        [170, 110, 40],
        [255, 250, 200],
        [128, 0, 0],
        [170, 255, 195],
        [128, 128, 0],
        [255, 215, 180],
        [0, 0, 128],
        [128, 128, 128],
    ],
    dtype=np.uint8,
)


@dataclasses.dataclass
class Catalog:
    cluster_layer: str  # style layer whose input activations were clustered, e.g. "convs.3"
    centroids: torch.Tensor  # (K, C_cluster) unit vectors of spherical k-means
    contributions: dict[str, torch.Tensor]  # style layer name -> M (K, C_layer), columns sum to 1
    labels: list[str]  # one name per cluster; several clusters may share a name
    info: dict[str, Any]  # how it was made: n_samples, seed, truncation, iterations

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def clusters_of(self, label: str) -> list[int]:
        """Cluster indices named ``label`` (a label may also be written ``cluster_<k>``)."""
        return clusters_of(self.labels, label)

    def to_bytes(self) -> bytes:
        tensors = {CENTROIDS_KEY: self.centroids.float().contiguous()}
        tensors.update({CONTRIBUTION_PREFIX + name: m.float().contiguous() for name, m in self.contributions.items()})
        return safetensors.torch.save(tensors)

    def meta(self, layers: Sequence[StyleLayer]) -> dict[str, Any]:
        """catalog.json content (without the sha256 the registry adds)."""
        table = [
            {"name": layer.name, "channels": layer.channels, "resolution": layer.resolution, "to_rgb": layer.to_rgb}
            for layer in layers
            if layer.name in self.contributions
        ]
        return {"k": self.k, "labels": list(self.labels), "cluster_layer": self.cluster_layer, "layers": table, **self.info}

    @classmethod
    def from_bytes(cls, data: bytes, meta: dict[str, Any]) -> "Catalog":
        tensors = safetensors.torch.load(data)
        contributions = {key[len(CONTRIBUTION_PREFIX) :]: value for key, value in tensors.items() if key.startswith(CONTRIBUTION_PREFIX)}
        centroids = tensors[CENTROIDS_KEY]
        labels = list(meta["labels"])
        if len(labels) != centroids.shape[0]:
            raise ValueError(f"catalog has {centroids.shape[0]} clusters but {len(labels)} labels")
        info = {key: meta[key] for key in ("n_samples", "seed", "truncation", "iterations") if key in meta}
        return cls(meta["cluster_layer"], centroids, contributions, labels, info)


def default_cluster_layer(generator: Generator) -> str:
    """The plain (non-upsampling) styled conv at half the output resolution: fine enough for
    eyes and mouth, coarse enough to be semantic (the paper clusters at 32 px of 1024)."""
    target = max(8, generator.resolution // 2)
    for layer in generator.style_layers:
        if not layer.to_rgb and layer.resolution == target and layer.name != "conv1" and int(layer.name.split(".")[1]) % 2:
            return layer.name
    raise ValueError(f"no plain styled conv at {target} px in this generator")


def style_layer_inputs(generator: Generator, styles: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Image (N, 3, R, R) and the input activations of every style layer (order of ``style_layers``)."""
    image, features = generator.synthesis_from_styles(styles, noise_mode="const", return_features=True)
    # features: [conv1 out, convs.0 out, convs.1 out, ...]; the input of convs.j is the output of
    # convs.(j-1) (conv1 for j = 0), and to_rgb at a resolution reads that resolution's last conv.
    inputs: list[torch.Tensor] = []
    for layer in generator.style_layers:
        if layer.name == "conv1":
            inputs.append(generator.input(styles[0].shape[0]))
        elif layer.name == "to_rgb1":
            inputs.append(features[0])
        elif layer.to_rgb:
            inputs.append(features[2 * int(layer.name.split(".")[1]) + 2])
        else:
            inputs.append(features[int(layer.name.split(".")[1])])
    return image, inputs


def _layer_index(generator: Generator, name: str) -> int:
    names = [layer.name for layer in generator.style_layers]
    if name not in names:
        raise ValueError(f"unknown style layer {name!r}; layers are {names}")
    return names.index(name)


@torch.inference_mode()
def build_catalog(
    generator: Generator,
    *,
    k: int,
    n_samples: int,
    seed: int = 0,
    cluster_layer: str | None = None,
    truncation: float = 1.0,
    mean_w: torch.Tensor | None = None,
    iterations: int = 50,
    batch_size: int = 64,
) -> Catalog:
    """Cluster ``cluster_layer``'s input activations over ``n_samples`` seeded samples into ``k`` parts
    and compute every style layer's contribution matrix. Deterministic given the arguments."""
    if not 2 <= k <= 64:
        raise ValueError(f"k must be in [2, 64], got {k}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    cluster_layer = cluster_layer or default_cluster_layer(generator)
    cluster_index = _layer_index(generator, cluster_layer)
    z = torch.randn(n_samples, generator.style_dim, generator=torch.Generator().manual_seed(seed))
    per_layer: list[list[torch.Tensor]] = [[] for _ in generator.style_layers]
    for start in range(0, n_samples, batch_size):
        w = generator.mapping(z[start : start + batch_size].to(generator.device))
        w = generator.truncate(w, truncation, mean_w)
        styles = generator.styles_from_ws(generator.broadcast_w(w))
        _, inputs = style_layer_inputs(generator, styles)
        for i, a in enumerate(inputs):
            per_layer[i].append(a.float().cpu())
    activations = [torch.cat(chunks) for chunks in per_layer]

    a = activations[cluster_index]  # (N, C, h, w)
    vectors = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])
    centroids, labels = editing.spherical_kmeans(vectors, k, iterations=iterations, seed=seed)
    label_map = labels.view(a.shape[0], a.shape[2], a.shape[3])
    contributions = {}
    for layer, act in zip(generator.style_layers, activations):
        membership = editing.membership_from_labels(label_map, k, tuple(act.shape[-2:]))
        contributions[layer.name] = editing.contribution_matrix(act, membership)
    info = {"n_samples": n_samples, "seed": seed, "truncation": truncation, "iterations": iterations}
    return Catalog(cluster_layer, centroids, contributions, [f"cluster_{i}" for i in range(k)], info)


def cluster_maps(generator: Generator, catalog: Catalog, styles: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(image (N, 3, R, R), per-pixel cluster index (N, h, w) at the cluster layer's resolution)."""
    image, inputs = style_layer_inputs(generator, styles)
    a = inputs[_layer_index(generator, catalog.cluster_layer)].float()
    n, c, h, w = a.shape
    labels = editing.assign_clusters(a.permute(0, 2, 3, 1).reshape(-1, c), catalog.centroids.to(a.device))
    return image, labels.view(n, h, w)


def upsample_labels(labels: torch.Tensor, size: int) -> torch.Tensor:
    """(N, h, w) long -> (N, size, size) long by nearest neighbour."""
    return torch.nn.functional.interpolate(labels[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()


def colorize(labels: torch.Tensor) -> np.ndarray:
    """(N, H, W) cluster indices -> uint8 (N, H, W, 3) with the fixed palette."""
    return PALETTE[labels.cpu().numpy() % len(PALETTE)]


def mask_part_weights(labels: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Part weights (N, K) of user masks: the share of each mask's area in each cluster.

    labels: (N, h, w) cluster maps of the target images; mask: (N, H, W) bool, any H = W that is a
    multiple of h (the mask is area-averaged down to the cluster map's grid, so a thin stroke still
    counts). Rows sum to 1; an empty mask raises ValueError.
    """
    n, h, w = labels.shape
    coverage = torch.nn.functional.adaptive_avg_pool2d(mask[:, None].float(), (h, w))[:, 0]  # (N, h, w)
    weights = torch.zeros(n, k, dtype=torch.float32, device=labels.device)
    weights.scatter_add_(1, labels.reshape(n, -1), coverage.reshape(n, -1).to(labels.device))
    total = weights.sum(1, keepdim=True)
    if bool((total <= 0).any()):
        raise ValueError("the mask is empty: paint the region to transfer in white")
    return weights / total


def save_meta(meta: dict[str, Any]) -> bytes:
    return (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
