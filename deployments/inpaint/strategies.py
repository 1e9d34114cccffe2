"""What part of a photo EdgeConnect runs on: the ``strategy`` param's plan (torch-free: the ingress
checks the pixel budget with it before an edit is dispatched, the replica runs the same plan).

    original  the whole image, at full resolution (padded to multiples of 4)
    crop      one window per group of holes: the holes' bounding box grown by ``crop_margin`` on
              every side, at full resolution; holes whose margins touch share a window. All the
              windows of an edit have one size (the largest box, grown inside the image), so they
              run as one batch; if one window over all the holes is smaller, that one runs instead.
    resize    the whole image scaled so its longer side is ``resize_limit`` (never enlarged)

Whatever ran, only the hole's pixels are taken from the generator: outside the hole the result is
the input, byte for byte. Boxes are (top, left, height, width) in full-resolution pixels; the
result's extras give them as ``[x, y, width, height]``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from deployments.inpaint.sizes import SIZE_MULTIPLE, size_bucket

STRATEGIES = ("crop", "resize", "original")  # the first is the default
# More windows than this (a mask of many scattered specks) run as one window over all the holes:
# a batch of hundreds of small crops costs more than the one crop it replaces.
MAX_CROPS = 16


@dataclasses.dataclass(frozen=True)
class Box:
    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    def union(self, other: "Box") -> "Box":
        top, left = min(self.top, other.top), min(self.left, other.left)
        bottom = max(self.top + self.height, other.top + other.height)
        right = max(self.left + self.width, other.left + other.width)
        return Box(top, left, bottom - top, right - left)

    def overlaps(self, other: "Box") -> bool:
        return (
            self.top < other.top + other.height
            and other.top < self.top + self.height
            and self.left < other.left + other.width
            and other.left < self.left + self.width
        )

    def xywh(self) -> list[int]:
        return [self.left, self.top, self.width, self.height]


@dataclasses.dataclass(frozen=True)
class InpaintPlan:
    """What the generators run on for one edit.

    windows: the full-resolution boxes cut out of the image, one model input each (one box, the
        whole image, for ``original`` and ``resize``).
    regions: per window, the box whose hole pixels that window fills (disjoint, inside the window),
        so that where windows overlap each hole pixel still comes from one of them.
    model_size: (H, W) of each model input before padding to the model's multiple.
    scale: model_size / the window's size (below 1 only for ``resize``).
    """

    strategy: str
    windows: tuple[Box, ...]
    regions: tuple[Box, ...]
    model_size: tuple[int, int]
    scale: float = 1.0

    @property
    def model_pixels(self) -> int:
        """Pixels the generators run on: every model input at its padded size."""
        height, width = size_bucket(self.model_size)
        return len(self.windows) * height * width

    def extras(self) -> dict[str, Any]:
        described: dict[str, Any] = {"strategy": self.strategy, "model_pixels": self.model_pixels}
        if self.strategy == "crop":
            described["crop_boxes"] = [w.xywh() for w in self.windows]
        if self.strategy == "resize":
            described["scale"] = round(self.scale, 6)
            described["model_size"] = [self.model_size[1], self.model_size[0]]  # [width, height], as the boxes
        return described


def _whole(shape: tuple[int, int]) -> Box:
    return Box(0, 0, shape[0], shape[1])


def _rounded_up(n: int, limit: int) -> int:
    """n rounded up to the model's multiple, but at most ``limit`` (the image's side)."""
    return min(limit, n + (-n) % SIZE_MULTIPLE)


def _grown(box: Box, height: int, width: int, shape: tuple[int, int]) -> Box:
    """``box`` grown to height x width around its centre, shifted to stay inside the image."""
    top = min(max(0, box.top - (height - box.height) // 2), shape[0] - height)
    left = min(max(0, box.left - (width - box.width) // 2), shape[1] - width)
    return Box(top, left, height, width)


def hole_regions(hole: np.ndarray, margin: int) -> list[Box]:
    """Disjoint boxes covering every hole pixel with ``margin`` px of context on each side (less at
    the image's border): each connected group of holes whose margins touch gets one box.

    Found on a grid of SIZE_MULTIPLE-px cells (a cell is hole if any of its pixels is), so the boxes
    are aligned to the model's multiple and the labelling of a 12 MP mask takes a few milliseconds.
    """
    from scipy import ndimage

    height, width = hole.shape
    cell = SIZE_MULTIPLE
    padded = np.pad(hole, ((0, -height % cell), (0, -width % cell)))
    cells = padded.reshape(padded.shape[0] // cell, cell, padded.shape[1] // cell, cell).any(axis=(1, 3))
    reach = -(-margin // cell)  # the margin in cells, rounded up
    if reach:
        cells = ndimage.maximum_filter(cells, size=2 * reach + 1, mode="constant")
    labels, _count = ndimage.label(cells, structure=np.ones((3, 3), bool))
    boxes = []
    for rows, cols in ndimage.find_objects(labels):
        top, left = rows.start * cell, cols.start * cell
        boxes.append(Box(top, left, min(height, rows.stop * cell) - top, min(width, cols.stop * cell) - left))
    # Two groups' boxes may still overlap (one wraps around the other): merge until none does.
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if boxes[i].overlaps(boxes[j]):
                    boxes[i] = boxes[i].union(boxes.pop(j))
                    merged = True
                    break
            if merged:
                break
    return sorted(boxes, key=lambda b: (b.top, b.left))


def bounding_box(hole: np.ndarray) -> Box:
    """The smallest box holding every hole pixel of a bool hole (H, W) with at least one: the pixels
    an inpaint edit changes lie inside it (output.region returns it)."""
    rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
    return Box(int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))


def crop_plan(hole: np.ndarray, margin: int) -> InpaintPlan:
    shape = hole.shape[:2]
    regions = hole_regions(hole, margin)
    height = _rounded_up(max(r.height for r in regions), shape[0])
    width = _rounded_up(max(r.width for r in regions), shape[1])
    windows = [_grown(r, height, width, shape) for r in regions]
    union = regions[0]
    for region in regions[1:]:
        union = union.union(region)
    one = _grown(union, _rounded_up(union.height, shape[0]), _rounded_up(union.width, shape[1]), shape)
    several = InpaintPlan("crop", tuple(windows), tuple(regions), (height, width))
    single = InpaintPlan("crop", (one,), (union,), (one.height, one.width))
    if len(regions) > MAX_CROPS or single.model_pixels <= several.model_pixels:
        return single
    return several


def resize_plan(shape: tuple[int, int], limit: int) -> InpaintPlan:
    scale = min(1.0, limit / max(shape))
    size = (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))
    whole = _whole(shape)
    return InpaintPlan("resize", (whole,), (whole,), size, scale if size != shape else 1.0)


def plan_inpaint(hole: np.ndarray, strategy: str, crop_margin: int, resize_limit: int) -> InpaintPlan:
    """The plan for a bool hole (H, W) with at least one hole pixel."""
    shape = hole.shape[:2]
    if strategy == "crop":
        return crop_plan(hole, crop_margin)
    if strategy == "resize":
        return resize_plan(shape, resize_limit)
    if strategy == "original":
        whole = _whole(shape)
        return InpaintPlan("original", (whole,), (whole,), shape)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def plan_of(images: dict[str, Any], params: Any) -> InpaintPlan:
    """The plan of fitted inputs (schemas.inpaint.fit_inpaint_images) under ``params`` (InpaintParams)."""
    return plan_inpaint(images["mask"], params.strategy, params.crop_margin, params.resize_limit)


def largest_resize_limit(shape: tuple[int, int], budget: int) -> int:
    """The largest ``resize_limit`` whose model input fits ``budget`` pixels (0 if none does)."""
    limit = min(max(shape), math.isqrt(budget * max(shape) // max(1, min(shape))))
    while limit > 0 and resize_plan(shape, limit).model_pixels > budget:
        limit -= 1 + limit // 100  # a few steps from the estimate: padding to multiples of 4 adds a little
    return max(0, limit)


def check_pixel_budget(inputs: dict[str, Any], images: dict[str, Any], params: Any, budget: int) -> None:
    """Raise ValueError naming the budget and what would fit when the edit's plan runs the
    generators on more than ``budget`` pixels (the op's ``check_pixel_budget``; ``inputs`` unused:
    the plan is the fitted mask's)."""
    if not images["mask"].any():
        return  # an empty mask runs no generator
    plan = plan_of(images, params)
    if plan.model_pixels <= budget:
        return
    shape = images["mask"].shape[:2]
    fits = []
    if params.strategy != "crop":
        cropped = crop_plan(images["mask"], params.crop_margin)
        if cropped.model_pixels <= budget:
            fits.append(f"strategy 'crop' ({cropped.model_pixels} pixels)")
    elif params.crop_margin > 0 and crop_plan(images["mask"], 0).model_pixels <= budget:
        fits.append("a smaller params.crop_margin")
    limit = largest_resize_limit(shape, budget)
    if limit >= SIZE_MULTIPLE:
        fits.append(f"strategy 'resize' with resize_limit <= {limit}")
    advice = " or ".join(fits) if fits else "a smaller hole or a smaller image"
    raise ValueError(
        f"params.strategy={params.strategy!r} runs the generators on {plan.model_pixels} pixels "
        f"({shape[1]}x{shape[0]} image), above this service's budget of {budget} pixels per edit of this op "
        f"(setting max_model_pixels); {advice} would fit"
    )
