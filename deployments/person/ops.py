"""The person family's edits as pure functions over a DisentangledPersonGenerator and tensors.

A person is an image (n, 3, H, W) in [-1, 1] with its keypoints (n, 18, 2) pixels and visibility
(n, 18) bool. Every op decodes foreground and background embeddings in a pose given as keypoints:
a pose that comes from an embedding (sampled or interpolated) is decoded to keypoints first, and is
returned, so a client can reuse it.
"""

from __future__ import annotations

import dataclasses

import torch

from deployments.person.networks import FACTORS, DisentangledPersonGenerator
from deployments.shapes import assert_shape


@dataclasses.dataclass
class People:
    """Images with their keypoints, batch n."""

    images: torch.Tensor  # (n, 3, H, W) in [-1, 1]
    keypoints: torch.Tensor  # (n, 18, 2) pixels
    visible: torch.Tensor  # (n, 18) bool


@dataclasses.dataclass
class Rendered:
    """Generated images and the pose each was drawn in."""

    images: torch.Tensor  # (n, 3, H, W) in [-1, 1]
    keypoints: torch.Tensor  # (n, 18, 2)
    visible: torch.Tensor  # (n, 18)


@torch.inference_mode()
def recompose(
    model: DisentangledPersonGenerator, foreground: People, background: People, keypoints: torch.Tensor, visible: torch.Tensor
) -> Rendered:
    """The person of ``foreground`` in front of the background of ``background``, in the pose of ``keypoints``."""
    appearance = model.encode_foreground(foreground.images, foreground.keypoints, foreground.visible)
    scene = model.encode_background(background.images, background.keypoints, background.visible)
    return Rendered(model.decode(appearance, scene, keypoints, visible), keypoints, visible)


def reconstruct(model: DisentangledPersonGenerator, people: People) -> Rendered:
    """Stage I reconstruction: recompose with every factor from the image itself."""
    return recompose(model, people, people, people.keypoints, people.visible)


def factor_noise(model: DisentangledPersonGenerator, seeds: list[int]) -> dict[str, torch.Tensor]:
    """Gaussian noise of each factor, one generator per seed drawn in FACTORS order: a seed gives the
    same sampled background whether or not the foreground and pose are sampled with it."""
    noise: dict[str, list[torch.Tensor]] = {factor: [] for factor in FACTORS}
    for seed in seeds:
        generator = torch.Generator().manual_seed(int(seed))
        for factor in FACTORS:
            noise[factor].append(torch.randn(model.config.embedding_dim(factor), generator=generator))
    device = next(model.parameters()).device
    return {factor: torch.stack(values).to(device) for factor, values in noise.items()}


@torch.inference_mode()
def sample(model: DisentangledPersonGenerator, seeds: list[int], keep: frozenset[str], people: People | None) -> Rendered:
    """Keep the factors in ``keep`` from ``people`` (one per seed; None when nothing is kept), sample the
    others from the Stage II mappings with each seed's noise."""
    assert keep <= set(FACTORS), keep
    assert (people is None) == (not keep), "people are needed exactly when a factor is kept"
    noise = factor_noise(model, seeds)
    sampled = {factor: model.sample_embeddings(factor, noise[factor]) for factor in FACTORS if factor not in keep}
    if "pose" in keep:
        keypoints, visible = people.keypoints, people.visible
    else:
        keypoints, visible = model.pose_keypoints(sampled["pose"])
    foreground = model.encode_foreground(people.images, people.keypoints, people.visible) if "foreground" in keep else sampled["foreground"]
    background = model.encode_background(people.images, people.keypoints, people.visible) if "background" in keep else sampled["background"]
    return Rendered(model.decode(foreground, background, keypoints, visible), keypoints, visible)


@torch.inference_mode()
def interpolate(model: DisentangledPersonGenerator, factor: str, start: People, end: People, steps: int) -> Rendered:
    """``steps`` images (batch of one person each for ``start`` and ``end``): ``factor``'s embedding goes
    linearly from start's to end's, the other factors stay start's. A pose is interpolated as its
    54-dim code and decoded to keypoints at every step, the ends included."""
    assert factor in FACTORS and steps >= 2, (factor, steps)
    assert_shape(start.images, (1, 3, None, None), "start's images (one person)")
    assert_shape(end.images, (1, 3, None, None), "end's images (one person)")
    weights = torch.linspace(0, 1, steps, device=start.images.device)[:, None]

    def line(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.lerp(a.expand(steps, -1), b.expand(steps, -1), weights)

    foreground = model.encode_foreground(start.images, start.keypoints, start.visible).expand(steps, -1)
    background = model.encode_background(start.images, start.keypoints, start.visible).expand(steps, -1)
    keypoints, visible = start.keypoints.expand(steps, -1, -1), start.visible.expand(steps, -1)
    if factor == "foreground":
        foreground = line(foreground[:1], model.encode_foreground(end.images, end.keypoints, end.visible))
    elif factor == "background":
        background = line(background[:1], model.encode_background(end.images, end.keypoints, end.visible))
    else:
        keypoints, visible = model.pose_keypoints(
            line(model.encode_pose(start.keypoints, start.visible), model.encode_pose(end.keypoints, end.visible))
        )
    return Rendered(model.decode(foreground, background, keypoints, visible), keypoints, visible)
