"""Tests of the procedural face renderer ``training.data.faces`` (CPU, fast, no timing)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from training.data import faces
from training.data.faces import PARTS, SPECIES, FaceBatch, render_faces, render_species_faces


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


@pytest.mark.parametrize(
    "kwargs, message",
    [
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
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_faces(**kwargs)


def test_cli_writes_grids(tmp_path) -> None:
    faces.main(["--out", str(tmp_path / "preview"), "--n", "5", "--resolution", "32", "--seed", "1", "--scale", "1"])
    for name in ("faces.png", "parts.png"):
        with Image.open(tmp_path / "preview" / name) as image:
            assert image.size == (3 * 34, 2 * 34)  # 3 columns, 2 rows of 32 px tiles with a 2 px gap


# --- the old path is unchanged by the species path ----------------------------------------------


def test_render_faces_unchanged_by_species_support() -> None:
    """render_faces(16, 32, seed=0) against its output from before species were added, kept in tests/data (images as
    float16, masks as bits; the float32 images then had SHA-256 b581ea26116f..., the masks bbb1283e9f25...)."""
    import numpy as np

    batch = render_faces(16, 32, seed=0)
    assert batch.species is None
    with np.load(Path(__file__).parent / "data" / "render_faces_16x32_seed0.npz") as reference:
        images = torch.from_numpy(reference["images"].astype(np.float32))
        masks = torch.from_numpy(np.unpackbits(reference["masks"])[: batch.masks.numel()].reshape(batch.masks.shape) == 1)
    # Not a hash of the float32 bytes: torch.sin & co. round differently with other vector widths (2.4e-7 apart with
    # ATEN_CPU_CAPABILITY=default). float16 storage is within 2.4e-4 of values in [-1, 1], so 1e-3 is a close match;
    # a sub-sample right on a shape's edge may land on the other side there, which moves its pixel by a fraction of a
    # colour step and can flip its part: a few such pixels are allowed, a changed drawing changes hundreds.
    off_pixels = ((batch.images - images).abs() > 1e-3).any(1)
    assert off_pixels.sum() <= 4, f"{int(off_pixels.sum())} pixels differ"
    assert (batch.masks != masks).any(1).sum() <= 4


# --- species faces ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def per_species() -> list[FaceBatch]:
    """32 faces of each species at 64 px, the same seed (so the same colours, hair, background)."""
    return [render_species_faces(32, 64, seed=5, species=[s] * 32) for s in range(len(SPECIES))]


def test_species_names() -> None:
    assert len(SPECIES) >= 4 and len(set(SPECIES)) == len(SPECIES)


@pytest.mark.parametrize("resolution", [32, 64])
def test_species_ids_respected_and_masks_partition(resolution: int) -> None:
    ids = [3, 0, 1, 2, 2, 1, 0, 3]
    out = render_species_faces(8, resolution, seed=0, species=ids)
    assert out.species.dtype == torch.long and out.species.tolist() == ids
    assert out.images.shape == (8, 3, resolution, resolution) and out.masks.shape == (8, len(PARTS), resolution, resolution)
    assert out.images.min() >= -1 and out.images.max() <= 1
    assert (out.masks.sum(1) == 1).all()
    assert torch.equal(render_species_faces(8, resolution, seed=0, species=torch.tensor(ids)).images, out.images)


def test_species_deterministic_per_seed_and_drawn_uniformly() -> None:
    a, b = render_species_faces(6, 32, seed=7), render_species_faces(6, 32, seed=7)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and torch.equal(a.species, b.species)
    assert not torch.equal(render_species_faces(6, 32, seed=8).images, a.images)
    g = torch.Generator().manual_seed(7)
    assert torch.equal(render_species_faces(6, 32, generator=g).images, a.images)
    assert not torch.equal(render_species_faces(6, 32, generator=g).images, a.images)
    counts = torch.bincount(render_species_faces(400, 16, seed=1, supersample=1).species, minlength=len(SPECIES))
    assert len(counts) == len(SPECIES) and (counts > 60).all(), counts


def test_species_share_everything_but_shape(per_species: list[FaceBatch]) -> None:
    # same seed: the same background (the top-left corner is background for every species)
    corners = [b.images[:, :, 0, 0] for b in per_species]
    # exact: where a species' shapes are not drawn they enter multiplied by 0, and the rest is the same draws through
    # the same elementwise ops at the same place of same-shaped tensors
    assert all(torch.equal(c, corners[0]) for c in corners[1:])
    assert all(b.part_mask("background")[:, 0, 0].all() for b in per_species)
    # ... but different faces
    assert not torch.equal(per_species[0].images, per_species[1].images)


def test_species_differ_in_eyes_mouth_and_head(per_species: list[FaceBatch]) -> None:
    def stats(b: FaceBatch) -> dict:
        eyes, mouth = b.part_mask("eyes"), b.part_mask("mouth")
        return dict(
            eye_area=eyes.flatten(1).sum(1).float().mean(),
            eye_aspect=(eyes.any(1).sum(1) / eyes.any(2).sum(1).clamp(min=1)).float().mean(),
            mouth_w=mouth.any(1).sum(1).float().mean(),
        )

    st = {name: stats(b) for name, b in zip(SPECIES, per_species)}
    # every face has two eyes, a mouth and a nose of a few pixels
    for b in per_species:
        assert (b.part_mask("eyes").flatten(1).sum(1) >= 20).all()
        assert (b.part_mask("mouth").flatten(1).sum(1) >= 6).all()
    assert st["owl"]["eye_area"] > 1.1 * st["frog"]["eye_area"] > 1.5 * st["cat"]["eye_area"]
    assert st["cat"]["eye_area"] > 1.4 * st["round"]["eye_area"]
    assert st["cat"]["eye_aspect"] > 1.5 * st["owl"]["eye_aspect"]  # long narrow slits vs circles
    assert st["frog"]["mouth_w"] > 1.5 * st["round"]["mouth_w"] > 2 * st["cat"]["mouth_w"]
    # cats have pointed ears on top (hair part, fur): hair pixels even on the bald faces (the same
    # seed draws the same hair styles for every species)
    bald = per_species[SPECIES.index("round")].part_mask("hair").flatten(1).sum(1) == 0
    assert bald.any()
    assert (per_species[SPECIES.index("cat")].part_mask("hair")[bald].flatten(1).sum(1) >= 10).all()


@pytest.mark.parametrize(
    "species, message",
    [([0, 1], "species must be 3"), ([0, 1, 4], "species ids"), ([0, -1, 1], "species ids"), ([0.0, 1.0, 2.0], "integer")],
)
def test_species_invalid(species, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_species_faces(3, 32, seed=0, species=species)


def test_cli_species_grid(tmp_path) -> None:
    faces.main(["--out", str(tmp_path / "p"), "--species", "--n", "3", "--resolution", "32", "--scale", "1"])
    with Image.open(tmp_path / "p" / "faces.png") as image:
        assert image.size == (3 * 34, len(SPECIES) * 34)  # a row per species
