"""Real photos into fixed-size models (schemas/photo_fit.py): the fit of project, pose_transfer and
recompose, and that the box and scale their extras give map the result back onto the photo. In process."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import collage, person, style, warp
from schemas.common import Limits
from schemas.ops import FittedImages
from schemas.photo_fit import plan_fit, to_model_frame

PHOTO_W, PHOTO_H = 120, 80  # landscape, 3:2: every fit mode does something different to it
LIMITS = Limits(max_image_pixels=4096 * 4096)


def _photo_with_marker(x: int, y: int, width: int = PHOTO_W, height: int = PHOTO_H) -> np.ndarray:
    """A dim photo with one bright 6 x 6 square over columns x-2..x+3 and rows y-2..y+3: its centroid,
    in pixel-centre coordinates (pixel i's centre at i), is (x + 0.5, y + 0.5)."""
    photo = np.full((height, width, 3), 30, np.uint8)
    photo[y - 2 : y + 4, x - 2 : x + 4] = 230
    return photo


def _centroid(image: np.ndarray) -> tuple[float, float]:
    """Centroid (x, y) of the bright pixels, in pixel-centre coordinates."""
    weight = np.clip(image[..., 0].astype(float) - 130, 0, None)  # above mid-grey: the marker, with its blur
    rows, cols = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return float((cols * weight).sum() / weight.sum()), float((rows * weight).sum() / weight.sum())


def _back_on_the_photo(u: float, v: float, fit: dict) -> tuple[float, float]:
    """A result pixel's photo coordinates, as the docs tell a client to compute them from extras.fit."""
    (box_x, box_y, _, _), (scale_x, scale_y) = fit["box"], fit["scale"]
    return box_x + (u + 0.5) / scale_x - 0.5, box_y + (v + 0.5) / scale_y - 0.5


STYLE_MANIFEST = {"name": "style-tiny", "resolution": 64}


@pytest.mark.parametrize(
    "fit,box,scale",
    [
        ("stretch", [0, 0, 120, 80], [64 / 120, 64 / 80]),
        ("center_crop", [20, 0, 80, 80], [0.8, 0.8]),
        ("pad", [0, -20, 120, 120], [64 / 120, 64 / 120]),
    ],
)
def test_a_non_square_photo_projects_through_a_box_that_maps_back(fit, box, scale):
    marker = (70, 30)  # inside every mode's box
    photo = _photo_with_marker(*marker)
    params = style.ProjectParams(resize=True, fit=fit)
    fitted = style.fit_project_images({"image": photo}, params, STYLE_MANIFEST)
    assert isinstance(fitted, FittedImages) and fitted.images["image"].shape == (64, 64, 3)
    extras = fitted.extras["fit"]["image"]
    assert extras["box"] == box and extras["photo_size"] == [120, 80] and extras["mode"] == fit
    assert extras["scale"] == pytest.approx(scale, abs=1e-6)
    # the marker found in the model's input, mapped back with the extras, is where it is on the photo;
    # tolerance: Lanczos resampling spreads the 6 px square over a few model pixels (about 0.3 px of centroid shift)
    found = _back_on_the_photo(*_centroid(fitted.images["image"]), extras)
    assert found == pytest.approx((marker[0] + 0.5, marker[1] + 0.5), abs=1.0)


def test_pad_repeats_the_crops_edge_and_collage_project_fits_alike():
    photo = np.zeros((PHOTO_H, PHOTO_W, 3), np.uint8)
    photo[0], photo[-1] = 200, 100  # top and bottom rows: what pad repeats above and below
    fitted = style.fit_project_images({"image": photo}, style.ProjectParams(resize=True, fit="pad"), STYLE_MANIFEST)
    image = fitted.images["image"]
    # 20 photo rows of border each side = 10.7 model rows; 8 of them lie beyond Lanczos' reach of the dark
    # rows, but its fixed-point weights may round a flat area by one level
    assert np.abs(image[:8].astype(int) - 200).max() <= 1 and np.abs(image[-8:].astype(int) - 100).max() <= 1
    collage_fitted = collage.fit_project_images({"image": photo}, collage.ProjectParams(resize=True, fit="pad"), STYLE_MANIFEST)
    assert np.array_equal(collage_fitted.images["image"], image) and collage_fitted.extras == fitted.extras


def test_a_crop_box_of_the_models_size_is_copied_and_one_outside_the_photo_is_refused():
    photo = np.random.default_rng(0).integers(0, 256, (PHOTO_H, PHOTO_W, 3), dtype=np.uint8)
    fitted = style.fit_project_images({"image": photo}, style.ProjectParams(crop_box=(50, 10, 64, 64)), STYLE_MANIFEST)
    assert np.array_equal(fitted.images["image"], photo[10:74, 50:114])  # copied bytes: exact
    assert fitted.extras["fit"]["image"] == {"photo_size": [120, 80], "box": [50, 10, 64, 64], "scale": [1.0, 1.0], "mode": "none"}
    # a crop box of another size is fitted without resize: it says which part of the photo to use
    boxed = style.fit_project_images({"image": photo}, style.ProjectParams(crop_box=(0, 0, 100, 50), fit="center_crop"), STYLE_MANIFEST)
    assert boxed.extras["fit"]["image"]["box"] == [25, 0, 50, 50]
    for crop_box in [(60, 10, 64, 64), (0, 40, 50, 41), (120, 0, 1, 1)]:
        with pytest.raises(ValueError, match="reaches outside the 120x80 pixels of inputs.image"):
            style.fit_project_images({"image": photo}, style.ProjectParams(crop_box=crop_box), STYLE_MANIFEST)
    with pytest.raises(ValueError, match="works at 64x64"):  # no crop box, no resize: the model's size, as before
        style.fit_project_images({"image": photo}, style.ProjectParams(), STYLE_MANIFEST)


def test_a_crop_box_needs_a_positive_size():
    from pydantic import ValidationError

    for crop_box in [(0, 0, 0, 10), (-1, 0, 10, 10), (0, 0, 10), (0, 0, 10**400, 1)]:  # the last: beyond float range
        with pytest.raises(ValidationError, match="crop_box"):
            style.ProjectParams(crop_box=crop_box)


# ---- pose_transfer: a person photo, its parsing and keypoints in the photo's pixels -------------
WARP_H, WARP_W = 64, 32  # portrait 1:2, as the warp models work


def _warp_manifest() -> dict:
    return {"name": "warp-tiny", "image_size": [WARP_H, WARP_W], "examples": {}}


def _keypoints(anchor: tuple[float, float]) -> list:
    """18 points around ``anchor`` (all visible), the first one exactly on it."""
    x, y = anchor
    return [[x + (j % 3) * 2.0, y + j * 1.5] for j in range(18)]


@pytest.mark.parametrize("fit", ["stretch", "center_crop", "pad"])
def test_pose_transfer_maps_a_photos_crop_keypoints_and_parsing_alike(fit):
    photo_w, photo_h = 200, 150
    crop_box = (40, 20, 60, 100)  # 3:5, not the model's 1:2
    photo = _photo_with_marker(70, 60, photo_w, photo_h)  # the marker where the first keypoint is
    parsing = np.zeros((photo_h, photo_w), np.uint8)
    parsing[40:110, 55:85] = 5  # upper clothes
    manifest = _warp_manifest()
    params = warp.PoseTransferParams(crop_box=crop_box, fit=fit)
    inputs = warp.PoseTransferInputs(
        image="a" * 64, parsing="b" * 64, keypoints=_keypoints((70, 60)), target_keypoints=_keypoints((65, 50))
    )
    canonical = warp.prepare_pose_transfer(inputs, params, manifest, lambda: 0, LIMITS)
    fitted = warp.fit_pose_transfer_images({"image": photo, "parsing": parsing}, params, manifest)
    image, labels = fitted.images["image"], fitted.images["parsing"]
    assert image.shape == (WARP_H, WARP_W, 3) and labels.shape == (WARP_H, WARP_W)
    assert set(np.unique(labels)) <= {0, 5}  # nearest: labels stay labels (pad fills background)
    extras = fitted.extras["fit"]["image"]
    # the marker, mapped as the keypoints are, is where it is in the model's input; tolerance as in the project test
    (marker,) = to_model_frame([[70.5, 60.5]], tuple(extras["box"]), (WARP_W, WARP_H))
    assert _centroid(image) == pytest.approx(marker, abs=1.0)
    mapped = canonical["keypoints"][0]
    # and the extras map model pixels back onto the photo, inverse of the keypoints' mapping
    assert _back_on_the_photo(*mapped, extras) == pytest.approx((70, 60), abs=1e-3)
    target = canonical["target_keypoints"][0]
    assert _back_on_the_photo(*target, extras) == pytest.approx((65, 50), abs=1e-3)


def test_pose_transfer_refuses_a_crop_box_outside_the_photo_and_keypoints_outside_the_box():
    manifest, photo = _warp_manifest(), np.zeros((150, 200, 3), np.uint8)
    params = warp.PoseTransferParams(crop_box=(150, 20, 60, 100))
    with pytest.raises(ValueError, match="params.crop_box .* reaches outside the 200x150 pixels"):
        warp.fit_pose_transfer_images({"image": photo, "parsing": np.zeros((150, 200), np.uint8)}, params, manifest)
    inputs = warp.PoseTransferInputs(
        image="a" * 64, parsing="b" * 64, keypoints=_keypoints((10, 60)), target_keypoints=_keypoints((160, 50))
    )
    with pytest.raises(ValueError, match="outside the 32x64 image.*mapped from the photo's pixels"):
        warp.prepare_pose_transfer(inputs, warp.PoseTransferParams(crop_box=(40, 20, 60, 100)), manifest, lambda: 0, LIMITS)
    # without a crop box, nothing changes: keypoints in the model's pixels, images at its size
    plain = warp.fit_pose_transfer_images(
        {"image": np.zeros((WARP_H, WARP_W, 3), np.uint8), "parsing": np.zeros((WARP_H, WARP_W), np.uint8)},
        warp.PoseTransferParams(),
        manifest,
    )
    assert plain.extras["fit"]["image"]["mode"] == "none"


# ---- recompose: two photos, each its own crop box; the result covers the background's ---------
def test_recompose_fits_foreground_and_background_each_by_its_own_box():
    manifest = _warp_manifest()
    foreground, background = _photo_with_marker(70, 60, 200, 150), _photo_with_marker(120, 90, 300, 200)
    params = person.RecomposeParams(foreground_crop_box=(40, 20, 60, 100), background_crop_box=(100, 40, 50, 100), fit="center_crop")
    inputs = person.RecomposeInputs(
        foreground="a" * 64,
        foreground_keypoints=_keypoints((70, 60)),
        background="b" * 64,
        background_keypoints=_keypoints((120, 90)),
        pose_keypoints=_keypoints((118, 85)),
    )
    canonical = person.prepare_recompose(inputs, params, manifest, lambda: 0, LIMITS)
    fitted = person.fit_recompose_images({"foreground": foreground, "background": background}, params, manifest)
    fits = fitted.extras["fit"]
    assert fits["foreground"]["box"] == [45, 20, 50, 100] and fits["background"] == {
        "photo_size": [300, 200],
        "box": [100, 40, 50, 100],
        "scale": [0.64, 0.64],
        "mode": "center_crop",
    }
    for name, anchor in (("foreground", (70, 60)), ("background", (120, 90))):
        (marker,) = to_model_frame([[anchor[0] + 0.5, anchor[1] + 0.5]], tuple(fits[name]["box"]), (WARP_W, WARP_H))
        assert _centroid(fitted.images[name]) == pytest.approx(marker, abs=1.0)
        mapped = canonical[f"{name}_keypoints"][0]
        assert _back_on_the_photo(*mapped, fits[name]) == pytest.approx(anchor, abs=1e-3)
    # the pose is drawn in the result, which covers the background's box: mapped by it
    assert _back_on_the_photo(*canonical["pose_keypoints"][0], fits["background"]) == pytest.approx((118, 85), abs=1e-3)
    with pytest.raises(ValueError, match="params.background_crop_box .* reaches outside the 300x200 pixels of inputs.background"):
        person.fit_recompose_images(
            {"foreground": foreground, "background": background},
            person.RecomposeParams(foreground_crop_box=(0, 0, 32, 64), background_crop_box=(260, 0, 50, 100)),
            manifest,
        )


def test_to_model_frame_maps_pixel_centres_onto_pixel_centres():
    box = (10, 20, 40, 80)
    assert to_model_frame([[10 - 0.5, 20 - 0.5], None, [49.5, 99.5]], box, (20, 40)) == [[-0.5, -0.5], None, [19.5, 39.5]]
    fit = plan_fit((100, 100), (20, 40), box, None, "stretch", "inputs.image", "m")
    assert fit.scale == (0.5, 0.5)
