"""InGAN modules, ops and checkpoint format, with no Ray (deployments/ingan/)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deployments.ingan import ops
from deployments.ingan.checkpoint import load_model, manifest_for, weights_bytes
from deployments.ingan.ingan import Generator, InGANConfig, MultiScaleDiscriminator, homography_grid
from schemas.common import STRIP_GAP, Limits
from schemas.ingan import FitJob, RetargetInputs, RetargetParams, prepare_retarget

TINY = InGANConfig(base_channels=8, n_downscales=2, n_resblocks=1)


def smooth_image(height: int = 24, width: int = 24, seed: int = 0) -> np.ndarray:
    """Low-frequency colour noise: learnable in a few hundred iterations."""
    rng = np.random.default_rng(seed)
    return ops.resize_image((rng.random((6, 6, 3)) * 255).astype(np.uint8), (height, width))


@pytest.fixture(scope="module")
def trained():
    """A tiny generator trained on a 24 px image in a few seconds (reconstruction-heavy, identity scale)."""
    torch.set_num_threads(1)
    image = smooth_image()
    settings = ops.FitSettings(iterations=150, scale_min=1.0, scale_max=1.0, rec_weight=1.0, lr=1e-3, d_channels=8, seed=1)
    generator, summary = ops.fit(image, TINY, settings)
    return image, generator, summary


def test_generator_output_shapes_follow_the_requested_size():
    torch.manual_seed(0)
    generator = Generator(TINY).eval()
    image = torch.rand(2, 3, 20, 28) * 2 - 1
    with torch.inference_mode():
        for size in [(20, 28), (8, 40), (44, 12)]:
            out = generator(image, size)
            assert out.shape == (2, 3, *size)
            assert out.abs().max() <= 1
    with pytest.raises(AssertionError, match="multiples of 4"):
        generator(image, (10, 12))


def test_snapping_to_the_size_multiple():
    assert ops.snap_side(1, 8) == 8
    assert ops.snap_side(11, 8) == 8
    assert ops.snap_side(12, 8) == 16  # ties round up
    assert ops.snap_side(64, 8) == 64
    assert ops.snap_size(100, 37, 16) == (96, 32)
    assert ops.training_size(427, 640, 96, 8) == (64, 96)
    with pytest.raises(ValueError, match="positive"):
        ops.snap_side(0, 8)


def test_zero_homography_is_exactly_the_plain_resize():
    assert np.array_equal(ops.top_corner_homography(0.0, 0.0), np.eye(3))
    torch.manual_seed(0)
    generator = Generator(TINY).eval()
    source = torch.rand(1, 3, 24, 24) * 2 - 1
    identity = torch.as_tensor(ops.top_corner_homography(0.0, 0.0), dtype=torch.float32).unsqueeze(0)
    with torch.inference_mode():
        plain = generator(source, (16, 40))
        warped = generator(source, (16, 40), identity)
    assert torch.equal(plain, warped)  # exact: points @ I sums x * 1 and zeros, the same grid in any summation order
    # the identity grid is the grid of a bilinear resize
    features = torch.rand(1, 5, 12, 9)
    resized = torch.nn.functional.interpolate(features, size=(20, 16), mode="bilinear", align_corners=False)
    sampled = generator.geometric(features, (20, 16))
    assert torch.allclose(resized, sampled, atol=1e-5)


def test_top_corner_homography_moves_the_top_corners_only():
    matrix = ops.top_corner_homography(0.2, -0.1)  # output -> input

    def sample_point(x, y):
        u, v, w = matrix @ np.array([x, y, 1.0])
        return u / w, v / w

    assert np.allclose(sample_point(-1 + 0.4, -1), (-1, -1))  # the output's shifted top-left shows the input's top-left
    assert np.allclose(sample_point(1 - 0.2, -1), (1, -1))
    assert np.allclose(sample_point(-1, 1), (-1, 1)) and np.allclose(sample_point(1, 1), (1, 1))
    grid = homography_grid(torch.as_tensor(matrix).unsqueeze(0), (8, 8))
    assert grid.shape == (1, 8, 8, 2)
    with pytest.raises(ValueError, match="cross"):
        ops.top_corner_homography(0.5, -0.5)


def test_discriminator_scales_follow_the_image():
    discriminator = MultiScaleDiscriminator((64, 96), channels=4)
    assert len(discriminator.nets) == 5  # 64 / 1.4**4 = 16.7 >= 16 > 64 / 1.4**5
    maps = discriminator(torch.rand(1, 3, 64, 96))
    assert len(maps) == 5 and all(m.shape[:2] == (1, 1) for m in maps)
    assert len(discriminator(torch.rand(1, 3, 32, 48))) == 3  # a smaller generated image fills fewer scales


def test_fit_learns_the_identity_of_a_tiny_image(trained):
    image, generator, summary = trained
    assert summary["iterations"] == 150 and not summary["stopped"]
    assert not generator.training
    untrained = Generator(TINY).eval()
    assert ops.identity_psnr(generator, image) > 24.0
    assert ops.identity_psnr(generator, image) > ops.identity_psnr(untrained, image) + 8


def test_fit_reports_progress_and_stops_when_asked():
    seen = []

    def on_progress(progress):
        seen.append(progress)
        if progress["iteration"] >= 4:
            raise ops.FitStopped

    settings = ops.FitSettings(iterations=50, d_channels=4, seed=0)
    _, summary = ops.fit(smooth_image(), TINY, settings, on_progress=on_progress, progress_every=2)
    assert [p["iteration"] for p in seen] == [2, 4]
    assert summary["stopped"] and summary["iterations"] == 4
    assert set(seen[0]["losses"]) == {"d", "g_adv", "rec_l1", "cycle_l1"} and seen[0]["eta_s"] is not None


def test_scale_curriculum_grows_from_the_identity():
    settings = ops.FitSettings(iterations=100, scale_min=0.5, scale_max=2.0, curriculum=0.5)
    assert ops.scale_range(settings, 0) == (1.0, 1.0)
    assert ops.scale_range(settings, 25) == (0.75, 1.5)
    assert ops.scale_range(settings, 99) == (0.5, 2.0)


def test_checkpoint_round_trip_keeps_outputs(trained):
    image, generator, _ = trained
    manifest = manifest_for(generator, image, name="ingan-test")
    assert manifest["size_multiple"] == 4 and manifest["image_size"] == [24, 24] and manifest["ops"] == ["retarget"]
    model = load_model(weights_bytes(generator, image), manifest)
    assert np.array_equal(ops.to_uint8(model.source)[0], image)
    targets = [ops.Target(24, 48), ops.Target(16, 24, 0.1, -0.1)]
    for a, b in zip(ops.retarget(generator, ops.to_tensor(image), targets), ops.retarget(model.generator, model.source, targets)):
        assert np.array_equal(a, b)  # the same weight bytes and source pixels in the same module class: bit-exact


def test_strip_places_outputs_left_to_right():
    a, b = np.zeros((8, 4, 3), np.uint8), np.zeros((4, 6, 3), np.uint8)
    canvas, offsets = ops.strip([a, b])
    assert canvas.shape == (8, 4 + STRIP_GAP + 6, 3) and offsets == [0, 4 + STRIP_GAP]
    assert (canvas[4:, offsets[1] :] == 255).all()  # below the shorter image: white


LIMITS = Limits(max_image_pixels=4096 * 4096)  # the settings' default


def test_prepare_retarget_snaps_and_bounds_the_output():
    manifest = {"size_multiple": 8}
    params = RetargetParams.model_validate({"outputs": [{"height": 30, "width": 50}, {"height": 3, "width": 64, "top_left": 0.1}]})
    assert prepare_retarget(RetargetInputs(), params, manifest, lambda: 0, LIMITS) == {"targets": [[32, 48, 0.0, 0.0], [8, 64, 0.1, 0.0]]}
    huge = RetargetParams.model_validate({"outputs": [{"height": 8192, "width": 4096}]})
    with pytest.raises(ValueError, match="above the 16,777,216 px this service returns"):
        prepare_retarget(RetargetInputs(), huge, manifest, lambda: 0, LIMITS)
    square = RetargetParams.model_validate({"outputs": [{"height": 64, "width": 64}]})  # 4096 px
    assert prepare_retarget(RetargetInputs(), square, manifest, lambda: 0, Limits(4096)) == {"targets": [[64, 64, 0.0, 0.0]]}
    with pytest.raises(ValueError, match="above the 4,095 px"):
        prepare_retarget(RetargetInputs(), square, manifest, lambda: 0, Limits(4095))
    for bad in ({"height": 0, "width": 8}, {"height": -8, "width": 8}, {"height": 8, "width": 8, "top_left": 0.5, "top_right": -0.5}):
        with pytest.raises(ValueError):
            RetargetParams.model_validate({"outputs": [bad]})


def test_retarget_budget_counts_the_whole_strip_of_snapped_outputs():
    from deployments.ingan.spec import FAMILY
    from schemas.ingan import RETARGET_PIXEL_BUDGET, check_retarget_budget

    spec = FAMILY.ops["retarget"]
    assert spec.check_pixel_budget is check_retarget_budget and spec.pixel_budget == RETARGET_PIXEL_BUDGET
    manifest = {"size_multiple": 8}
    two = RetargetParams.model_validate({"outputs": [{"height": 64, "width": 60}, {"height": 30, "width": 64}]})
    inputs = prepare_retarget(RetargetInputs(), two, manifest, lambda: 0, LIMITS)  # 64x64 and 32x64, a 4 px gap
    strip = 64 * (64 + 4 + 64)
    check_retarget_budget(inputs, {}, two, strip)
    with pytest.raises(ValueError, match=f"64x64, 64x32, a 132x64 strip.*{strip:,} pixels.*budget of {strip - 1:,}"):
        check_retarget_budget(inputs, {}, two, strip - 1)


def test_fit_job_default_model_name():
    job = FitJob(image="ab" * 32)
    assert job.model_name() == "ingan-" + "ab" * 16
    assert FitJob(image="ab" * 32, name="my-ingan").model_name() == "my-ingan"


def test_shipped_demo_checkpoint_loads_and_reproduces_its_image():
    import json
    from pathlib import Path

    directory = Path(__file__).resolve().parent.parent / "checkpoints" / "ingan-rocket"
    manifest = json.loads((directory / "model.json").read_text())
    assert manifest["family"] == "ingan" and manifest["ops"] == ["retarget"] and not manifest["random_init"]
    model = load_model((directory / "weights.safetensors").read_bytes(), manifest)
    image = ops.to_uint8(model.source)[0]
    assert list(image.shape[:2]) == manifest["image_size"] == [64, 96]
    assert ops.identity_psnr(model.generator, image) > 20.0
    wide, warped = ops.retarget(model.generator, model.source, [ops.Target(64, 192), ops.Target(64, 96, 0.2, -0.2)])
    assert wide.shape == (64, 192, 3) and warped.shape == (64, 96, 3)
