"""Real photos into fixed-size models: which box of a photo a model sees, and how it is scaled there.

An op whose model works at one size (``project`` at its resolution, ``pose_transfer`` and
``recompose`` at the model's ``image_size``) takes a photo of any size through a crop box
(``[x, y, width, height]`` of the photo to use) and ``fit``, how the box becomes the model's size:

    stretch      the box scaled to the model's size, each axis on its own (its aspect ratio lost)
    center_crop  the largest box of the model's aspect ratio in the middle of the box, scaled
    pad          the box grown, around its centre, to the model's aspect ratio, the new border filled
                 by repeating the box's edge pixels (label images: class 0, background), then scaled

A box of the model's size is used as it is. Only the crop box's pixels are used: ``pad`` repeats the
box's edge even where the photo goes on. What was done is the result's ``extras.fit``, per input
field (:meth:`PhotoFit.extras`): ``box``, the photo's pixels the model's input covers (outside the
photo or the crop box for ``pad``), and ``scale``, model pixels per photo pixel along x and y. The
result's pixel (u, v) shows the photo at ``(box.x + (u + 0.5) / scale.x - 0.5, box.y + (v + 0.5) /
scale.y - 0.5)`` (pixel centres, as the resampling maps them): scaled by 1/scale and put at
``(box.x, box.y)`` the result covers the box. Keypoints sent with a cropped photo are in the photo's
pixels and mapped the same way (:func:`to_model_frame`).

Free of torch: the ingress fits photos before dispatch (the ops' ``fit_images`` hooks).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, Sequence

import numpy as np
from pydantic import Field

FitMode = Literal["stretch", "center_crop", "pad"]
FIT_MODES: tuple[str, ...] = ("stretch", "center_crop", "pad")  # the first is the default: what resize did before fit existed

# Bounded so that the box's arithmetic stays in float range (a JSON integer may have 400 digits); no
# photo the service decodes (max_image_pixels) has a side this long.
MAX_SIDE = 1 << 20
CropBox = tuple[
    Annotated[int, Field(ge=0, le=MAX_SIDE)],
    Annotated[int, Field(ge=0, le=MAX_SIDE)],
    Annotated[int, Field(ge=1, le=MAX_SIDE)],
    Annotated[int, Field(ge=1, le=MAX_SIDE)],
]
Box = tuple[int, int, int, int]  # (x, y, width, height) in a photo's pixels
CROP_BOX_DESCRIPTION = "[x, y, width, height] of the photo to use, in its pixels, fitted to the model's size by params.fit"
FIT_DESCRIPTION = "how a box of another size becomes the model's: stretch it, cut its centre (center_crop), or pad it (edges repeated)"


def fitted_box(crop: Box, model_size: tuple[int, int], mode: str) -> Box:
    """The box of the photo the model's input covers when ``crop`` is fitted to ``model_size`` (width,
    height) by ``mode``: of the model's aspect ratio inside ``crop`` (center_crop) or around it (pad),
    centred; ``crop`` itself for stretch or a crop of the model's aspect ratio."""
    x, y, width, height = crop
    model_width, model_height = model_size
    if mode == "stretch" or width * model_height == height * model_width:
        return crop
    wider = width * model_height > height * model_width
    if (mode == "center_crop") == wider:  # cut the width, or pad the height: the width follows the height
        new_width, new_height = max(1, round(height * model_width / model_height)), height
    else:
        new_width, new_height = width, max(1, round(width * model_height / model_width))
    return x + (width - new_width) // 2, y + (height - new_height) // 2, new_width, new_height


def to_model_frame(points: Sequence[Sequence[float] | None], box: Box, model_size: tuple[int, int]) -> list[list[float] | None]:
    """Points ``[x, y]`` in the photo's pixels (None: not visible) -> the same points in the model
    input's pixels, for the model's input covering ``box`` (pixel centres map onto pixel centres)."""
    scale_x, scale_y = model_size[0] / box[2], model_size[1] / box[3]
    return [
        None if p is None else [round((p[0] - box[0] + 0.5) * scale_x - 0.5, 3), round((p[1] - box[1] + 0.5) * scale_y - 0.5, 3)]
        for p in points
    ]


@dataclasses.dataclass(frozen=True)
class PhotoFit:
    """What one photo went through: the photo's size, the pixels of it used, the box the model saw."""

    photo_size: tuple[int, int]  # (width, height) of the photo as sent
    crop: Box  # the pixels of the photo used: the crop box, or all of it
    box: Box  # what the model's input covers (fitted_box of crop); may leave the crop for "pad"
    model_size: tuple[int, int]  # (width, height) of the model's input
    mode: str  # "none" (the crop was the model's size and is used as it is), or the fit mode that scaled it

    @property
    def scale(self) -> tuple[float, float]:
        """Model pixels per photo pixel, along x and along y."""
        return self.model_size[0] / self.box[2], self.model_size[1] / self.box[3]

    def extras(self) -> dict[str, Any]:
        return {"photo_size": list(self.photo_size), "box": list(self.box), "scale": [round(s, 6) for s in self.scale], "mode": self.mode}

    def apply(self, photo: np.ndarray, labels: bool = False) -> np.ndarray:
        """The photo's pixels the model sees, at the model's size: the crop, grown or cut to the box,
        scaled (Lanczos; a label image ``labels=True``: nearest, padded with class 0)."""
        from PIL import Image

        x, y, width, height = self.crop
        crop = photo[y : y + height, x : x + width]
        if self.mode == "none":
            return crop
        left, top = self.box[0] - x, self.box[1] - y  # the box in the crop's pixels: negative where pad grew it
        right, bottom = left + self.box[2], top + self.box[3]
        boxed = crop[max(0, top) : min(height, bottom), max(0, left) : min(width, right)]
        border = [(max(0, -top), max(0, bottom - height)), (max(0, -left), max(0, right - width))] + [(0, 0)] * (photo.ndim - 2)
        if any(sum(pair) for pair in border):
            boxed = np.pad(boxed, border, mode="constant") if labels else np.pad(boxed, border, mode="edge")
        resample = Image.NEAREST if labels else Image.LANCZOS
        return np.asarray(Image.fromarray(np.ascontiguousarray(boxed)).resize(self.model_size, resample))


def plan_fit(
    photo_size: tuple[int, int],
    model_size: tuple[int, int],
    crop_box: Box | None,
    resize: bool | None,
    mode: str,
    where: str,
    model: str,
    box_param: str = "params.crop_box",
) -> PhotoFit:
    """The fit of a photo of ``photo_size`` (width, height) into a model input of ``model_size``: the
    crop box fitted by ``mode``, or without one the whole photo, fitted only when ``resize`` (else it
    must be the model's size; None: the op has no resize param). ValueError (a 422) for a crop box
    reaching outside the photo or a photo that does not fit; ``where`` names the photo's field and
    ``box_param`` the crop box's param in the messages."""
    width, height = photo_size
    if crop_box is not None:
        crop = tuple(int(v) for v in crop_box)
        if crop[0] + crop[2] > width or crop[1] + crop[3] > height:
            raise ValueError(
                f"{box_param} {list(crop)} (x, y, width, height) reaches outside the {width}x{height} pixels of {where}; "
                "it must lie inside the image"
            )
    else:
        crop = (0, 0, width, height)
    if crop[2:] == tuple(model_size):
        return PhotoFit(photo_size, crop, crop, model_size, "none")
    if crop_box is None and not resize:
        raise ValueError(
            f"{where} is {width}x{height} but model {model!r} works at {model_size[0]}x{model_size[1]}; "
            f"give a crop box of it ({box_param}, fitted by params.fit){' or set params.resize=true' if resize is not None else ''}"
        )
    return PhotoFit(photo_size, crop, fitted_box(crop, model_size, mode), model_size, mode)
