"""training.data.inpaint_data: hole masks, training batches, and the held-out split."""

from __future__ import annotations

import pytest
import torch

from training.data import inpaint_data as D


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_masks_shape_binary_and_hole_ratio():
    masks = D.random_masks(48, 64, _gen(0))
    assert masks.shape == (48, 1, 64, 64) and masks.dtype == torch.float32
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    ratios = masks.mean(dim=(1, 2, 3))
    assert (ratios >= D.MIN_HOLE).all() and (ratios <= D.MAX_HOLE).all()
    assert ratios.std() > 0.01  # varied, not one shape


def test_masks_other_size_and_bounds():
    masks = D.random_masks(8, 32, _gen(3), min_hole=0.2, max_hole=0.3)
    assert masks.shape == (8, 1, 32, 32)
    ratios = masks.mean(dim=(1, 2, 3))
    assert (ratios >= 0.2).all() and (ratios <= 0.3).all()
    with pytest.raises(ValueError):
        D.random_masks(1, 32, _gen(0), min_hole=0.5, max_hole=0.4)


def test_masks_deterministic_per_seed():
    assert torch.equal(D.random_masks(6, 64, _gen(7)), D.random_masks(6, 64, _gen(7)))
    assert not torch.equal(D.random_masks(6, 64, _gen(7)), D.random_masks(6, 64, _gen(8)))


def test_training_images_shape_range_deterministic():
    a = D.training_images(12, 64, _gen(1))
    b = D.training_images(12, 64, _gen(1))
    assert a.shape == (12, 3, 64, 64) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, D.training_images(12, 64, _gen(2)))
    assert D.training_images(4, 32, _gen(0), face_fraction=0.0).shape == (4, 3, 32, 32)
    assert D.training_images(4, 32, _gen(0), face_fraction=1.0).shape == (4, 3, 32, 32)


def test_edges_binary():
    images = D.training_images(4, 64, _gen(0))
    masks = D.random_masks(4, 64, _gen(0))
    full = D.train_edges(images)
    outside = D.service_edges(images, masks)
    assert full.shape == outside.shape == (4, 1, 64, 64)
    assert set(full.unique().tolist()) <= {0.0, 1.0} and full.sum() > 0
    assert (outside * masks).sum() == 0  # the service's edges never reach into the hole


def test_heldout_photos_never_sampled_in_training(monkeypatch):
    assert not set(D.HELDOUT_PHOTOS) & set(D.TRAIN_PHOTOS)
    assert not set(D.EXCLUDED_PHOTOS) & set(D.TRAIN_PHOTOS)  # skimage.data.cat is chelsea
    requested: list[str] = []
    original = D.photo

    def spy(name: str) -> torch.Tensor:
        requested.append(name)
        return original(name)

    monkeypatch.setattr(D, "photo", spy)
    D.training_images(64, 32, _gen(0), face_fraction=0.0)
    assert requested and set(requested) <= set(D.TRAIN_PHOTOS)
    with pytest.raises(ValueError):
        original("cat")


def test_heldout_set_deterministic_and_split():
    a = D.heldout_set(8, 64, seed=0)
    b = D.heldout_set(8, 64, seed=0)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert a.images.shape == (8, 3, 64, 64) and a.masks.shape == (8, 1, 64, 64)
    assert a.sources.count("faces") == 4 and a.sources.count("photos") == 4
    photo_names = {n for n, s in zip(a.names, a.sources) if s == "photos"}
    assert photo_names <= set(D.HELDOUT_PHOTOS)
    face_seeds = [int(n.split(":")[1]) for n, s in zip(a.names, a.sources) if s == "faces"]
    assert min(face_seeds) >= D.HELDOUT_FACE_SEED
