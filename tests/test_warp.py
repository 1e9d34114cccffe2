"""Soft-Gated Warping-GAN building blocks (deployments/warp): grids, pose encoding, the gated warp, shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deployments.warp import geometry
from deployments.warp.networks import NUM_PARSING_CLASSES, SoftGatedWarpingBlock, WarpConfig, WarpingGAN
from deployments.warp.pose import pose_heatmaps


def _affine(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return geometry.IDENTITY_AFFINE + 0.1 * torch.randn(n, 2, 3, generator=g)


def test_tps_with_zero_offsets_is_the_identity():
    tps = geometry.TpsGridGenerator(32, 16)
    grid = tps(torch.zeros(2, tps.num_params))
    assert grid.shape == (2, 32, 16, 2)
    assert torch.allclose(grid, geometry.identity_grid(2, 32, 16), atol=1e-5)


def test_tps_reproduces_an_affine_map_exactly_and_bends_for_other_offsets():
    tps = geometry.TpsGridGenerator(24, 24)
    theta = _affine(2, 0)
    moved = geometry.apply_affine(theta, tps.control.expand(2, -1, -1))
    grid = tps(moved - tps.control)
    assert torch.allclose(grid, geometry.affine_grid(theta, 24, 24), atol=1e-4), "no bending for an affine motion"
    offsets = torch.zeros(1, 9, 2)
    offsets[0, 4] = torch.tensor([0.2, -0.1])  # move only the centre control point
    bent = tps(offsets)[0]
    assert torch.allclose(bent[12, 12], torch.tensor([0.0, 0.0]) + torch.tensor([0.2, -0.1]), atol=0.05), "the centre moves with its point"
    assert torch.allclose(bent[0, 0], geometry.identity_grid(1, 24, 24)[0, 0, 0], atol=0.02), "corners stay near their points"


def test_affine_then_tps_composition():
    n, h, w = 2, 32, 32
    tps = geometry.TpsGridGenerator(h, w)
    theta = _affine(n, 1)
    offsets = 0.05 * torch.randn(n, tps.num_params, generator=torch.Generator().manual_seed(2))
    inner, outer = tps(offsets), geometry.affine_grid(theta, h, w)
    composed = geometry.compose_grids(outer, inner)
    # the affine map is linear, so bilinear sampling of its grid is exact between pixel centres
    centre_range = 1 - 1 / w
    interior = (inner.abs() < centre_range).all(-1)
    assert interior.float().mean() > 0.8
    assert torch.allclose(composed[interior], geometry.apply_affine(theta, inner)[interior], atol=1e-5)
    assert torch.allclose(geometry.compose_grids(geometry.identity_grid(n, h, w), inner)[interior], inner[interior], atol=1e-5)
    # warping twice (TPS-warp the affine-warped image) approximates one warp by the composed grid
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    image = torch.stack([torch.sin(2 * xs), torch.cos(3 * ys), xs * ys])[None].expand(n, -1, -1, -1)
    twice = F.grid_sample(F.grid_sample(image, outer, align_corners=False), inner, align_corners=False)
    once = F.grid_sample(image, composed, align_corners=False)
    inside = interior & (composed.abs() < centre_range).all(-1)
    error = (twice - once).abs().permute(0, 2, 3, 1)[inside]
    # equal up to the second interpolation (and the zero padding its border pixels read): small almost everywhere
    assert error.mean() < 0.01 and error.quantile(0.95) < 0.02


def test_heatmaps_peak_on_visible_joints_and_are_empty_for_invisible_ones():
    keypoints = torch.zeros(2, 18, 2)
    keypoints[:, :, 0], keypoints[:, :, 1] = 10.0, 20.0
    visible = torch.ones(2, 18, dtype=torch.bool)
    visible[1, 5] = False
    maps = pose_heatmaps(keypoints, visible, 32, 16, sigma=2.0)
    assert maps.shape == (2, 18, 32, 16)
    assert maps[0, 5, 20, 10] == 1.0 and maps[0, 5].argmax() == 20 * 16 + 10
    assert maps[1, 5].abs().sum() == 0, "an invisible joint's channel is empty"
    assert maps[0, 5, 20, 14] < maps[0, 5, 20, 12] < 1.0


def test_the_soft_gate_leaves_features_unwarped_without_a_pose_change():
    torch.manual_seed(0)
    block = SoftGatedWarpingBlock(8)
    features = torch.randn(2, 8, 16, 8)
    shifted = geometry.affine_grid(geometry.IDENTITY_AFFINE.expand(2, 2, 3) + torch.tensor([[0.0, 0.0, 0.3], [0.0, 0.0, 0.0]]), 64, 32)
    no_change = torch.zeros(2, 18, 64, 32)
    assert torch.equal(block(features, shifted, no_change), features), "zero pose difference: exactly the input"
    change = torch.rand(2, 18, 64, 32)
    assert not torch.allclose(block(features, shifted, change), features), "a pose change lets the warp through"
    identity = geometry.identity_grid(2, 64, 32)
    assert torch.allclose(block(features, identity, change), features, atol=1e-5), "an identity grid warps nothing"


def test_pose_transfer_model_shapes_and_an_untrained_aligner_is_the_identity():
    torch.manual_seed(0)
    config = WarpConfig(height=64, width=32, parser_channels=8, parser_blocks=2, matcher_channels=8, renderer_channels=8, renderer_blocks=1)
    model = WarpingGAN(config).eval()
    image = torch.rand(2, 3, 64, 32) * 2 - 1
    parsing = F.one_hot(torch.randint(NUM_PARSING_CLASSES, (2, 64, 32)), NUM_PARSING_CLASSES).permute(0, 3, 1, 2).float()
    pose, target_pose = torch.rand(2, 18, 64, 32), torch.rand(2, 18, 64, 32)
    with torch.no_grad():
        out = model(image, parsing, pose, target_pose)
    assert out["image"].shape == (2, 3, 64, 32) and out["image"].abs().max() <= 1
    assert out["parsing_logits"].shape == (2, NUM_PARSING_CLASSES, 64, 32)
    assert torch.allclose(out["target_parsing"].sum(1), torch.ones(2, 64, 32), atol=1e-5)
    assert torch.allclose(out["grid"], geometry.identity_grid(2, 64, 32), atol=1e-4), "matchers start at the identity"
    ablation = WarpingGAN(dataclasses_replace(config, warping=False))
    assert ablation.renderer.warp is None and ablation(image, parsing, pose, target_pose)["image"].shape == (2, 3, 64, 32)


def dataclasses_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


# A model small enough to train a step in a test, shared by the trainer and quality-script tests
TINY_WARP = (
    "--batch 2 --height 32 --width 16 --parser-channels 4 --parser-blocks 1 --matcher-channels 4 "
    "--renderer-channels 4 --renderer-blocks 1 --d-width 4 --threads 1"
).split()


def test_trainer_runs_resumes_and_exports_a_loadable_checkpoint(tmp_path):
    import json

    from safetensors.torch import load_file

    from training import train_warp

    tiny = [*TINY_WARP, *"--preview 2 --log-every 1 --work".split(), str(tmp_path / "work")]
    first = train_warp.main(["--out", str(tmp_path / "model"), "--steps", "2", *tiny])
    assert first["step"] == 2 and (tmp_path / "work" / "snapshot.pt").exists()
    resumed = train_warp.main(["--out", str(tmp_path / "model"), "--steps", "3", "--resume", *tiny])
    assert resumed["step"] == 3 and resumed["seen"] == 6, "resumed from the snapshot, one more step"
    exported = train_warp.main(["--out", str(tmp_path / "model"), "--steps", "9", "--resume", "--export-only", *tiny])
    assert exported["step"] == 3, "export-only writes the snapshot's model without training"
    manifest = json.loads((tmp_path / "model" / "model.json").read_text())
    assert manifest["family"] == "warp" and manifest["ops"] == ["pose_transfer"] and manifest["image_size"] == [32, 16]
    model = WarpingGAN(WarpConfig(**manifest["arch"]))
    model.load_state_dict(load_file(tmp_path / "model" / "weights.safetensors"), strict=True)
    assert (tmp_path / "model" / "samples.png").exists() and "python -m training.train_warp" in (
        tmp_path / "model" / "README.md"
    ).read_text()
    batch = train_warp.heldout_batch(2, 32, 16)
    assert torch.equal(batch.target_image, train_warp.heldout_batch(2, 32, 16).target_image), "the held-out set is fixed"
    ablation = train_warp.main(
        ["--out", str(tmp_path / "ablation"), "--steps", "1", "--no-warping", *tiny[:-2], "--work", str(tmp_path / "work-ablation")]
    )
    assert ablation["config"].warping is False and ablation["model"].renderer.warp is None


def test_quality_script_scores_checkpoints_against_the_ground_truth(tmp_path):
    import json

    from deployments.warp.checkpoint import load_model
    from training import train_warp, warp_quality

    tiny = [*TINY_WARP, *"--steps 1 --preview 1".split()]
    train_warp.main(["--out", str(tmp_path / "full"), *tiny])
    train_warp.main(["--out", str(tmp_path / "ablation"), "--no-warping", *tiny])
    results = warp_quality.main(["--models", f"{tmp_path / 'full'},{tmp_path / 'ablation'}", "--n", "3", "--out", str(tmp_path / "q.json")])
    assert [r["warping"] for r in results] == [True, False]
    assert all(0 < r["l1"] < 1 and -1 <= r["ssim"] <= 1 and 0 <= r["parsing_accuracy"] <= 1 for r in results)
    assert json.loads((tmp_path / "q.json").read_text())["results"][0]["pairs"] == 3
    assert "| `ablation` | no (ablation) |" in (tmp_path / "q.md").read_text()
    manifest = json.loads((tmp_path / "full" / "model.json").read_text())
    with pytest.raises(ValueError, match="unknown fields"):
        load_model(b"", {**manifest, "arch": {**manifest["arch"], "layers": 3}})
    with pytest.raises(ValueError, match="format"):
        load_model(b"", {**manifest, "format": "edgeconnect"})
