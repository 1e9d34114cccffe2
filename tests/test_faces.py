"""Tests of the procedural face renderer ``training.data.faces`` (CPU, fast, no timing)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from training.data import faces
from training.data.faces import PARTS, FaceBatch, render_faces


@pytest.fixture(scope="module")
def batch() -> FaceBatch:
    return render_faces(32, 64, seed=123)


@pytest.mark.parametrize("resolution, supersample", [(64, 2), (32, 2), (17, 3), (16, 1)])
def test_shapes_dtypes_range(resolution: int, supersample: int) -> None:
    out = render_faces(5, resolution, seed=0, supersample=supersample)
    assert out.images.shape == (5, 3, resolution, resolution) and out.images.dtype == torch.float32
    assert out.masks.shape == (5, len(PARTS), resolution, resolution) and out.masks.dtype == torch.bool
    assert out.images.min() >= -1 and out.images.max() <= 1
    assert torch.isfinite(out.images).all()
    assert (out.masks.sum(1) == 1).all()


def test_masks_are_a_partition(batch: FaceBatch) -> None:
    assert (batch.masks.sum(1) == 1).all()


def test_part_mask(batch: FaceBatch) -> None:
    for i, name in enumerate(PARTS):
        assert torch.equal(batch.part_mask(name), batch.masks[:, i])
    with pytest.raises(ValueError, match="eyes"):
        batch.part_mask("ears")


def test_same_seed_same_batch_and_different_seeds_differ() -> None:
    a, b, c = render_faces(6, 32, seed=7), render_faces(6, 32, seed=7), render_faces(6, 32, seed=8)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, c.images)
    # a seeded generator is the same randomness as the seed, and advances between calls
    g = torch.Generator().manual_seed(7)
    assert torch.equal(render_faces(6, 32, generator=g).images, a.images)
    assert not torch.equal(render_faces(6, 32, generator=g).images, a.images)
    # samples within a batch differ too
    assert not torch.equal(a.images[0], a.images[1])


def test_every_sample_has_the_main_parts(batch: FaceBatch) -> None:
    for name in ("background", "skin", "eyes", "mouth", "nose"):
        pixels = batch.part_mask(name).flatten(1).sum(1)
        assert (pixels > 0).all(), f"{name} missing in samples {torch.nonzero(pixels == 0).flatten().tolist()}"
    # big enough to matter at 64 px: two eyes of ~5-8 px, a mouth of ~12-20 px width
    assert batch.part_mask("eyes").flatten(1).sum(1).min() >= 20
    mouth_cols = batch.part_mask("mouth").any(1).sum(1)
    assert mouth_cols.min() >= 10 and mouth_cols.max() <= 24


def test_eyes_are_left_right_symmetric(batch: FaceBatch) -> None:
    eyes = batch.part_mask("eyes").float()
    half = eyes.shape[-1] // 2
    left, right = eyes[..., :half].sum((1, 2)), eyes[..., half:].sum((1, 2))
    assert (left > 0).all() and (right > 0).all()
    ratio = left / right
    assert ((ratio > 0.6) & (ratio < 1 / 0.6)).all(), ratio


def test_mouth_colour_differs_from_skin(batch: FaceBatch) -> None:
    def mean_colour(name: str) -> torch.Tensor:  # (N, 3)
        m = batch.part_mask(name).unsqueeze(1).float()
        return (batch.images * m).sum((2, 3)) / m.sum((2, 3))

    distance = (mean_colour("mouth") - mean_colour("skin")).norm(dim=1)
    assert distance.mean() > 0.15 and (distance > 0.05).all(), distance


def test_hair_styles_vary() -> None:
    hair = render_faces(64, 32, seed=1).part_mask("hair").flatten(1).float().mean(1)
    assert (hair == 0).any()  # bald heads
    assert hair.max() > 2 * hair[hair > 0].min()  # long hair has far more pixels than a cap


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "n must"),
    (dict(n=2.0), "n must"),
    (dict(n=True), "n must"),
    (dict(n=2, resolution=8), "resolution"),
    (dict(n=2, resolution=64.0), "resolution"),
    (dict(n=2, supersample=0), "supersample"),
    (dict(n=2, seed=1, generator=torch.Generator()), "either seed or generator"),
    (dict(n=2, seed=-1), "seed"),
    (dict(n=2, seed="1"), "seed"),
    (dict(n=2, generator=1), "generator"),
])
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_faces(**kwargs)


def test_cli_writes_grids(tmp_path) -> None:
    faces.main(["--out", str(tmp_path / "preview"), "--n", "5", "--resolution", "32", "--seed", "1", "--scale", "1"])
    for name in ("faces.png", "parts.png"):
        with Image.open(tmp_path / "preview" / name) as image:
            assert image.size == (3 * 34, 2 * 34)  # 3 columns, 2 rows of 32 px tiles with a 2 px gap
