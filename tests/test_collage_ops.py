"""Neural Collage on the SNGAN-projection generator: Chainer format, sCBN and feature-blending identities, projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deployments.collage import ops
from deployments.collage.checkpoint import export, load_generator, load_sngan_npz, save_sngan_npz
from deployments.collage.conditioning import ClassMixture
from deployments.collage.sngan import SNGANConfig, SNGANGenerator

K = 4
CONFIG = SNGANConfig(z_dim=16, n_classes=K, ch=4, channel_multipliers=(8, 4, 2, 1))  # 32 px, 3 blocks


def random_sngan(seed: int = 0, config: SNGANConfig = CONFIG) -> SNGANGenerator:
    """Random weights with class tables and running statistics far from their init, as after training."""
    torch.manual_seed(seed)
    generator = SNGANGenerator(config)
    with torch.no_grad():
        for name, tensor in generator.state_dict().items():
            if name.endswith(("gammas", "weight")) and "b" in name.split(".")[0][:1] and tensor.dim() == 1:
                tensor.normal_(1.0, 0.2)
            if name.endswith("gammas"):
                tensor.normal_(1.0, 0.3)
            elif name.endswith("betas") or name.endswith(("avg_mean", "running_mean")):
                tensor.normal_(0.0, 0.3)
            elif name.endswith(("avg_var", "running_var")):
                tensor.uniform_(0.5, 2.0)
    return generator.eval()


@pytest.fixture(scope="module")
def generator() -> SNGANGenerator:
    return random_sngan()


def one_hot(indices: list[int]) -> torch.Tensor:
    return F.one_hot(torch.tensor(indices), K).float()


def test_shapes_resolution_and_eval_determinism(generator):
    z = ops.truncated_latents([1, 2, 3], CONFIG.z_dim)
    images = generator(z, one_hot([0, 1, 3]))
    assert images.shape == (3, 3, 32, 32) and images.abs().max() <= 1
    assert generator.block_resolutions == [8, 16, 32] and generator.n_blocks == 3
    assert torch.equal(images, generator(z, one_hot([0, 1, 3])))


def test_chainer_npz_round_trip_with_snapshot_prefix(generator, tmp_path):
    path = tmp_path / "gen.npz"
    save_sngan_npz(generator, path, prefix="updater/model:gen/")
    with np.load(path) as npz:
        assert "updater/model:gen/block2/b1/gammas/W" in npz.files and npz["updater/model:gen/l1/W"].shape == (32 * 16, 16)
    loaded = load_sngan_npz(path)
    assert loaded.config == CONFIG
    z = ops.truncated_latents([4, 5], CONFIG.z_dim)
    # the .npz keeps the float32 tensors as they are (no spectral norm to fold, no re-layout): the same module class
    # on the same bytes runs the same kernels, bit-exact on any CPU
    assert torch.equal(loaded(z, one_hot([2, 1])), generator(z, one_hot([2, 1])))


def test_chainer_npz_with_a_missing_link_is_refused(generator, tmp_path):
    path = tmp_path / "gen.npz"
    save_sngan_npz(generator, path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "block3/c2/W"}
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(ValueError, match="missing"):
        load_sngan_npz(tmp_path / "broken.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="l1/W"):
        load_sngan_npz(tmp_path / "other.npz")


def test_project_format_round_trip(generator, tmp_path):
    manifest = export(generator, tmp_path / "m", name="collage-test", classes=["a", "b", "c", "d"])
    assert manifest["layers"] == ["block0", "block1", "block2"] and manifest["classes"] == ["a", "b", "c", "d"]
    loaded = load_generator((tmp_path / "m" / "weights.safetensors").read_bytes(), manifest)
    z = ops.truncated_latents([9], CONFIG.z_dim)
    assert torch.equal(loaded(z, one_hot([3])), generator(z, one_hot([3])))


def test_truncated_latents_are_per_seed_and_bounded():
    batch = ops.truncated_latents([7, 8, 9], 64, truncation=0.5)
    assert torch.equal(batch[1], ops.truncated_latents([8], 64, truncation=0.5)[0])
    assert batch.abs().max() <= 1.0
    with pytest.raises(ValueError):
        ops.truncated_latents([1], 8, truncation=0.0)


# ---- sCBN --------------------------------------------------------------------------------------


def _mixture_everywhere(classes: torch.Tensor) -> ClassMixture:
    return ClassMixture(torch.ones(classes.shape[0], 1, 32, 32), classes[:, None])


def test_scbn_with_the_base_class_everywhere_equals_plain_cbn(generator):
    z, base = ops.truncated_latents([1, 2], CONFIG.z_dim), one_hot([0, 2])
    mixture = ops.spatial_class_weights(base, [torch.ones(1, 32, 32)] * 2, [one_hot([0]), one_hot([2])], [torch.ones(1)] * 2)
    all_blocks = torch.ones(2, 3, dtype=torch.bool)
    torch.testing.assert_close(ops.label_collage(generator, z, base, mixture, all_blocks), generator(z, base), rtol=0, atol=1e-5)


def test_scbn_with_class_c_everywhere_equals_sampling_class_c(generator):
    z, base, target = ops.truncated_latents([3, 4], CONFIG.z_dim), one_hot([0, 1]), one_hot([3, 2])
    mixture = ops.spatial_class_weights(base, [torch.ones(1, 32, 32)] * 2, [target[:1], target[1:]], [torch.ones(1)] * 2)
    edited = ops.label_collage(generator, z, base, mixture, torch.ones(2, 3, dtype=torch.bool))
    torch.testing.assert_close(edited, generator(z, target), rtol=0, atol=1e-5)
    # dense maps and mixtures are the same condition
    dense = [_mixture_everywhere(target).dense()] * 3
    torch.testing.assert_close(generator(z, base, class_maps=dense), generator(z, target), rtol=0, atol=1e-5)


def test_scbn_region_changes_mostly_inside_and_layers_matter(generator):
    z, base = ops.truncated_latents([5], CONFIG.z_dim), one_hot([0])
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:20, 6:26] = 1
    mixture = ops.spatial_class_weights(base, [mask], [one_hot([3])], [torch.ones(1)])
    plain = generator(z, base)
    late = ops.label_collage(generator, z, base, mixture, torch.tensor([[False, False, True]]))
    change = (late - plain).abs().sum(1)[0]
    # Only the last block: its CBNs act at 16 and 32 px and three 3x3 convs follow, so the change
    # stays within a few pixels of the region.
    near = F.max_pool2d(mask[None], 9, stride=1, padding=4)[0, 0] > 0
    assert change[near].sum() / change.sum() > 0.97
    early = ops.label_collage(generator, z, base, mixture, torch.tensor([[True, False, False]]))
    assert not torch.allclose(early, late, atol=1e-3)
    none = ops.label_collage(generator, z, base, mixture, torch.zeros(1, 3, dtype=torch.bool))
    assert torch.equal(none, plain)  # no block edited: no class maps, the plain forward itself


def test_spatial_class_weights_sum_to_one_with_overlaps_and_intensity():
    base = one_hot([0])
    a, b = torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)
    a[0, :, :3], b[0, :, 1:] = 1, 1  # overlap in columns 1-2
    mixture = ops.spatial_class_weights(base, [torch.cat([a, b])], [one_hot([1, 2])], [torch.tensor([1.0, 0.5])])
    torch.testing.assert_close(mixture.weights.sum(1), torch.ones(1, 4, 4))
    assert mixture.weights[0, 1, 0, 0] == 1 and mixture.weights[0, 0, 0, 0] == 0  # only a
    assert mixture.weights[0, 2, 0, 3] == 0.5 and mixture.weights[0, 0, 0, 3] == 0.5  # only b, half intensity
    torch.testing.assert_close(mixture.weights[0, 1:, 0, 1], torch.tensor([2 / 3, 1 / 3]))  # 1 + 0.5 scaled to 1
    dense = mixture.dense()
    assert dense.shape == (1, K, 4, 4) and torch.allclose(dense.sum(1), torch.ones(1, 4, 4))


def test_label_collage_batch_equals_one_by_one(generator):
    z, base = ops.truncated_latents([1, 2, 3], CONFIG.z_dim), one_hot([0, 1, 2])
    masks = [torch.rand(1, 32, 32), torch.rand(2, 32, 32), torch.zeros(0, 32, 32)]
    classes = [one_hot([3]), one_hot([0, 2]), torch.zeros(0, K)]
    intensity = [torch.tensor([0.7]), torch.tensor([1.0, 0.4]), torch.zeros(0)]
    blocks = torch.tensor([[True, True, False], [False, True, True], [True, False, False]])
    batched = ops.label_collage(generator, z, base, ops.spatial_class_weights(base, masks, classes, intensity), blocks)
    for i in range(3):
        single = ops.spatial_class_weights(base[i : i + 1], masks[i : i + 1], classes[i : i + 1], intensity[i : i + 1])
        one = ops.label_collage(generator, z[i : i + 1], base[i : i + 1], single, blocks[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], one, rtol=0, atol=1e-5)


# ---- feature blending --------------------------------------------------------------------------


def _blend(generator, z, classes, z_ref, classes_ref, mask_value: float, blocks: list[bool], shift=(0, 0)):
    _, features = ops.block_features(generator, z_ref, classes_ref)
    masks = torch.full((1, 32, 32), mask_value)
    return ops.feature_collage(generator, z, classes, features, torch.tensor([0]), masks, torch.tensor([blocks]), torch.tensor([shift]))


def test_feature_blending_zero_mask_returns_the_base(generator):
    z, z_ref = ops.truncated_latents([1], CONFIG.z_dim), ops.truncated_latents([2], CONFIG.z_dim)
    out = _blend(generator, z, one_hot([0]), z_ref, one_hot([1]), 0.0, [True, True, True])
    assert torch.equal(out, generator(z, one_hot([0])))  # (1 - 0) * h + 0 * ref is h exactly, then the same forward


def test_feature_blending_one_mask_returns_the_reference_at_that_layer(generator):
    z, z_ref = ops.truncated_latents([1], CONFIG.z_dim), ops.truncated_latents([2], CONFIG.z_dim)
    reference_image, reference_features = ops.block_features(generator, z_ref, one_hot([1]))
    blended = _blend(generator, z, one_hot([3]), z_ref, one_hot([1]), 1.0, [False, True, False])
    # = the base's forward continued from the reference's block-1 features (later CBNs: base class)
    expected = generator(z, one_hot([3]), feature_edit=lambda b, h: reference_features[1] if b == 1 else h)
    torch.testing.assert_close(blended, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(blended, reference_image, atol=1e-3)
    same_class = _blend(generator, z, one_hot([1]), z_ref, one_hot([1]), 1.0, [False, True, False])
    torch.testing.assert_close(same_class, reference_image, rtol=0, atol=1e-6)


def test_shift_moves_features_and_fills_zeros():
    features = torch.arange(16.0).view(1, 4, 4)
    moved = ops.shift_features(features, 1, 2)
    assert torch.equal(moved[0, 2:, 1:], features[0, :2, :3])
    assert moved[0, :2].abs().sum() == 0 and moved[0, :, 0].abs().sum() == 0
    assert torch.equal(ops.shift_features(features, -1, 0)[0, :, :3], features[0, :, 1:])
    assert ops.shift_features(features, 4, 0).abs().sum() == 0


def test_shifted_reference_equals_reference_of_shifted_features(generator):
    """With a full mask at block 0 only, the base continues from the reference's shifted features."""
    z, z_ref = ops.truncated_latents([1], CONFIG.z_dim), ops.truncated_latents([2], CONFIG.z_dim)
    _, features = ops.block_features(generator, z_ref, one_hot([1]))
    out = _blend(generator, z, one_hot([1]), z_ref, one_hot([1]), 1.0, [True, False, False], shift=(8, -4))
    expected = generator(z_ref, one_hot([1]), feature_edit=lambda b, h: ops.shift_features(features[0], 2, -1) if b == 0 else h)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)  # 8 px at 32 -> 2 at 8 px


# ---- projection ----------------------------------------------------------------------------------


def test_projection_finds_the_class_and_fits(generator):
    z_true = ops.truncated_latents([11, 12], CONFIG.z_dim, truncation=0.7)
    with torch.no_grad():
        targets = generator(z_true, one_hot([2, 1]))
    trace = []
    fit = ops.project(
        generator, targets, [[0, 1, 2, 3], [1]], steps=60, learning_rate=0.05, on_step=lambda step, errors: trace.append(errors)
    )
    assert fit["class_index"].tolist()[1] == 1
    assert fit["class_index"].tolist()[0] == min(fit["candidate_errors"][0], key=fit["candidate_errors"][0].get)
    start = ops.reconstruction_error(generator(ops.truncated_latents([0, 1], CONFIG.z_dim) * 0.5, one_hot([2, 1])), targets)
    assert (fit["error"] < 0.5 * start.detach()).all()
    assert all(p.requires_grad for p in generator.parameters())  # frozen only while fitting


def test_locality_measure_and_region_masks(generator):
    from training.collage_locality import measure, region_masks

    masks = region_masks(32, n=64)
    assert set(masks) == {"eyes", "mouth"} and masks["eyes"].dtype == np.uint8 and 0 < (masks["eyes"] > 0).mean() < 0.3
    everywhere = measure(generator, torch.ones(32, 32), seeds=[1, 2], blocks=None)
    assert everywhere["inside"] == pytest.approx(1.0) and everywhere["toward_target"] == pytest.approx(0.0, abs=1e-4)
    eyes = measure(generator, torch.from_numpy(masks["eyes"]).float() / 255, seeds=[1, 2], blocks=[2])
    assert 0 < eyes["inside"] < eyes["near"] <= 1 and eyes["edits"] == 2 * K * (K - 1)
