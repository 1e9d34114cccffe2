"""EdgeConnect generators, the official checkpoint format, and the inpainting pipeline (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deployments.inpaint import ops
from deployments.inpaint.checkpoint import EDGE_FILE, INPAINT_FILE, config_from_state_dict, export, load_model, load_official, save_official
from deployments.inpaint.edgeconnect import EdgeConnect, EdgeConnectConfig
from deployments.spectral_norm import spectral_norm_weight
from schemas.inpaint import InpaintParams, dilate_mask, fit_inpaint_images

CONFIG = EdgeConnectConfig(channels=4, residual_blocks=2)


def random_edgeconnect(seed: int = 0, config: EdgeConnectConfig = CONFIG) -> EdgeConnect:
    torch.manual_seed(seed)
    return EdgeConnect(config).eval()


@pytest.fixture(scope="module")
def model() -> EdgeConnect:
    return random_edgeconnect()


def _batch(height=30, width=26, n=2, seed=0):
    rng = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, height, width, generator=rng)
    masks = torch.zeros(n, 1, height, width)
    masks[:, :, 6:18, 5:15] = 1
    edges = (torch.rand(n, 1, height, width, generator=rng) > 0.9).float() * (1 - masks)
    return images, masks, edges


def test_official_layout_keys(model, tmp_path):
    save_official(model, tmp_path, iteration=7)
    edge = torch.load(tmp_path / EDGE_FILE, weights_only=True)
    inpaint = torch.load(tmp_path / INPAINT_FILE, weights_only=True)["generator"]
    assert edge["iteration"] == 7
    edge = edge["generator"]
    # spectral norm everywhere but the last conv; the residual convs of the edge generator have no bias
    assert {"encoder.1.weight_orig", "encoder.1.weight_u", "encoder.1.weight_v", "encoder.1.bias"} <= set(edge)
    assert "middle.0.conv_block.1.weight_orig" in edge and "middle.0.conv_block.1.bias" not in edge
    assert "decoder.7.weight" in edge and "decoder.7.weight_orig" not in edge
    assert {"encoder.1.weight", "middle.1.conv_block.5.bias", "decoder.0.weight", "decoder.7.bias"} <= set(inpaint)
    assert edge["decoder.7.weight"].shape == (1, 4, 7, 7) and inpaint["decoder.7.weight"].shape == (3, 4, 7, 7)
    assert inpaint["encoder.1.weight"].shape == (4, 4, 7, 7) and edge["encoder.1.weight_orig"].shape == (4, 3, 7, 7)
    assert config_from_state_dict(edge) == CONFIG


def test_official_files_load_with_identical_output(model, tmp_path):
    save_official(model, tmp_path)
    loaded = load_official(tmp_path)
    images, masks, edges = _batch()
    expected = ops.complete(model, images, masks, edges)
    got = ops.complete(loaded, images, masks, edges)
    # Not bit-exact: loading folds weight_orig / (u . (W v)), and the fp32 product can end an ulp (1.2e-7) off 1, where
    # depends on the CPU's dot/mv kernels. So: folded weights within 1e-6 relative (8 ulps), outputs in [0, 1] within
    # 1e-5 (they moved 5e-7 on an AVX-512 Xeon: 20x headroom).
    torch.testing.assert_close(loaded.state_dict(), model.state_dict(), rtol=1e-6, atol=0)
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("layer", [torch.nn.Conv2d(3, 5, 3), torch.nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1)])
def test_spectral_norm_folding_matches_torch(layer):
    torch.manual_seed(1)
    wrapped = torch.nn.utils.spectral_norm(layer)
    x = torch.randn(2, layer.in_channels, 8, 8)
    wrapped.train()
    for _ in range(3):  # power iterations move u and v away from their init
        wrapped(x)
    wrapped.eval()
    expected = wrapped(x)
    state = wrapped.state_dict()
    dim = 1 if isinstance(layer, torch.nn.ConvTranspose2d) else 0
    weight = spectral_norm_weight(state["weight_orig"], state["weight_u"], state["weight_v"], dim)
    plain = type(layer)(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride, padding=layer.padding)
    plain.load_state_dict({"weight": weight, "bias": state["bias"]})
    torch.testing.assert_close(plain(x), expected, rtol=0, atol=1e-5)


def test_broken_official_files_are_refused(model, tmp_path):
    save_official(model, tmp_path)
    data = torch.load(tmp_path / INPAINT_FILE, weights_only=True)
    del data["generator"]["decoder.3.weight"]
    torch.save(data, tmp_path / INPAINT_FILE)
    with pytest.raises(ValueError, match="missing"):
        load_official(tmp_path)
    (tmp_path / EDGE_FILE).unlink()
    with pytest.raises(FileNotFoundError):
        load_official(tmp_path)


def test_project_format_round_trip(model, tmp_path):
    manifest = export(model, tmp_path, name="inpaint-test")
    assert manifest["family"] == "inpaint" and manifest["arch"] == {"channels": 4, "residual_blocks": 2}
    loaded = load_model((tmp_path / "weights.safetensors").read_bytes(), manifest)
    images, masks, edges = _batch()
    # same weight bytes into the same module class, same inputs: the same kernels, bit-exact on any CPU
    assert torch.equal(ops.complete(loaded, images, masks, edges)[0], ops.complete(model, images, masks, edges)[0])


def test_complete_keeps_the_outside_and_takes_any_size(model):
    for height, width in [(30, 26), (32, 32), (5, 7)]:
        images, masks, edges = _batch(height, width)
        masks = torch.zeros_like(masks)
        masks[..., 1:4, 2:5] = 1
        for edge_map in ops.EDGE_MAPS:
            merged, completed = ops.complete(model, images, masks, edges, edge_map=edge_map)
            assert merged.shape == images.shape and completed.shape == masks.shape
            assert torch.equal(merged * (1 - masks), images * (1 - masks))  # outside the hole: the input
            assert 0 <= merged.min() and merged.max() <= 1
        assert torch.equal(completed * (1 - masks), edges * (1 - masks))  # composited: its own edges outside


@pytest.mark.parametrize("edge_map", ["generated", "composited"])
def test_user_edges_steer_the_hole(model, edge_map):
    images, masks, edges = _batch()
    plain, plain_edges = ops.complete(model, images, masks, edges, edge_map=edge_map)
    strokes = torch.zeros_like(masks)
    strokes[..., 12, :] = 1  # a horizontal line, through the hole and outside it
    steered, steered_edges = ops.complete(model, images, masks, edges, strokes, edge_map=edge_map)
    assert torch.all(steered_edges[..., 12, 5:15] == 1)  # inside the hole the stroke is an edge
    assert torch.equal(steered_edges * (1 - masks), plain_edges * (1 - masks))  # outside it is ignored
    assert not torch.allclose(steered, plain)


def _official_edge_inpaint(model, images, masks, edges, composite: bool):
    """knazeri/edge-connect, model 3 (edge-inpaint), written out from its src/models.py forwards:
    ``EdgeConnect.test()`` feeds the edge model's raw output to the inpainting model (composite=False);
    ``train()`` / ``eval()`` / ``sample()`` composite it over the input edges first (composite=True)."""
    gray = ops.to_gray(images)  # the official rgb2gray, as a tensor
    edge_in = torch.cat((gray * (1 - masks) + masks, edges * (1 - masks), masks), dim=1)  # EdgeModel.forward
    generated = model.edge(edge_in)
    if composite:
        generated = generated * masks + edges * (1 - masks)
    image_in = torch.cat((images * (1 - masks) + masks, generated), dim=1)  # InpaintingModel.forward
    outputs = model.inpaint(image_in)
    return outputs * masks + images * (1 - masks), generated


@pytest.mark.parametrize("edge_map,composite", [("generated", False), ("composited", True)])
def test_edge_maps_are_the_official_inference_and_training_paths(model, edge_map, composite):
    images, masks, edges = _batch(32, 28)  # multiples of 4: ops.complete pads nothing
    expected = _official_edge_inpaint(model, images, masks, edges, composite)
    got = ops.complete(model, images, masks, edges, edge_map=edge_map)
    if edge_map == "generated":
        default = ops.complete(model, images, masks, edges)
        assert torch.equal(default[0], got[0]) and torch.equal(default[1], got[1])  # the default is the official inference
    # Exact: the reference builds the same input tensors with the same elementwise ops and runs the
    # same modules on them, in one process, so the same kernels see the same bytes.
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_the_two_edge_maps_differ_on_random_weights(model):
    images, masks, edges = _batch()
    generated, generated_edges = ops.complete(model, images, masks, edges, edge_map="generated")
    composited, composited_edges = ops.complete(model, images, masks, edges, edge_map="composited")
    assert torch.equal(generated_edges * masks, composited_edges * masks)  # the hole: the edge generator's in both
    assert ((generated_edges - composited_edges).abs() * (1 - masks)).max() > 0.5  # outside: its output vs Canny
    assert (generated - composited).abs().max() > 0.1  # so the image generator fills the hole differently
    assert torch.equal(generated * (1 - masks), composited * (1 - masks))
    with pytest.raises(ValueError, match="edge_map"):
        ops.complete(model, images, masks, edges, edge_map="canny")


def test_the_schema_names_the_ops_edge_maps():
    import typing

    from schemas.inpaint import EdgeMap

    assert typing.get_args(EdgeMap) == ops.EDGE_MAPS and InpaintParams().edge_map == ops.EDGE_MAPS[0] == "generated"
    with pytest.raises(ValueError, match="edge_map"):
        InpaintParams(edge_map="raw")


def test_edge_and_image_inputs_follow_the_official_conventions():
    images, masks, edges = _batch()
    gray = ops.to_gray(images)
    inputs = ops.edge_inputs(gray, edges, masks)
    assert torch.all(inputs[:, 0][masks[:, 0] == 1] == 1) and torch.all(inputs[:, 1][masks[:, 0] == 1] == 0)
    assert torch.equal(inputs[:, 2:], masks)
    assert ops.image_inputs(images, edges, masks).shape == (2, 4, 30, 26)
    assert torch.equal(ops.dilate(masks, 1)[..., 5:19, 4:16], torch.ones(2, 1, 14, 12))


def test_canny_edges_only_outside_the_hole():
    gray = np.zeros((32, 32))
    gray[:, 16:] = 1.0  # a vertical step edge
    hole = np.zeros((32, 32), bool)
    hole[:16] = True
    edges = ops.canny_edges(gray, hole, sigma=1.0)
    assert edges[20:28].sum() > 0 and edges[:14].sum() == 0


# ---- the op contract's mask handling (schemas/inpaint.py) ------------------------------------------


def test_fit_thresholds_dilates_and_refuses_bad_masks():
    image = np.zeros((20, 24, 3), np.uint8)
    mask = np.zeros((20, 24), np.uint8)
    mask[5:10, 5:10] = 255
    fitted = fit_inpaint_images({"image": image, "mask": mask}, InpaintParams(dilate=2), {})
    assert fitted["mask"].dtype == bool and fitted["mask"].sum() == 9 * 9
    assert np.array_equal(dilate_mask(mask > 0, 0), mask > 0)
    with pytest.raises(ValueError, match="resize_mask"):
        fit_inpaint_images({"image": image, "mask": mask[:10]}, InpaintParams(), {})
    resized = fit_inpaint_images({"image": image, "mask": np.kron(mask, np.ones((2, 2), np.uint8))}, InpaintParams(resize_mask=True), {})
    assert resized["mask"].shape == (20, 24)
    with pytest.raises(ValueError, match="grey"):
        fit_inpaint_images({"image": image, "mask": np.full((20, 24), 128, np.uint8)}, InpaintParams(), {})
    with pytest.raises(ValueError, match="whole image"):
        fit_inpaint_images({"image": image, "mask": np.full((20, 24), 255, np.uint8)}, InpaintParams(), {})
    with pytest.raises(ValueError, match="after dilating"):
        fit_inpaint_images({"image": image, "mask": mask}, InpaintParams(dilate=20), {})


def test_size_bucket_batch_equals_each_image_alone(model):
    from deployments.inpaint.deployment import gray_of, inpaint_batch
    from deployments.inpaint.sizes import size_bucket
    from service.tasks import EditTask

    rng = np.random.default_rng(0)
    tasks = []
    for height, width in [(30, 26), (29, 28), (32, 25)]:  # all pad to 32 x 28
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        hole = np.zeros((height, width), bool)
        hole[8:20, 6:18] = True
        tasks.append(
            EditTask(model="m", op="inpaint", params={"sigma": 2.0}, inputs={}, images={"image": image, "mask": hole}, submitted_at=0.0)
        )
    assert {size_bucket(t.images["image"].shape) for t in tasks} == {(32, 28)} and size_bucket((5, 7)) == (12, 12)
    for task, (merged, _completed, _plan) in zip(tasks, inpaint_batch(model, tasks, torch.device("cpu"))):
        image, hole = task.images["image"], task.images["mask"]
        edges = ops.canny_edges(gray_of(image), hole, 2.0)
        alone, alone_edges = ops.complete(
            model,
            torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255,
            torch.from_numpy(hole)[None, None].float(),
            torch.from_numpy(edges)[None, None],
        )
        expected = (alone.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
        assert merged.shape == image.shape and np.abs(merged.astype(int) - expected.astype(int)).max() <= 1
        assert np.array_equal(merged[~hole], image[~hole])


def test_edge_maps_never_share_a_batch(model):
    from deployments.inpaint.deployment import inpaint_batch
    from deployments.inpaint.spec import FAMILY
    from service.tasks import EditTask

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (30, 26, 3), dtype=np.uint8)
    hole = np.zeros((30, 26), bool)
    hole[8:20, 6:18] = True
    tasks = [
        EditTask(
            model="m",
            op="inpaint",
            params={"sigma": 2.0, "edge_map": edge_map},
            inputs={},
            images={"image": image, "mask": hole},
            submitted_at=0.0,
        )
        for edge_map in ("generated", "composited")
    ]
    spec = FAMILY.ops["inpaint"]
    group_key = lambda task: spec.group_key(task, spec.params_model.model_validate(task.params))  # noqa: E731
    assert group_key(tasks[0]) != group_key(tasks[1])  # one size, two groups
    with pytest.raises(ValueError, match="one edge map"):
        inpaint_batch(model, tasks, torch.device("cpu"))
    (generated, _, _), (composited, _, _) = (inpaint_batch(model, [t], torch.device("cpu"))[0] for t in tasks)
    assert not np.array_equal(generated, composited)
