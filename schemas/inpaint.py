"""Op contract of the ``inpaint`` family (EdgeConnect): image + mask (+ user edges) -> image, edge map.

Masks: white (>= ``mask_threshold``) = hole, black = keep; they must be black and white (a few
anti-aliased grey pixels along the edges are fine). Everything about the mask is settled here, in
numpy, before the family sees it: size, thresholding, dilation, an all-hole mask.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from schemas.common import Limits, Sha256Hex, StrictModel

GREY_BAND = (32, 224)  # mask values in [32, 224) are neither black nor white
MAX_GREY_SHARE = 0.05  # more grey than this and the mask is not a mask

# The edge map the inpainting generator follows (deployments.inpaint.ops.EDGE_MAPS): "generated" is
# what the official EdgeConnect.test() runs at inference, "composited" what its training runs.
EdgeMap = Literal["generated", "composited"]
# What the generators run on (deployments.inpaint.strategies.STRATEGIES, which documents each).
Strategy = Literal["crop", "resize", "original"]


class InpaintParams(StrictModel):
    sigma: float = Field(default=2.0, gt=0.0, le=10.0, description="Gaussian sigma of the Canny edges found outside the hole")
    dilate: int = Field(default=0, ge=0, le=32, description="grow the hole by this many pixels (covers halos around objects)")
    mask_threshold: int = Field(default=128, ge=1, le=255, description="mask pixels at or above this grey level are hole")
    resize_mask: bool = Field(
        default=False, description="resize mask and edges (nearest) to the image size instead of rejecting other sizes"
    )
    edge_map: EdgeMap = Field(
        default="generated",
        description="edges the image generator follows: 'generated' = the edge generator's "
        "whole output (official inference), 'composited' = its output in the hole, Canny outside (official training)",
    )
    strategy: Strategy = Field(
        default="crop",
        description="what the generators run on: 'crop' = each group of holes' bounding box plus crop_margin, at full "
        "resolution; 'resize' = the image scaled to resize_limit; 'original' = the whole image; outside the hole the input is kept",
    )
    crop_margin: int = Field(
        default=128, ge=0, le=2048, description="strategy 'crop': context in pixels kept around each hole's bounding box"
    )
    resize_limit: int = Field(
        default=1024, ge=64, le=8192, description="strategy 'resize': longest side the image is scaled down to (never up)"
    )


class InpaintInputs(StrictModel):
    image: Sha256Hex = Field(description="asset id of the RGB image (any size)")
    mask: Sha256Hex = Field(description="asset id of the mask: white = hole to fill, black = keep")
    edges: Sha256Hex | None = Field(default=None, description="asset id of user-drawn edges (white strokes on black), used inside the hole")


def prepare_inpaint(inputs: InpaintInputs, params: InpaintParams, manifest: dict[str, Any], draw_seed, limits: Limits) -> dict[str, Any]:
    canonical = {"image": inputs.image, "mask": inputs.mask}
    if inputs.edges is not None:
        canonical["edges"] = inputs.edges
    return canonical


def dilate_mask(hole: np.ndarray, pixels: int) -> np.ndarray:
    """Binary dilation by a (2p+1)^2 square, separably (rows, then columns)."""
    if pixels <= 0:
        return hole
    out = hole.copy()
    padded = np.pad(hole, ((0, 0), (pixels, pixels)))
    for shift in range(2 * pixels + 1):
        out |= padded[:, shift : shift + hole.shape[1]]
    rows = out.copy()
    padded = np.pad(rows, ((pixels, pixels), (0, 0)))
    for shift in range(2 * pixels + 1):
        out |= padded[shift : shift + hole.shape[0]]
    return out


def _fit_to(array: np.ndarray, shape: tuple[int, int], name: str, params: InpaintParams) -> np.ndarray:
    from PIL import Image

    if array.shape[:2] == shape:
        return array
    if not params.resize_mask:
        raise ValueError(
            f"inputs.{name} is {array.shape[1]}x{array.shape[0]} but the image is {shape[1]}x{shape[0]}; "
            f"send it at the image's size or set params.resize_mask=true"
        )
    return np.asarray(Image.fromarray(array).resize((shape[1], shape[0]), Image.NEAREST))


def fit_inpaint_images(images: dict[str, Any], params: InpaintParams, manifest: dict[str, Any]) -> dict[str, Any]:
    """Mask -> bool hole (H, W) at the image's size, thresholded and dilated; edges -> bool strokes."""
    image = images["image"]
    shape = image.shape[:2]
    mask = _fit_to(images["mask"], shape, "mask", params)
    grey = float(((mask >= GREY_BAND[0]) & (mask < GREY_BAND[1])).mean())
    if grey > MAX_GREY_SHARE:
        raise ValueError(
            f"inputs.mask is not black and white: {100 * grey:.0f}% of its pixels are grey "
            f"(levels {GREY_BAND[0]}-{GREY_BAND[1] - 1}); send white = hole on black"
        )
    hole = dilate_mask(mask >= params.mask_threshold, params.dilate)
    if hole.all():
        raise ValueError(
            "the mask covers the whole image"
            + (f" (after dilating by {params.dilate} px)" if params.dilate else "")
            + ": there is nothing left to inpaint from; leave part of the image black"
        )
    fitted = {"image": image, "mask": hole}
    if "edges" in images:
        fitted["edges"] = _fit_to(images["edges"], shape, "edges", params) >= 128
    return fitted
