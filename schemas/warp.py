"""Op contract of the ``warp`` family (Soft-Gated Warping-GAN): pose transfer.

``pose_transfer``: a person image, its COCO-18 keypoints and LIP parsing (a label PNG, values 0-19),
and target keypoints -> the same person in the target pose, plus the predicted target parsing (a
colour PNG stored as an asset, ``extras.parsing_asset_id``). Keypoints are pixel ``[x, y]`` in the
image, ``null`` for a joint that is not visible, in COCO18 order (``GET /v1/models`` lists it as the
model's ``keypoint_names``). For the model's example images (``examples`` in its manifest; the files
ship in its checkpoint directory and are stored as assets when the model is registered), keypoints
and parsing may be omitted: they come with the image.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from schemas.common import Limits, Sha256Hex, StrictModel
from schemas.ops import FittedImages
from schemas.photo_fit import FIT_DESCRIPTION, FIT_MODES, Box, CropBox, FitMode, fitted_box, plan_fit, to_model_frame

KEYPOINT_NAMES = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)
TORSO = ("neck", "r_shoulder", "l_shoulder", "r_hip", "l_hip")
# Bones of skeleton drawings, as keypoint index pairs (OpenPose's COCO pairs without the ear-shoulder ones).
SKELETON = (
    (1, 2),
    (2, 3),
    (3, 4),
    (1, 5),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
)
LIP_CLASSES = (
    "background",
    "hat",
    "hair",
    "glove",
    "sunglasses",
    "upper_clothes",
    "dress",
    "coat",
    "socks",
    "pants",
    "jumpsuits",
    "scarf",
    "skirt",
    "face",
    "left_arm",
    "right_arm",
    "left_leg",
    "right_leg",
    "left_shoe",
    "right_shoe",
)
NUM_PARSING_CLASSES = len(LIP_CLASSES)
# The usual LIP colours of parsing previews and of the parsing PNG pose_transfer returns, one per class.
LIP_PALETTE = (
    (0, 0, 0),
    (128, 0, 0),
    (255, 0, 0),
    (0, 85, 0),
    (170, 0, 51),
    (255, 85, 0),
    (0, 0, 85),
    (0, 119, 221),
    (85, 85, 0),
    (0, 85, 85),
    (85, 51, 0),
    (52, 86, 128),
    (0, 128, 0),
    (0, 0, 255),
    (51, 170, 221),
    (0, 255, 255),
    (85, 255, 170),
    (170, 255, 85),
    (255, 255, 0),
    (255, 170, 0),
)

Keypoints = list[tuple[float, float] | None]


class PoseTransferParams(StrictModel):
    crop_box: CropBox | None = Field(
        default=None,
        description="[x, y, width, height] of the photo (and its parsing) to use, fitted to the model's size; keypoints then in the photo's pixels",
    )
    fit: FitMode = Field(default=FIT_MODES[0], description=FIT_DESCRIPTION)


class PoseTransferInputs(StrictModel):
    image: Sha256Hex = Field(description="asset id of the person image, at the model's image_size (or see params.crop_box)")
    target_keypoints: Keypoints = Field(
        description="18 COCO keypoints of the target pose: [x, y] pixels (the photo's, with params.crop_box) or null (not visible)"
    )
    keypoints: Keypoints | None = Field(default=None, description="the image's own 18 keypoints; omit for the model's example images")
    parsing: Sha256Hex | None = Field(
        default=None,
        description="asset id of the image's LIP parsing (grey PNG, class index 0-19 per pixel); omit for the model's example images",
    )


def image_size(manifest: dict[str, Any]) -> tuple[int, int]:
    height, width = manifest["image_size"]  # [height, width], as every fixed-size model lists it
    return int(height), int(width)


def check_keypoints(points: Keypoints, name: str, height: int, width: int) -> list[list[float] | None]:
    """18 entries, finite, inside the image, the torso visible; -> JSON-able canonical list. ValueError if not."""
    if len(points) != len(KEYPOINT_NAMES):
        raise ValueError(f"inputs.{name} must have {len(KEYPOINT_NAMES)} entries (COCO-18: {', '.join(KEYPOINT_NAMES)}), got {len(points)}")
    canonical: list[list[float] | None] = []
    for joint, point in zip(KEYPOINT_NAMES, points):
        if point is None:
            canonical.append(None)
            continue
        x, y = point
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"inputs.{name}: {joint} is not a finite point")
        if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
            raise ValueError(
                f"inputs.{name}: {joint} at ({x:g}, {y:g}) is outside the {width}x{height} image; send null for a joint that is not visible"
            )
        canonical.append([round(float(x), 3), round(float(y), 3)])
    missing = [joint for joint in TORSO if canonical[KEYPOINT_NAMES.index(joint)] is None]
    if missing:
        raise ValueError(f"inputs.{name}: the torso must be visible; missing {', '.join(missing)}")
    return canonical


def model_frame_keypoints(
    points: Keypoints, name: str, crop_box: Box | None, fit: str, manifest: dict[str, Any], box_param: str = "params.crop_box"
) -> list[list[float] | None]:
    """Keypoints of an image -> canonical keypoints in the model input's pixels, checked there
    (``check_keypoints``). Without a crop box they are that already; with one they are in the photo's
    pixels and mapped as the photo is (schemas/photo_fit.py), so each must lie in what the model sees."""
    height, width = image_size(manifest)
    if crop_box is None:
        return check_keypoints(points, name, height, width)
    box = fitted_box(crop_box, (width, height), fit)
    try:
        return check_keypoints(to_model_frame(points, box, (width, height)), name, height, width)
    except ValueError as exc:
        raise ValueError(
            f"{exc} (mapped from the photo's pixels: with {box_param} {list(crop_box)} and fit {fit!r} the model sees the photo's box "
            f"{list(box)}, scaled to {width}x{height})"
        ) from None


def prepare_pose_transfer(
    inputs: PoseTransferInputs, params: PoseTransferParams, manifest: dict[str, Any], draw_seed, limits: Limits
) -> dict[str, Any]:
    keypoints, parsing = inputs.keypoints, inputs.parsing
    if keypoints is None or parsing is None:
        example = (manifest.get("examples") or {}).get(inputs.image)
        if example is None:
            raise ValueError(
                "inputs.keypoints and inputs.parsing are required for an image that is not one of the model's "
                f"examples ({len(manifest.get('examples') or {})} listed in GET /v1/models/{manifest['name']})"
            )
        keypoints = keypoints if keypoints is not None else example["keypoints"]
        parsing = parsing if parsing is not None else example["parsing"]
    return {
        "image": inputs.image,
        "parsing": parsing,
        "keypoints": model_frame_keypoints(keypoints, "keypoints", params.crop_box, params.fit, manifest),
        "target_keypoints": model_frame_keypoints(inputs.target_keypoints, "target_keypoints", params.crop_box, params.fit, manifest),
    }


def fit_pose_transfer_images(images: dict[str, Any], params: PoseTransferParams, manifest: dict[str, Any]) -> FittedImages:
    """Image and parsing at the model's size: as they are, or their ``crop_box`` fitted by ``fit``
    (the parsing by nearest neighbour, padded with background); parsing values are LIP classes.
    ``extras.fit.image`` says what was done (schemas/photo_fit.py)."""
    height, width = image_size(manifest)
    image, parsing = images["image"], images["parsing"]
    fit = plan_fit((image.shape[1], image.shape[0]), (width, height), params.crop_box, None, params.fit, "inputs.image", manifest["name"])
    if parsing.shape[:2] != image.shape[:2]:  # one crop box for both: the parsing labels the image's pixels
        raise ValueError(f"inputs.parsing is {parsing.shape[1]}x{parsing.shape[0]} but inputs.image is {image.shape[1]}x{image.shape[0]}")
    images = {**images, "image": fit.apply(image), "parsing": fit.apply(parsing, labels=True)}
    if int(images["parsing"].max()) >= NUM_PARSING_CLASSES:
        raise ValueError(
            f"inputs.parsing holds value {int(images['parsing'].max())}: a parsing is a grey PNG of LIP class "
            f"indices 0-{NUM_PARSING_CLASSES - 1}"
        )
    return FittedImages(images, {"fit": {"image": fit.extras()}})
