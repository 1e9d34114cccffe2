"""EdgeConnect inpainting as pure functions over the two generators and tensors.

Conventions (the official code's): images (B, 3, H, W) in [0, 1]; masks (B, 1, H, W) in {0, 1} with
1 = hole; edges (B, 1, H, W) in [0, 1]. The hole is filled white (1) in the generators' inputs.

    edges  = canny_edges(gray, hole, sigma)                 Canny outside the hole (numpy, per image)
    edge_p = edge_generator(edge_inputs(gray, edges, mask))  edge probabilities everywhere
    completed = edge_p                                       edge_map="generated" (default)
              | edge_p * mask + edges * (1 - mask)           edge_map="composited"
              [max user strokes inside the hole]
    output = inpaint_generator(image_inputs(image, completed, mask))
    merged = output * mask + image * (1 - mask)

The two edge maps are the official code's two paths: its inference (``EdgeConnect.test``, models
3 and 4) hands the edge generator's raw output, the whole map, to the inpainting generator; its
training, validation and sample grids (``train`` / ``eval`` / ``sample``) composite the prediction
inside the hole over the Canny edges outside. Official checkpoints reproduce the official results
with "generated"; a model whose edge generator only learned the hole may prefer "composited".

Sizes: any H x W; the batch is padded (reflect) to multiples of 4 (at least 12 px) and cropped back.
What part of a photo runs (a crop around the holes, the image scaled down, or all of it) is the
plan of ``deployments/inpaint/strategies.py``; ``scale_images`` and ``shrink_masks`` serve the
``resize`` strategy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from deployments.inpaint.edgeconnect import EdgeConnect
from deployments.inpaint.sizes import MIN_SIDE, SIZE_MULTIPLE
from deployments.shapes import assert_shape

# ITU-R BT.709 luma, what skimage.color.rgb2gray uses (the official code's grayscale)
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma."""
    weights = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def canny_edges(gray: np.ndarray, hole: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Canny edges (float32 0/1, H x W) of a grayscale image in [0, 1], computed outside the hole only
    (skimage's ``mask`` argument, as the official test-time data loader does)."""
    from skimage.feature import canny

    return canny(gray.astype(np.float64), sigma=sigma, mask=~hole.astype(bool)).astype(np.float32)


def edge_inputs(gray: torch.Tensor, edges: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Edge generator input (B, 3, H, W): gray with the hole white, edges outside the hole, mask."""
    return torch.cat([gray * (1 - masks) + masks, edges * (1 - masks), masks], 1)


def image_inputs(images: torch.Tensor, edges: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Inpainting generator input (B, 4, H, W): image with the hole white, completed edges."""
    return torch.cat([images * (1 - masks) + masks, edges], 1)


EDGE_MAPS = ("generated", "composited")  # what the inpainting generator is given; the first is the default


def completed_edges(edge_probability: torch.Tensor, edges: torch.Tensor, masks: torch.Tensor, edge_map: str = EDGE_MAPS[0]) -> torch.Tensor:
    """The edge map the inpainting generator gets: the edge generator's whole output ("generated",
    the official inference) or its output inside the hole over ``edges`` outside ("composited", the
    official training)."""
    if edge_map == "generated":
        return edge_probability
    if edge_map == "composited":
        return edge_probability * masks + edges * (1 - masks)
    raise ValueError(f"edge_map must be one of {EDGE_MAPS}, got {edge_map!r}")


def dilate(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow the hole by ``pixels`` in every direction (square structuring element)."""
    if pixels <= 0:
        return masks
    return F.max_pool2d(masks, 2 * pixels + 1, stride=1, padding=pixels)


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE, mode: str = "reflect") -> torch.Tensor:
    """Pad bottom and right so H and W are multiples of ``multiple`` and at least MIN_SIDE (crop back
    with ``[..., :H, :W]``)."""
    height, width = x.shape[-2:]
    pad_h = max(MIN_SIDE, height + (-height) % multiple) - height
    pad_w = max(MIN_SIDE, width + (-width) % multiple) - width
    if pad_h == 0 and pad_w == 0:
        return x
    if mode == "reflect" and (pad_h >= height or pad_w >= width):
        mode = "replicate"  # reflect needs the pad smaller than the side
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def scale_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *size), bilinear; antialiased when it shrinks (the ``resize`` strategy)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrinks = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrinks)


def shrink_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) 0/1 -> (B, 1, *size) 0/1: a pixel is set if any full-size pixel it covers is, so
    the shrunk hole covers every hole pixel and a one-pixel stroke survives."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.adaptive_max_pool2d(masks, size)


def complete(
    model: EdgeConnect,
    images: torch.Tensor,
    masks: torch.Tensor,
    edges: torch.Tensor,
    user_edges: torch.Tensor | None = None,
    edge_map: str = EDGE_MAPS[0],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inpaint a batch: (merged images (B, 3, H, W), the edge maps the inpainting generator got (B, 1, H, W)).

    images / masks / edges as in the module doc; ``edges`` are the Canny edges outside the hole.
    user_edges: optional (B, 1, H, W) strokes; inside the hole they are added to the completed
        edges (max), so a user can draw the structure the image generator follows.
    edge_map: "generated" (the official inference: the edge generator's whole output) or
        "composited" (the official training: its output inside the hole, ``edges`` outside); one
        value for the whole batch.
    Any H, W: padded to multiples of 4 and cropped back.
    """
    height, width = images.shape[-2:]
    assert_shape(masks, (images.shape[0], 1, height, width), "masks")
    assert_shape(edges, (images.shape[0], 1, height, width), "edges")
    padded_images = pad_to_multiple(images)
    padded_masks = pad_to_multiple(masks, mode="constant")  # the padding is never a hole
    padded_edges = pad_to_multiple(edges, mode="constant")
    gray = to_gray(padded_images)
    edge_probability = model.edge(edge_inputs(gray, padded_edges, padded_masks))
    completed = completed_edges(edge_probability, padded_edges, padded_masks, edge_map)
    if user_edges is not None:
        completed = torch.maximum(completed, pad_to_multiple(user_edges, mode="constant") * padded_masks)
    output = model.inpaint(image_inputs(padded_images, completed, padded_masks))
    merged = output * padded_masks + padded_images * (1 - padded_masks)
    return merged[..., :height, :width], completed[..., :height, :width]
