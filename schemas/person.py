"""Op contracts of the ``person`` family (Disentangled Person Image Generation): foreground, background
and pose as separate factors.

Every person image comes with its 18 COCO keypoints (pixel ``[x, y]``, ``null`` for a joint that is
not visible, the torso always visible; see schemas/warp.py): the encoders crop the body ROIs and the
coarse pose mask from them. For the model's example images (``examples`` in its manifest, stored as
public assets when the model is registered) the keypoints may be omitted.

- ``recompose``: the person of ``foreground`` in front of the background of ``background``, in the
  pose of ``pose_keypoints``, of the example image ``pose``, or (neither given) of ``foreground``.
- ``sample``: keep some factors of ``image``, sample the others from noise (``seed``; drawn when omitted).
- ``interpolate``: ``steps`` images from ``start`` to ``end`` in one factor's embedding space, the
  other factors from ``start``; returned side by side as one strip.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from schemas.common import STRIP_GAP, Limits, Seed, Sha256Hex, StrictModel
from schemas.ops import FittedImages
from schemas.photo_fit import FIT_DESCRIPTION, FIT_MODES, Box, CropBox, FitMode, plan_fit
from schemas.warp import Keypoints, image_size, model_frame_keypoints

Factor = Literal["foreground", "background", "pose"]
MAX_STEPS = 12


class RecomposeParams(StrictModel):
    foreground_crop_box: CropBox | None = Field(
        default=None,
        description="[x, y, width, height] of the foreground photo to use, fitted to the model's size; its keypoints then in its pixels",
    )
    background_crop_box: CropBox | None = Field(
        default=None,
        description="[x, y, width, height] of the background photo to use (the result covers it); its and pose_keypoints then in its pixels",
    )
    fit: FitMode = Field(default=FIT_MODES[0], description=FIT_DESCRIPTION)


class RecomposeInputs(StrictModel):
    foreground: Sha256Hex = Field(description="asset id of the image whose person (clothes, hair, skin) is kept")
    foreground_keypoints: Keypoints | None = Field(default=None, description="18 keypoints of the foreground image; omit for examples")
    background: Sha256Hex = Field(description="asset id of the image whose background is used")
    background_keypoints: Keypoints | None = Field(default=None, description="18 keypoints of the background image; omit for examples")
    pose: Sha256Hex | None = Field(default=None, description="asset id of a model example whose pose is used (or give pose_keypoints)")
    pose_keypoints: Keypoints | None = Field(
        default=None, description="18 keypoints of the pose to draw the person in; default: the pose image's, else the foreground's"
    )


class SampleParams(StrictModel):
    keep: list[Factor] = Field(default_factory=list, description="factors taken from inputs.image; the others are sampled")

    @field_validator("keep")
    @classmethod
    def _unique(cls, keep: list[str]) -> list[str]:
        if len(set(keep)) != len(keep):
            raise ValueError("params.keep names a factor twice")
        if len(keep) == 3:
            raise ValueError("params.keep names all three factors: nothing would be sampled (use recompose to redraw an image)")
        return keep


class SampleInputs(StrictModel):
    seed: Seed | None = Field(default=None, description="seed of the sampled factors' noise; drawn by the server when omitted")
    image: Sha256Hex | None = Field(
        default=None, description="asset id of the image whose kept factors are used (needed when params.keep is not empty)"
    )
    keypoints: Keypoints | None = Field(default=None, description="18 keypoints of the image; omit for examples")


class InterpolateParams(StrictModel):
    factor: Factor = Field(description="the factor whose embedding moves from start's to end's")
    steps: int = Field(default=5, ge=2, le=MAX_STEPS, description=f"images in the strip, the two ends included (2-{MAX_STEPS})")


class InterpolateInputs(StrictModel):
    start: Sha256Hex = Field(description="asset id of the first image (its other factors are kept throughout)")
    start_keypoints: Keypoints | None = Field(default=None, description="18 keypoints of the start image; omit for examples")
    end: Sha256Hex = Field(description="asset id of the last image")
    end_keypoints: Keypoints | None = Field(default=None, description="18 keypoints of the end image; omit for examples")


def _keypoints_of(
    image: str,
    given: Keypoints | None,
    name: str,
    manifest: dict[str, Any],
    crop_box: Box | None = None,
    fit: str = FIT_MODES[0],
    box_param: str = "",
) -> list[list[float] | None]:
    """Given keypoints, or the example image's listed ones; in the model's pixels, checked there
    (with ``crop_box``, mapped from the image's pixels: schemas.warp.model_frame_keypoints)."""
    if given is None:
        example = (manifest.get("examples") or {}).get(image)
        if example is None:
            raise ValueError(
                f"inputs.{name} is required for an image that is not one of the model's examples "
                f"({len(manifest.get('examples') or {})} listed in GET /v1/models/{manifest['name']})"
            )
        given = example["keypoints"]
    return model_frame_keypoints(given, name, crop_box, fit, manifest, box_param)


def prepare_recompose(
    inputs: RecomposeInputs, params: RecomposeParams, manifest: dict[str, Any], draw_seed, limits: Limits
) -> dict[str, Any]:
    foreground = (params.foreground_crop_box, params.fit, "params.foreground_crop_box")
    background = (params.background_crop_box, params.fit, "params.background_crop_box")
    foreground_keypoints = _keypoints_of(inputs.foreground, inputs.foreground_keypoints, "foreground_keypoints", manifest, *foreground)
    if inputs.pose_keypoints is not None:  # where to draw the person in the result, which covers the background's box
        pose_keypoints = model_frame_keypoints(inputs.pose_keypoints, "pose_keypoints", *background[:2], manifest, background[2])
    elif inputs.pose is not None:  # an example image, at the model's size
        pose_keypoints = _keypoints_of(inputs.pose, None, "pose_keypoints", manifest)
    else:
        pose_keypoints = foreground_keypoints
    return {
        "foreground": inputs.foreground,
        "foreground_keypoints": foreground_keypoints,
        "background": inputs.background,
        "background_keypoints": _keypoints_of(
            inputs.background, inputs.background_keypoints, "background_keypoints", manifest, *background
        ),
        "pose_keypoints": pose_keypoints,
    }


def prepare_sample(inputs: SampleInputs, params: SampleParams, manifest: dict[str, Any], draw_seed, limits: Limits) -> dict[str, Any]:
    seed = inputs.seed if inputs.seed is not None else draw_seed()
    if not params.keep:
        if inputs.image is not None or inputs.keypoints is not None:
            raise ValueError(
                "inputs.image was given but params.keep is empty, so nothing of it would be used; "
                "name the factors to keep (foreground, background, pose) or leave the image out"
            )
        return {"seed": seed, "keep": []}
    if inputs.image is None:
        raise ValueError(f"params.keep = {params.keep} needs inputs.image (and its keypoints unless it is a model example)")
    keep = [factor for factor in ("foreground", "background", "pose") if factor in params.keep]
    return {
        "seed": seed,
        "keep": keep,
        "image": inputs.image,
        "keypoints": _keypoints_of(inputs.image, inputs.keypoints, "keypoints", manifest),
    }


def prepare_interpolate(
    inputs: InterpolateInputs, params: InterpolateParams, manifest: dict[str, Any], draw_seed, limits: Limits
) -> dict[str, Any]:
    height, width = image_size(manifest)
    strip_pixels = height * (params.steps * width + STRIP_GAP * (params.steps - 1))
    if strip_pixels > limits.max_image_pixels:
        raise ValueError(f"a strip of {params.steps} images would be {strip_pixels:,} px, above the service's max_image_pixels")
    return {
        "start": inputs.start,
        "start_keypoints": _keypoints_of(inputs.start, inputs.start_keypoints, "start_keypoints", manifest),
        "end": inputs.end,
        "end_keypoints": _keypoints_of(inputs.end, inputs.end_keypoints, "end_keypoints", manifest),
    }


def fit_recompose_images(images: dict[str, Any], params: RecomposeParams, manifest: dict[str, Any]) -> FittedImages:
    """Foreground and background at the model's size: as they are, or each its crop box fitted by
    ``fit``; ``extras.fit`` says, per image, what was done (schemas/photo_fit.py)."""
    height, width = image_size(manifest)
    fitted, fits = dict(images), {}
    for name, crop_box in (("foreground", params.foreground_crop_box), ("background", params.background_crop_box)):
        image = images[name]
        fit = plan_fit(
            (image.shape[1], image.shape[0]),
            (width, height),
            crop_box,
            None,
            params.fit,
            f"inputs.{name}",
            manifest["name"],
            f"params.{name}_crop_box",
        )
        fitted[name], fits[name] = fit.apply(image), fit.extras()
    return FittedImages(fitted, {"fit": fits})


def fit_person_images(images: dict[str, Any], params: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """Every person image at the model's size (the keypoints are pixels of that size)."""
    height, width = image_size(manifest)
    for name, image in images.items():
        if image.shape[:2] != (height, width):
            raise ValueError(f"inputs.{name} is {image.shape[1]}x{image.shape[0]} but model {manifest['name']!r} works at {width}x{height}")
    return images
