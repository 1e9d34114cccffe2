"""Disentangled Person Image Generation (Ma et al., CVPR 2018, arXiv 1712.02621) in plain PyTorch.

Stage I, multi-branch reconstruction: a person image is split into three embeddings,

- foreground: :class:`ForegroundEncoder` reads the image inside the coarse pose mask, crops 7 body
  ROIs (deployments/person/body.py) out of its feature maps and encodes each with one shared
  :class:`RoiEncoder` -> 7 x ``roi_dim``;
- background: :class:`BackgroundEncoder` reads the image outside the pose mask -> ``background_dim``;
- pose: the 18 keypoints with visibility as a 54-dim vector through a fully connected
  :class:`PoseAutoencoder` -> ``pose_dim`` (and back to keypoints);

and :class:`UNetDecoder` draws the image from them: each ROI's embedding painted into its box of the
target pose, the background embedding everywhere, the pose as 18 heatmaps and the coarse mask.

Stage II: per factor a :class:`Mapping` Φ from Gaussian noise to that factor's embedding space,
trained adversarially against the encoders' embeddings (training/train_person.py), so new
foregrounds, backgrounds and poses can be sampled and decoded.

Images are in [-1, 1], (n, 3, H, W). There is no normalisation layer: the background and the clothes
are carried by spatially constant embedding channels, which instance or group norm would erase.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from deployments.person.body import (
    NUM_KEYPOINTS,
    NUM_ROIS,
    POSE_VECTOR_DIM,
    crop_rois,
    keypoints_from_vector,
    pose_mask,
    pose_vector,
    roi_boxes,
    roi_masks,
)
from deployments.shapes import assert_shape
from deployments.warp.pose import heatmap_sigma, pose_heatmaps

FACTORS = ("foreground", "background", "pose")


@dataclasses.dataclass(frozen=True)
class PersonConfig:
    height: int = 64  # image height in px
    width: int = 32  # image width in px (both multiples of 2 ** unet_depth and of 16)
    channels: int = 32  # base width of the encoders' and the U-Net's convolutions
    roi_size: int = 8  # side of the square each body ROI's features are resampled to
    roi_dim: int = 32  # embedding size of one body ROI; the foreground embedding is 7 x roi_dim
    background_dim: int = 128  # background embedding size
    pose_dim: int = 32  # pose embedding size (the 54-dim keypoint vector's code)
    pose_hidden: int = 128  # width of the pose autoencoder's hidden layers
    unet_depth: int = 3  # halvings of the decoder U-Net
    mapping_hidden: int = 256  # width of the Stage II mapping MLPs
    mapping_layers: int = 3  # hidden layers of each mapping

    @property
    def foreground_dim(self) -> int:
        return NUM_ROIS * self.roi_dim

    def embedding_dim(self, factor: str) -> int:
        return {"foreground": self.foreground_dim, "background": self.background_dim, "pose": self.pose_dim}[factor]


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 (stride 1) or 4x4 (stride 2) convolution + LeakyReLU."""
    kernel = 3 if stride == 1 else 4
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride, padding=1), nn.LeakyReLU(0.2, inplace=True))


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with LeakyReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


@dataclasses.dataclass
class Embeddings:
    """The three factors of a batch of people, each (n, dim)."""

    foreground: torch.Tensor  # (n, 7 * roi_dim)
    background: torch.Tensor  # (n, background_dim)
    pose: torch.Tensor  # (n, pose_dim)

    def get(self, factor: str) -> torch.Tensor:
        return getattr(self, factor)

    def replace(self, **factors: torch.Tensor) -> "Embeddings":
        return dataclasses.replace(self, **factors)


class RoiEncoder(nn.Module):
    """One body ROI's features (m, C, roi_size, roi_size) -> (m, roi_dim); shared by all seven ROIs."""

    def __init__(self, in_channels: int, channels: int, roi_size: int, roi_dim: int) -> None:
        super().__init__()
        assert roi_size % 4 == 0, "roi_size must be a multiple of 4"
        self.convs = nn.Sequential(_conv(in_channels, channels, 2), _conv(channels, channels * 2, 2))
        self.fc = nn.Linear(channels * 2 * (roi_size // 4) ** 2, roi_dim)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(crops).flatten(1))


class ForegroundEncoder(nn.Module):
    """(image, pose mask, ROI boxes) -> foreground embedding (n, 7 * roi_dim); absent ROIs encode as zeros."""

    def __init__(self, config: PersonConfig) -> None:
        super().__init__()
        c = config.channels
        self.config = config
        # Features at half resolution: small limbs keep a few cells each.
        self.features = nn.Sequential(_conv(3, c), _conv(c, 2 * c, 2), _conv(2 * c, 2 * c))
        self.roi_encoder = RoiEncoder(2 * c, 2 * c, config.roi_size, config.roi_dim)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, boxes: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        n = image.shape[0]
        features = self.features(image * mask)
        crops = crop_rois(features, boxes, (self.config.height, self.config.width), self.config.roi_size)
        codes = self.roi_encoder(crops.flatten(0, 1)).view(n, NUM_ROIS, self.config.roi_dim)
        return (codes * present[..., None].to(codes.dtype)).flatten(1)


class BackgroundEncoder(nn.Module):
    """(image, pose mask) -> background embedding (n, background_dim), from the pixels outside the mask only."""

    def __init__(self, config: PersonConfig) -> None:
        super().__init__()
        c = config.channels
        assert config.height % 16 == 0 and config.width % 16 == 0, "height and width must be multiples of 16"
        self.convs = nn.Sequential(_conv(4, c), _conv(c, 2 * c, 2), _conv(2 * c, 4 * c, 2), _conv(4 * c, 4 * c, 2), _conv(4 * c, 4 * c, 2))
        self.fc = nn.Linear(4 * c * (config.height // 16) * (config.width // 16), config.background_dim)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        outside = 1 - mask
        return self.fc(self.convs(torch.cat([image * outside, outside], dim=1)).flatten(1))


class PoseAutoencoder(nn.Module):
    """54-dim keypoint vector (deployments/person/body.py ``pose_vector``) <-> pose embedding (n, pose_dim)."""

    def __init__(self, config: PersonConfig) -> None:
        super().__init__()
        h = config.pose_hidden
        self.encoder = _mlp([POSE_VECTOR_DIM, h, h, config.pose_dim])
        self.decoder = _mlp([config.pose_dim, h, h, POSE_VECTOR_DIM])

    def encode(self, vector: torch.Tensor) -> torch.Tensor:
        return self.encoder(vector)

    def decode_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """-> (n, 54) logits: sigmoid gives x / W, y / H and the visibility probability."""
        return self.decoder(embedding)

    def decode(self, embedding: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(embedding))


class UNetDecoder(nn.Module):
    """(painted ROI embeddings, tiled background embedding, pose heatmaps, pose mask) -> image in [-1, 1]."""

    def __init__(self, config: PersonConfig) -> None:
        super().__init__()
        c = config.channels
        in_channels = config.foreground_dim + config.background_dim + NUM_KEYPOINTS + 1
        widths = [c * min(2**i, 4) for i in range(config.unet_depth + 1)]  # e.g. 32, 64, 128, 128
        self.entry = nn.Sequential(nn.Conv2d(in_channels, c, 1), nn.LeakyReLU(0.2, inplace=True), _conv(c, c))
        self.down = nn.ModuleList([_conv(a, b, 2) for a, b in zip(widths, widths[1:])])
        self.middle = nn.Sequential(_conv(widths[-1], widths[-1]), _conv(widths[-1], widths[-1]))
        # Each up step: upsample, then a conv over [upsampled, skip] of the same resolution.
        self.up = nn.ModuleList([_conv(b + a, a) for a, b in zip(widths, widths[1:])][::-1])
        self.exit = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.entry(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = self.middle(skips.pop())
        for block in self.up:
            skip = skips.pop()
            y = block(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="nearest"), skip], dim=1))
        return torch.tanh(self.exit(y))


class Mapping(nn.Module):
    """Stage II Φ: Gaussian noise (n, dim) -> an embedding of one factor (n, dim)."""

    def __init__(self, dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.dim = dim
        self.net = _mlp([dim] + [hidden] * layers + [dim])

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        assert_shape(noise, (None, self.dim), "noise")
        return self.net(noise)


class DisentangledPersonGenerator(nn.Module):
    """Stage I encoders and decoder, the pose autoencoder, and the Stage II mappings of the three factors."""

    def __init__(self, config: PersonConfig) -> None:
        super().__init__()
        self.config = config
        self.foreground = ForegroundEncoder(config)
        self.background = BackgroundEncoder(config)
        self.pose = PoseAutoencoder(config)
        self.decoder = UNetDecoder(config)
        self.mappings = nn.ModuleDict({f: Mapping(config.embedding_dim(f), config.mapping_hidden, config.mapping_layers) for f in FACTORS})

    def _check_inputs(self, image: torch.Tensor | None, keypoints: torch.Tensor, visible: torch.Tensor) -> None:
        assert_shape(keypoints, (None, NUM_KEYPOINTS, 2), "keypoints")
        n = keypoints.shape[0]
        assert_shape(visible, (n, NUM_KEYPOINTS), "visible")
        if image is not None:
            assert_shape(image, (n, 3, self.config.height, self.config.width), "image")

    def encode_foreground(self, image: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        self._check_inputs(image, keypoints, visible)
        boxes, present = roi_boxes(keypoints, visible)
        return self.foreground(image, pose_mask(keypoints, visible, self.config.height, self.config.width), boxes, present)

    def encode_background(self, image: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        self._check_inputs(image, keypoints, visible)
        return self.background(image, pose_mask(keypoints, visible, self.config.height, self.config.width))

    def encode_pose(self, keypoints: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        self._check_inputs(None, keypoints, visible)
        return self.pose.encode(pose_vector(keypoints, visible, self.config.height, self.config.width))

    def encode(self, image: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor) -> Embeddings:
        """All three factors, the pose mask drawn once for both appearance encoders."""
        self._check_inputs(image, keypoints, visible)
        mask = pose_mask(keypoints, visible, self.config.height, self.config.width)
        return Embeddings(
            self.foreground(image, mask, *roi_boxes(keypoints, visible)), self.background(image, mask), self.encode_pose(keypoints, visible)
        )

    def pose_keypoints(self, pose_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A pose embedding (sampled or interpolated) -> (keypoints (n, 18, 2) px, visible (n, 18))."""
        return keypoints_from_vector(self.pose.decode(pose_embedding), self.config.height, self.config.width)

    def decode(self, foreground: torch.Tensor, background: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Foreground (n, 7 * roi_dim) and background (n, background_dim) embeddings, drawn in the pose of
        ``keypoints`` -> image (n, 3, H, W) in [-1, 1]."""
        self._check_inputs(None, keypoints, visible)
        n, h, w, config = keypoints.shape[0], self.config.height, self.config.width, self.config
        assert_shape(foreground, (n, config.foreground_dim), "foreground embedding")
        assert_shape(background, (n, config.background_dim), "background embedding")
        boxes, present = roi_boxes(keypoints, visible)
        painted = (roi_masks(boxes, present, h, w)[:, :, None] * foreground.view(n, NUM_ROIS, config.roi_dim, 1, 1)).flatten(1, 2)
        tiled = background[:, :, None, None].expand(n, config.background_dim, h, w)
        heatmaps = pose_heatmaps(keypoints, visible, h, w, heatmap_sigma(h))
        return self.decoder(torch.cat([painted, tiled, heatmaps, pose_mask(keypoints, visible, h, w)], dim=1))

    def forward(self, image: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Stage I reconstruction: the image from its own three factors."""
        embeddings = self.encode(image, keypoints, visible)
        return self.decode(embeddings.foreground, embeddings.background, keypoints, visible)

    def sample_embeddings(self, factor: str, noise: torch.Tensor) -> torch.Tensor:
        """Stage II: Gaussian noise (n, dim of the factor) -> embeddings of that factor."""
        return self.mappings[factor](noise)
