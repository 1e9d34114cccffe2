"""The inpaint family's strategies (crop, resize, original) and its pixel budget, in process (no Ray)."""

from __future__ import annotations

import typing

import numpy as np
import pytest
import torch

from deployments.inpaint import ops, strategies
from deployments.inpaint.sizes import size_bucket
from schemas.common import Limits
from schemas.inpaint import InpaintParams, Strategy
from service.tasks import EditTask
from tests.test_edgeconnect import random_edgeconnect

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    return random_edgeconnect(seed=3)


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient with noise and a colour step: structure for Canny, texture for the generators."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 200 // width, y * 200 // height, (x + y) * 100 // (height + width)], axis=-1) + 20
    image[:, width // 2 :] += 30
    return np.clip(image + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)


def _hole(shape: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    """bool hole with each (top, left, height, width) box set."""
    hole = np.zeros(shape, bool)
    for top, left, height, width in boxes:
        hole[top : top + height, left : left + width] = True
    return hole


def _task(image: np.ndarray, hole: np.ndarray, strokes: np.ndarray | None = None, **params) -> EditTask:
    images = {"image": image, "mask": hole, **({"edges": strokes} if strokes is not None else {})}
    return EditTask(model="m", op="inpaint", params=params, inputs={}, images=images, submitted_at=0.0)


def _run(model, task: EditTask):
    from deployments.inpaint.deployment import inpaint_batch

    return inpaint_batch(model, [task], CPU)[0]


def test_the_schema_names_the_strategies():
    assert typing.get_args(Strategy) == strategies.STRATEGIES
    assert InpaintParams().strategy == strategies.STRATEGIES[0] == "crop"


def test_far_apart_holes_are_separate_equal_windows_and_near_ones_share_one():
    hole = _hole((600, 800), (40, 50, 30, 40), (500, 700, 60, 20))
    plan = strategies.plan_inpaint(hole, "crop", crop_margin=32, resize_limit=1024)
    assert len(plan.windows) == 2 and {(w.height, w.width) for w in plan.windows} == {plan.model_size}
    assert plan.model_size[0] % 4 == 0 and plan.model_size[1] % 4 == 0
    for window, region in zip(plan.windows, plan.regions):
        w_rows, w_cols = window.slices
        r_rows, r_cols = region.slices
        assert w_rows.start <= r_rows.start and r_rows.stop <= w_rows.stop and w_cols.start <= r_cols.start and r_cols.stop <= w_cols.stop
        assert 0 <= window.top and window.top + window.height <= 600 and 0 <= window.left and window.left + window.width <= 800
    covered = np.zeros_like(hole)
    for region in plan.regions:
        covered[region.slices] = True
    assert covered[hole].all()  # every hole pixel is some region's
    first = plan.regions[0]  # the margin: 32 px of context around the first hole (aligned down/up to 4)
    assert first.top <= 40 - 32 and first.left <= 50 - 32 and first.top + first.height >= 70 + 32 and first.left + first.width >= 90 + 32
    assert plan.model_pixels == 2 * plan.model_size[0] * plan.model_size[1] < 600 * 800 // 4

    near = strategies.plan_inpaint(_hole((600, 800), (40, 50, 30, 40), (40, 140, 30, 40)), "crop", 32, 1024)
    assert len(near.windows) == 1  # margins touch: one window over both
    specks = np.zeros((600, 800), bool)
    specks[::50, ::50] = True  # 192 far-apart specks: one window over all of them, not 192 crops
    assert len(strategies.plan_inpaint(specks, "crop", 8, 1024).windows) == 1


def test_one_big_and_one_small_hole_run_as_one_window_when_that_is_smaller():
    # Two equal windows of the big hole's size would cost more than one window over both.
    hole = _hole((400, 400), (20, 20, 300, 300), (360, 360, 8, 8))
    plan = strategies.plan_inpaint(hole, "crop", 16, 1024)
    assert len(plan.windows) == 1 and plan.model_pixels <= 400 * 400


@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
def test_outside_the_hole_the_output_is_the_input_bit_for_bit(model, strategy):
    image = _photo(150, 210)
    hole = _hole(image.shape[:2], (20, 30, 17, 23), (110, 160, 25, 30))
    strokes = _hole(image.shape[:2], (30, 0, 1, 210))
    merged, edge_map, plan = _run(model, _task(image, hole, strokes, strategy=strategy, crop_margin=12, resize_limit=100))
    assert merged.shape == image.shape and merged.dtype == np.uint8 and edge_map.shape == hole.shape
    assert np.array_equal(merged[~hole], image[~hole])  # copied pixels: exact on every CPU
    assert not np.array_equal(merged[hole], image[hole])  # and the hole was filled
    assert plan.strategy == strategy


def test_extras_say_what_ran(model):
    image, hole = _photo(150, 210), _hole((150, 210), (20, 30, 17, 23), (110, 160, 25, 30))
    crop = _run(model, _task(image, hole, strategy="crop", crop_margin=12))[2].extras()
    assert crop["strategy"] == "crop" and len(crop["crop_boxes"]) == 2
    for x, y, width, height in crop["crop_boxes"]:
        assert [width, height] == crop["crop_boxes"][0][2:] and x + width <= 210 and y + height <= 150
    assert crop["model_pixels"] == 2 * np.prod(size_bucket((crop["crop_boxes"][0][3], crop["crop_boxes"][0][2])))
    resize = _run(model, _task(image, hole, strategy="resize", resize_limit=105))[2].extras()
    assert resize["strategy"] == "resize" and resize["scale"] == 0.5 and resize["model_size"] == [105, 75]
    original = _run(model, _task(image, hole, strategy="original"))[2].extras()
    assert original == {"strategy": "original", "model_pixels": 152 * 212}
    small = _run(model, _task(image, hole, strategy="resize", resize_limit=4096))[2]  # never enlarged: the whole image
    assert small.scale == 1.0 and small.model_size == (150, 210)


def test_a_crop_is_the_window_inpainted_alone(model):
    """Each window's fill is what ops.complete gives that window alone (two windows in one batch)."""
    from deployments.inpaint.deployment import gray_of

    image = _photo(160, 240, seed=2)
    hole = _hole(image.shape[:2], (20, 20, 16, 20), (120, 200, 16, 20))
    merged, _edges, plan = _run(model, _task(image, hole, strategy="crop", crop_margin=16))
    assert len(plan.windows) == 2
    for window, region in zip(plan.windows, plan.regions):
        crop, crop_hole = image[window.slices], hole[window.slices]
        edges = ops.canny_edges(gray_of(crop), crop_hole, 2.0)
        alone, _ = ops.complete(
            model,
            torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255,
            torch.from_numpy(crop_hole)[None, None].float(),
            torch.from_numpy(edges)[None, None],
        )
        expected = (alone.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
        inside = (
            crop_hole
            & np.pad(np.ones((region.height, region.width), bool), ((region.top - window.top, 0), (region.left - window.left, 0)))[
                : window.height, : window.width
            ]
        )
        got = merged[window.slices][inside].astype(int)
        # batched vs alone: conv kernels may round differently per batch size, by a level at most
        assert np.abs(got - expected[inside].astype(int)).max() <= 1


def test_crop_over_the_whole_image_is_the_original_strategy(model):
    image, hole = _photo(40, 36), _hole((40, 36), (10, 8, 15, 20))
    cropped, cropped_edges, plan = _run(model, _task(image, hole, strategy="crop"))
    original, original_edges, _ = _run(model, _task(image, hole, strategy="original"))
    assert [w.slices for w in plan.windows] == [(slice(0, 40), slice(0, 36))]
    assert np.array_equal(cropped, original) and np.array_equal(cropped_edges, original_edges)  # one computation, same kernels


def test_group_key_is_the_model_inputs_size():
    from deployments.inpaint.spec import FAMILY

    spec = FAMILY.ops["inpaint"]
    image = _photo(300, 400)
    key = lambda task: spec.group_key(task, spec.params_model.model_validate(task.params))  # noqa: E731
    small, large = (
        _task(image, _hole((300, 400), (10, 10, 8, 8)), crop_margin=8),
        _task(image, _hole((300, 400), (10, 10, 80, 80)), crop_margin=8),
    )
    assert key(small) != key(large)  # a small and a large crop of one photo run in separate batches
    assert key(_task(image, _hole((300, 400), (202, 302, 8, 8)), crop_margin=8)) == key(small)  # same crop size elsewhere: one batch
    assert key(_task(image, _hole((300, 400), (10, 10, 8, 8)), strategy="original")) == ((300, 400), "generated")


def test_over_budget_names_the_budget_and_what_fits():
    hole = _hole((2000, 3000), (900, 1400, 40, 30))
    images = {"image": np.zeros((2000, 3000, 3), np.uint8), "mask": hole}
    with pytest.raises(ValueError) as raised:
        strategies.check_pixel_budget({}, images, InpaintParams(strategy="original"), 1_000_000)
    message = str(raised.value)
    assert (
        "1000000" in message and "max_model_pixels" in message and "strategy 'crop'" in message and "'resize' with resize_limit" in message
    )
    strategies.check_pixel_budget({}, images, InpaintParams(strategy="crop"), 1_000_000)  # the crop fits
    limit = int(message.split("resize_limit <= ")[1].split()[0])
    assert (
        strategies.resize_plan((2000, 3000), limit).model_pixels <= 1_000_000 < strategies.resize_plan((2000, 3000), limit + 8).model_pixels
    )
    strategies.check_pixel_budget({}, images, InpaintParams(strategy="resize", resize_limit=limit), 1_000_000)
    with pytest.raises(ValueError, match="smaller params.crop_margin"):
        strategies.check_pixel_budget({}, images, InpaintParams(strategy="crop", crop_margin=600), 1_000_000)
    strategies.check_pixel_budget({}, {**images, "mask": np.zeros_like(hole)}, InpaintParams(strategy="original"), 64)  # no hole: no run


def test_pixel_budgets_are_settings_per_op():
    from service.config import Settings

    assert Limits(1).model_pixel_budget("inpaint", "inpaint") == 2048 * 2048
    settings = Settings(max_model_pixels=10_000, model_pixel_budgets={"inpaint.inpaint": 20_000, "ingan.retarget": 30_000})
    assert settings.limits().model_pixel_budget("inpaint", "inpaint") == 20_000
    assert settings.limits().model_pixel_budget("style", "project") == 10_000
    # an op's declared budget stands in for max_model_pixels, and the op's setting for both
    assert settings.limits().model_pixel_budget("ingan", "retarget", 50_000) == 30_000
    assert settings.limits().model_pixel_budget("style", "project", 50_000) == 50_000
    with pytest.raises(ValueError, match="known families"):
        Settings(model_pixel_budgets={"paint.inpaint": 20_000})
    from service.app import check_pixel_budgets

    with pytest.raises(ValueError, match="unknown ops"):  # ops are checked where the families load, not in Settings
        check_pixel_budgets(Settings(model_pixel_budgets={"inpaint.paint": 20_000}))


def test_the_changed_box_is_the_holes_bounding_box_and_nothing_outside_it_changes(model):
    image = _photo(96, 120)
    hole = _hole((96, 120), (10, 20, 8, 6), (60, 90, 20, 12))  # two holes: the box spans both
    box = strategies.bounding_box(hole)
    assert box.xywh() == [20, 10, 90 - 20 + 12, 60 - 10 + 20]
    result, _edges, _plan = _run(model, _task(image, hole, strategy="crop", crop_margin=8))
    outside = np.ones(hole.shape, bool)
    outside[box.slices] = False
    assert np.array_equal(result[outside], image[outside])  # output.region drops only unchanged pixels
    assert not np.array_equal(result[box.slices], image[box.slices])
