"""Contracts of the ``ingan`` family (InGAN): the ``retarget`` op and the ``fit`` job.

``retarget`` takes no inputs: an InGAN model holds the one image it was trained on. Its params list
the outputs (one to eight; several come back side by side as one strip). Every output side snaps to
the nearest multiple of the model's ``size_multiple`` (``2 ** n_downscales``); the canonical inputs
carry the produced sizes, and the response's extras say requested vs produced.

``fit`` is a job kind (``POST /v1/jobs`` with ``{"fit": {...}}``), not an edit: it trains a new
model on an uploaded image in a Ray task of its own and registers it as ``ingan-<asset id[:32]>``
(or ``name``). Torch-free, like every schema module.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from schemas.common import STRIP_GAP, Limits, ModelName, Seed, Sha256Hex, StrictModel

MAX_OUTPUTS = 8
MODEL_PREFIX = "ingan-"


class RetargetOutput(StrictModel):
    height: int = Field(gt=0, description="requested output height in px (snapped to a multiple of the model's size_multiple)")
    width: int = Field(gt=0, description="requested output width in px (snapped likewise)")
    top_left: float = Field(
        default=0.0,
        ge=-0.5,
        le=0.5,
        description="homography: horizontal shift of the top-left corner, "
        "fraction of the width (positive = right); 0 with top_right 0 = plain resize",
    )
    top_right: float = Field(default=0.0, ge=-0.5, le=0.5, description="homography: horizontal shift of the top-right corner")

    @model_validator(mode="after")
    def _top_edge(self) -> "RetargetOutput":
        if 2 + 2 * (self.top_right - self.top_left) <= 0:
            raise ValueError("top_left and top_right cross the top corners over; keep top_right - top_left above -1")
        return self


class RetargetParams(StrictModel):
    outputs: list[RetargetOutput] = Field(
        min_length=1,
        max_length=MAX_OUTPUTS,
        description=f"1-{MAX_OUTPUTS} output sizes or shapes, each one forward pass; several form a strip, left to right",
    )


class RetargetInputs(StrictModel):
    """None: the model holds its image."""


def snap_side(requested: int, multiple: int) -> int:
    """The nearest positive multiple of ``multiple`` (ties round up): what the generator can produce."""
    return max(multiple, int(math.floor(requested / multiple + 0.5)) * multiple)


# What one retarget may produce (a whole strip) where settings name no budget: the generator's
# features take about 100x an image's bytes, so 1024x1024 is ~1.3 GB of activations on a replica.
RETARGET_PIXEL_BUDGET = 1024 * 1024


def strip_size(targets: list[list[Any]]) -> tuple[int, int]:
    """(height, width) of the strip the snapped ``targets`` come back as, side by side."""
    return max(t[0] for t in targets), sum(t[1] for t in targets) + STRIP_GAP * (len(targets) - 1)


def prepare_retarget(inputs: RetargetInputs, params: RetargetParams, manifest: dict[str, Any], draw_seed, limits: Limits) -> dict[str, Any]:
    multiple = int(manifest.get("size_multiple") or 1)
    targets = [[snap_side(o.height, multiple), snap_side(o.width, multiple), o.top_left, o.top_right] for o in params.outputs]
    height, width = strip_size(targets)
    if height * width > limits.max_image_pixels:
        raise ValueError(
            f"the output would be {width}x{height} = {height * width:,} px (sides snapped to multiples of {multiple}), "
            f"above the {limits.max_image_pixels:,} px this service returns; ask for smaller or fewer outputs"
        )
    return {"targets": targets}


def check_retarget_budget(inputs: dict[str, Any], images: dict[str, Any], params: RetargetParams, budget: int) -> None:
    """The op's ``check_pixel_budget``: every output pixel is a generator pixel (one forward pass per
    output), so the strip of the canonical ``inputs`` (snapped sides) must fit ``budget``."""
    height, width = strip_size(inputs["targets"])
    if height * width > budget:
        sides = ", ".join(f"{t[1]}x{t[0]}" for t in inputs["targets"])
        raise ValueError(
            f"the outputs ({sides}, a {width}x{height} strip) run the generator on {height * width:,} pixels, "
            f"above this service's budget of {budget:,} pixels per edit of this op (setting model_pixel_budgets "
            f'"ingan.retarget"); ask for smaller or fewer outputs'
        )


class FitJob(StrictModel):
    """Train an InGAN model on one uploaded image (``POST /v1/jobs`` body ``{"fit": {...}}``)."""

    family: Literal["ingan"] = Field(default="ingan", description="the family whose model is trained")
    image: Sha256Hex = Field(description="asset id of the training image")
    name: ModelName | None = Field(
        default=None,
        description=f"model name to register; default {MODEL_PREFIX}<first 32 hex "
        "digits of the image's asset id> (a refit of the same image replaces it)",
    )
    iterations: int = Field(default=2000, ge=1, le=200_000, description="generator + discriminator updates")
    scale_min: float = Field(default=0.5, ge=0.1, le=1.0, description="smallest output/input ratio per side drawn in training")
    scale_max: float = Field(default=2.0, ge=1.0, le=4.0, description="largest output/input ratio per side drawn in training")
    size: int = Field(default=96, ge=16, le=512, description="the image is resized so its longer side is this (px)")
    base_channels: int = Field(default=24, ge=4, le=128, description="generator entry channels (doubled per downscale)")
    downscales: int = Field(default=3, ge=1, le=5, description="generator downscaling blocks: output sides snap to 2**downscales")
    resblocks: int = Field(default=4, ge=0, le=12, description="generator bottleneck residual blocks")
    rec_weight: float = Field(default=0.1, ge=0.0, le=100.0, description="weight of the L1 reconstruction at the identity (paper: 0.1)")
    cycle_weight: float = Field(
        default=0.1,
        ge=0.0,
        le=100.0,
        description="weight of the L1 of G(G(x; T); back to x's size) against x, the reconstruction of the paper's code",
    )
    seed: Seed = Field(default=0, description="weights and drawn scales")

    def model_name(self) -> str:
        return self.name or MODEL_PREFIX + self.image[:32]
