"""BigGAN-deep: layout of the pytorch_pretrained_biggan format, spectral-norm conversion, truncation
statistics, the family generator contract (sCBN class maps, feature edits) and project-format export."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from deployments.collage.biggan_deep import BigGANDeep, BigGANDeepConfig, GenBlock, SelfAttention, random_biggan_deep, truncation_statistics
from deployments.collage.checkpoint import (
    MANIFEST_FILE,
    WEIGHTS_FILE,
    biggan_state_dict_from_pretrained,
    convert_pretrained_biggan,
    export,
    load_generator,
    load_pretrained_biggan,
    save_pretrained_biggan,
    spectral_norm_vectors,
)
from deployments.collage.conditioning import ClassMixture

TINY = BigGANDeepConfig(
    output_dim=32,
    z_dim=8,
    class_embed_dim=8,
    channel_width=8,
    num_classes=5,
    layers=[[False, 4, 4], [True, 4, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]],
    attention_layer_position=4,
    n_stats=11,
)


@pytest.fixture(scope="module")
def gen() -> BigGANDeep:
    return random_biggan_deep(TINY, seed=1)


def inputs(batch: int = 3, seed: int = 0, truncation: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, TINY.z_dim, generator=rng).clamp(-2, 2) * truncation
    classes = F.one_hot(torch.arange(batch) % TINY.num_classes, TINY.num_classes).float()
    return z, classes


def run(gen: BigGANDeep, *args, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return gen(*args, **kwargs)


# ---- architecture -------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution,n_blocks", [(128, 10), (256, 12), (512, 14)])
def test_presets_layer_structure_and_output(resolution: int, n_blocks: int) -> None:
    preset = BigGANDeepConfig.preset(resolution)
    assert preset.output_dim == preset.resolution == resolution and preset.n_blocks == n_blocks
    assert preset.block_resolutions[-1] == resolution and preset.block_channels[-1] == preset.channel_width
    assert preset.block_resolutions[preset.attention_layer_position - 1] == 64  # attention at 64 x 64
    # the preset's layer structure at a tiny width runs end to end
    small = replace(preset, channel_width=4, z_dim=8, class_embed_dim=8, num_classes=5, n_stats=3)
    model = BigGANDeep(small).eval()
    images = run(model, torch.randn(1, 8), torch.eye(5)[:1], 0.5)
    assert images.shape == (1, 3, resolution, resolution)
    assert torch.isfinite(images).all() and images.abs().max() <= 1


def test_128_key_layout_matches_the_package() -> None:
    with torch.device("meta"):
        model = BigGANDeep(BigGANDeepConfig.preset(128))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["embeddings.weight"] == (128, 1000)
    assert shapes["generator.gen_z.weight"] == (4 * 4 * 16 * 128, 256) and shapes["generator.gen_z.bias"] == (4 * 4 * 16 * 128,)
    assert len(model.generator.layers) == 11 and isinstance(model.generator.layers[8], SelfAttention)
    assert shapes["generator.layers.8.snconv1x1_theta.weight"] == (32, 256, 1, 1)
    assert shapes["generator.layers.8.snconv1x1_g.weight"] == (128, 256, 1, 1)
    assert shapes["generator.layers.8.snconv1x1_o_conv.weight"] == (256, 128, 1, 1)
    assert shapes["generator.layers.8.gamma"] == (1,)
    assert shapes["generator.layers.0.bn_0.running_means"] == (51, 2048)
    assert shapes["generator.layers.0.bn_0.scale.weight"] == (2048, 256)
    assert shapes["generator.layers.0.conv_0.weight"] == (512, 2048, 1, 1)
    assert shapes["generator.layers.0.conv_1.weight"] == (512, 512, 3, 3)
    assert shapes["generator.layers.10.conv_3.weight"] == (128, 64, 1, 1) and "generator.layers.10.conv_3.bias" in shapes
    assert shapes["generator.bn.running_vars"] == (51, 128) and shapes["generator.bn.weight"] == (128,)
    assert shapes["generator.conv_to_rgb.weight"] == (128, 128, 3, 3)
    assert sum(isinstance(m, GenBlock) for m in model.modules()) == model.n_blocks == 10


def test_self_attention_matches_its_definition() -> None:
    torch.manual_seed(0)
    attention = SelfAttention(16)
    attention.gamma.data.fill_(0.7)
    x = torch.randn(2, 16, 8, 6)
    theta = attention.snconv1x1_theta(x).flatten(2)  # (B, 2, 48)
    phi = F.max_pool2d(attention.snconv1x1_phi(x), 2).flatten(2)  # (B, 2, 12)
    g = F.max_pool2d(attention.snconv1x1_g(x), 2).flatten(2)  # (B, 8, 12)
    weights = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (B, 48, 12), no 1/sqrt(d) scaling
    expected = x + 0.7 * attention.snconv1x1_o_conv((g @ weights.transpose(1, 2)).view(2, 8, 8, 6))
    torch.testing.assert_close(attention(x).detach(), expected.detach(), atol=1e-5, rtol=1e-5)


def test_config_json_round_trip_and_validation() -> None:
    assert BigGANDeepConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    assert TINY.to_dict()["layers"][1] == [True, 4, 4]
    with pytest.raises(ValueError, match="unknown"):
        BigGANDeepConfig.from_dict({**TINY.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="output_dim"):
        replace(TINY, output_dim=64)
    with pytest.raises(ValueError, match="layer 2"):
        replace(TINY, layers=[[False, 4, 4], [True, 4, 2], [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]])
    with pytest.raises(ValueError, match="attention"):
        replace(TINY, attention_layer_position=6)
    with pytest.raises(ValueError, match="presets"):
        BigGANDeepConfig.preset(64)


def test_contract_properties(gen: BigGANDeep) -> None:
    assert (gen.z_dim, gen.num_classes, gen.resolution, gen.n_blocks) == (8, 5, 32, 6)
    assert gen.block_resolutions == [4, 8, 8, 16, 16, 32] and gen.block_channels == [32, 32, 32, 16, 16, 8]


def test_output_range_and_eval_determinism(gen: BigGANDeep) -> None:
    z, classes = inputs(4)
    first = run(gen, z, classes, 0.7)
    assert first.shape == (4, 3, 32, 32) and first.abs().max() <= 1 and first.std() > 0.05
    assert torch.equal(first, run(gen, z, classes, 0.7))
    alone = run(gen, z[2:3], classes[2:3], 0.7)
    torch.testing.assert_close(alone, first[2:3], atol=5e-5, rtol=0)  # no batch statistics (float noise only)


# ---- truncation statistics ---------------------------------------------------------------------


@pytest.mark.parametrize("truncation", [0.37, 0.3, 0.5, 0.02, 0.999, 1.0])
def test_truncation_statistics_follow_the_package_formula(truncation: float) -> None:
    rng = torch.Generator().manual_seed(0)
    means, variances = torch.randn(51, 6, generator=rng), torch.rand(51, 6, generator=rng) + 0.5
    coef, start = math.modf(truncation / (1.0 / 50))
    start = int(start)
    if coef == 0.0:
        expected = means[start], variances[start]
    else:
        expected = (means[start] * coef + means[start + 1] * (1 - coef), variances[start] * coef + variances[start + 1] * (1 - coef))
    mean, var = truncation_statistics(means, variances, truncation)
    assert torch.equal(mean, expected[0]) and torch.equal(var, expected[1])


def test_truncation_selects_statistics(gen: BigGANDeep) -> None:
    z, classes = inputs(2, truncation=0.3)
    assert not torch.allclose(run(gen, z, classes, 0.3), run(gen, z, classes, 1.0), atol=1e-3)
    bn = gen.generator.layers[0].bn_0
    assert not torch.allclose(bn.running_means[0], bn.running_means[-1])  # calibrated per truncation


# ---- sCBN class maps -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 8, 1])
def test_one_hot_map_of_own_class_equals_plain_forward(gen: BigGANDeep, size: int) -> None:
    z, classes = inputs(3)
    plain = run(gen, z, classes, 0.7)
    dense = classes[:, :, None, None].expand(-1, -1, size, size).contiguous()
    mixture = ClassMixture(torch.ones(3, 1, size, size), classes[:, None, :])
    for condition in (dense, mixture):
        mapped = run(gen, z, classes, 0.7, class_maps=[condition] * gen.n_blocks)
        torch.testing.assert_close(mapped, plain, atol=1e-5, rtol=0)


def test_map_of_class_c_everywhere_equals_sampling_class_c(gen: BigGANDeep) -> None:
    z, base = inputs(3)
    target = F.one_hot(torch.tensor([4, 4, 1]), 5).float()
    maps = [target[:, :, None, None].expand(-1, -1, 16, 16).contiguous() for _ in range(gen.n_blocks)]
    torch.testing.assert_close(run(gen, z, base, 0.7, class_maps=maps), run(gen, z, target, 0.7), atol=1e-5, rtol=0)


def test_spatial_maps_edit_and_dense_equals_mixture(gen: BigGANDeep) -> None:
    z, base = inputs(2)
    weights = torch.zeros(2, 2, 32, 32)
    weights[:, 0, :, :16], weights[:, 1, :, 16:] = 1.0, 1.0  # left half class 0, right half class 3
    classes = F.one_hot(torch.tensor([[0, 3], [0, 3]]), 5).float()
    mixture = ClassMixture(weights, classes)
    maps_mix = [mixture if i in (2, 3) else None for i in range(gen.n_blocks)]
    maps_dense = [mixture.dense() if i in (2, 3) else None for i in range(gen.n_blocks)]
    edited = run(gen, z, base, 0.7, class_maps=maps_mix)
    torch.testing.assert_close(run(gen, z, base, 0.7, class_maps=maps_dense), edited, atol=1e-5, rtol=0)
    assert not torch.allclose(edited, run(gen, z, base, 0.7), atol=1e-3)


# ---- feature edits -----------------------------------------------------------------------------------


def test_identity_feature_edit_changes_nothing(gen: BigGANDeep) -> None:
    z, classes = inputs(2)
    seen: list[tuple[int, tuple[int, ...]]] = []

    def identity(i: int, h: torch.Tensor) -> torch.Tensor:
        seen.append((i, tuple(h.shape)))
        return h

    assert torch.equal(run(gen, z, classes, 0.7, feature_edit=identity), run(gen, z, classes, 0.7))
    assert seen == [(i, (2, c, r, r)) for i, (c, r) in enumerate(zip(gen.block_channels, gen.block_resolutions))]


def test_feature_edit_replaces_features(gen: BigGANDeep) -> None:
    z, classes = inputs(2)
    last = gen.n_blocks - 1
    captured: dict[int, torch.Tensor] = {}

    def capture(i: int, h: torch.Tensor) -> torch.Tensor:
        captured[i] = h
        return h

    images = run(gen, z, classes, 0.7, feature_edit=capture)

    def swap(i: int, h: torch.Tensor) -> torch.Tensor:
        return captured[i].flip(0) if i == last else h

    # after the last block only the class-free output layers remain: swapped features, swapped images
    torch.testing.assert_close(run(gen, z, classes, 0.7, feature_edit=swap), images.flip(0), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(z=torch.zeros(2, 7)), "z must have shape"),
        (dict(z=torch.zeros(2, 8, 1)), "z must have shape"),
        (dict(class_weights=torch.zeros(2, 4)), "class_weights must have shape"),
        (dict(class_weights=torch.zeros(3, 5)), "class_weights must have shape"),
        (dict(truncation=0.0), "truncation"),
        (dict(truncation=1.5), "truncation"),
        (dict(class_maps=[None] * 5), "one entry per block"),
        (dict(class_maps=[torch.zeros(3, 5, 8, 8)] + [None] * 5), "batch of 2"),
        (dict(class_maps=[torch.zeros(2, 4, 8, 8)] + [None] * 5), "class condition"),
        (dict(class_maps=[torch.zeros(2, 5)[:, :, None]] + [None] * 5), "class condition"),
        (dict(class_maps=[ClassMixture(torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 3))] + [None] * 5), "ClassMixture"),
    ],
)
def test_bad_inputs_raise_value_error(gen: BigGANDeep, kwargs: dict, message: str) -> None:
    args = dict(z=torch.zeros(2, 8), class_weights=torch.eye(5)[:2], truncation=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        gen(**args)


# ---- spectral norm and the pytorch_pretrained_biggan format ----------------------------------------


@pytest.mark.parametrize("layer", [torch.nn.Linear(6, 4), torch.nn.Conv2d(3, 5, 3, padding=1)])
def test_eval_spectral_norm_layer_is_reproduced(layer: torch.nn.Module) -> None:
    torch.manual_seed(0)
    layer = torch.nn.utils.spectral_norm(layer, eps=1e-4)
    x = torch.randn(2, 6) if isinstance(layer, torch.nn.Linear) else torch.randn(2, 3, 7, 7)
    for _ in range(3):  # train-mode power iterations update u and v
        layer(x)
    layer.eval()
    state = biggan_state_dict_from_pretrained({f"m.{k}": v for k, v in layer.state_dict().items()})
    assert set(state) == {"m.weight", "m.bias"}
    plain = F.linear if isinstance(layer, torch.nn.Linear) else (lambda a, w, b: F.conv2d(a, w, b, padding=1))
    torch.testing.assert_close(plain(x, state["m.weight"], state["m.bias"]), layer(x).detach(), atol=1e-6, rtol=1e-6)


def test_older_spectral_norm_layout_is_read() -> None:
    orig = torch.randn(4, 6)
    state = biggan_state_dict_from_pretrained({"m.weight_orig": orig, "m.weight_u": torch.randn(4), "m.weight": orig / 2.5})
    torch.testing.assert_close(state["m.weight"], orig / 2.5)


def test_spectral_norm_vectors_give_the_weight_back() -> None:
    weight = torch.randn(5, 3, 3, 3) * 0.3
    u, v = spectral_norm_vectors(weight)
    assert u.shape == (5,) and v.shape == (27,) and torch.isclose(v.norm(), torch.tensor(1.0))
    restored = weight / torch.dot(u, torch.mv(weight.reshape(5, -1), v))
    # u is stepped an ulp at a time until the fp32 u . (W v) is 1, but with some CPUs' dot kernels it hops over 1 and
    # stops an ulp (1.2e-7) away (seen for 1 to 7 of 600 random weights, depending on the kernels): 1e-6 relative is 8 ulps
    torch.testing.assert_close(restored, weight, rtol=1e-6, atol=0)


def test_package_style_checkpoint_loads_with_its_eval_weights(gen: BigGANDeep, tmp_path: Path) -> None:
    """Wrap every generator layer in torch's spectral_norm, as the package does, and train-step its vectors."""
    sn_model = copy.deepcopy(gen)
    layers = [m for m in sn_model.generator.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    with torch.no_grad():
        for layer in layers:
            torch.nn.utils.spectral_norm(layer, eps=1e-4)
            layer.weight_orig.mul_(2.0 + torch.rand(()))  # a raw scale that SN divides away
            probe = torch.zeros(1, layer.in_features) if isinstance(layer, torch.nn.Linear) else torch.zeros(1, layer.in_channels, 3, 3)
            layer.train()
            for _ in range(3):  # power iterations update u and v
                layer(probe)
            layer.eval()
            layer(probe)  # the eval-mode weight, weight_orig / (u . W_orig v), now in layer.weight
        sn_model.eval()
        z, classes = inputs(2)
        expected = sn_model(z, classes, 0.7)  # reads layer.weight, as the package's layers would use it
    state = sn_model.state_dict()
    assert "generator.layers.0.conv_1.weight_v" in state and "generator.layers.0.conv_1.weight" not in state
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(TINY.to_dict()))
    loaded = load_pretrained_biggan(tmp_path)
    torch.testing.assert_close(run(loaded, z, classes, 0.7), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(loaded.generator.gen_z.weight, gen.generator.gen_z.weight)  # the power iterations moved sigma


def test_save_then_load_pretrained_is_identical(gen: BigGANDeep, tmp_path: Path) -> None:
    save_pretrained_biggan(gen, tmp_path)
    raw = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    assert {
        "generator.gen_z.weight_orig",
        "generator.gen_z.weight_u",
        "generator.gen_z.weight_v",
        "generator.layers.4.snconv1x1_phi.weight_orig",
        "embeddings.weight",
        "generator.bn.weight",
    } <= set(raw)
    assert "generator.gen_z.weight" not in raw and "embeddings.weight_orig" not in raw
    assert json.loads((tmp_path / "config.json").read_text())["layers"][0] == [False, 4, 4]
    loaded = load_pretrained_biggan(tmp_path)
    # u and v are chosen so that folding gives the weights back, but the fp32 u . (W v) can end an ulp off 1 (CPU
    # dependent): weights within 1e-6 relative (8 ulps); images in [-1, 1] within 1e-5 as for the package checkpoint above
    torch.testing.assert_close(loaded.state_dict(), gen.state_dict(), rtol=1e-6, atol=0)
    z, classes = inputs(3)
    torch.testing.assert_close(run(loaded, z, classes, 0.7), run(gen, z, classes, 0.7), atol=1e-5, rtol=0)


def test_layout_errors_are_clear(gen: BigGANDeep, tmp_path: Path) -> None:
    save_pretrained_biggan(gen, tmp_path)
    good = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)

    def write(state: dict) -> None:
        torch.save(state, tmp_path / "pytorch_model.bin")

    write({k: v for k, v in good.items() if k != "generator.layers.1.bn_2.running_means"})
    with pytest.raises(ValueError, match=r"missing keys \['generator.layers.1.bn_2.running_means'\]"):
        load_pretrained_biggan(tmp_path)
    write({**good, "generator.extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected keys \['generator.extra'\]"):
        load_pretrained_biggan(tmp_path)
    write({k: v for k, v in good.items() if k != "generator.layers.0.conv_1.weight_v"})
    with pytest.raises(ValueError, match="weight_u and weight_v"):
        load_pretrained_biggan(tmp_path)
    write(good)
    (tmp_path / "config.json").write_text(json.dumps({**TINY.to_dict(), "num_classes": 6}))
    with pytest.raises(ValueError, match=r"shape mismatches \['embeddings.weight"):
        load_pretrained_biggan(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained_biggan(tmp_path)


# ---- project format ------------------------------------------------------------------------------------


def test_export_and_load_generator_round_trip(gen: BigGANDeep, tmp_path: Path) -> None:
    manifest = export(gen, tmp_path / "project", name="biggan-tiny", random_init=True)
    assert manifest["format"] == "biggan-deep" and manifest["resolution"] == 32
    assert manifest["layers"] == [f"block{i}" for i in range(6)] and manifest["block_resolutions"] == gen.block_resolutions
    stored = json.loads((tmp_path / "project" / MANIFEST_FILE).read_text())
    loaded = load_generator((tmp_path / "project" / WEIGHTS_FILE).read_bytes(), stored)
    z, classes = inputs(2)
    # the same weight bytes into the same module class: the same kernels, bit-exact on any CPU
    assert torch.equal(run(loaded, z, classes, 0.7), run(gen, z, classes, 0.7))


def test_convert_pretrained_biggan(gen: BigGANDeep, tmp_path: Path) -> None:
    save_pretrained_biggan(gen, tmp_path / "hf")
    names = [f"thing {i}" for i in range(5)]
    manifest = convert_pretrained_biggan(tmp_path / "hf", tmp_path / "out", "biggan-tiny", classes=names)
    assert manifest["source_format"] == "pytorch-pretrained-biggan" and manifest["classes"] == names
    loaded = load_generator((tmp_path / "out" / WEIGHTS_FILE).read_bytes(), manifest)
    z, classes = inputs(2)
    # converting folds the spectral norm (weights an ulp or so off, see above): the same 1e-5 as the package checkpoint
    torch.testing.assert_close(run(loaded, z, classes, 0.7), run(gen, z, classes, 0.7), atol=1e-5, rtol=0)


# ---- fidelity to the pytorch_pretrained_biggan arithmetic --------------------------------------------
# A reference forward pass written from the package's format and algorithm, one functional step per
# package module, in the package's order of operations: the class embedding (linear, no bias); the
# condition vector c = [z, e]; gen_z(c) read as NHWC and made contiguous NCHW; per GenBlock, every
# CBN as ((x - mean) / sqrt(var + eps)) * (1 + scale(c)) + offset(c) with scale and offset single
# linears on all of c; self-attention as bmm(theta^T, phi) -> softmax -> bmm(g, attn^T); the final
# plain batch norm, ReLU, the full conv_to_rgb, its first 3 channels, tanh. It reads the state dict
# only, so it shares no code with the module under test.


def _reference_statistics(state: dict, prefix: str, truncation: float, n_stats: int) -> tuple[torch.Tensor, torch.Tensor]:
    means, variances = state[f"{prefix}.running_means"], state[f"{prefix}.running_vars"]
    coef, start = math.modf(truncation / (1.0 / (n_stats - 1)))  # the package's (reversed) weights
    start = int(start)
    if coef == 0.0:
        return means[start], variances[start]
    return (means[start] * coef + means[start + 1] * (1 - coef), variances[start] * coef + variances[start + 1] * (1 - coef))


def reference_biggan_deep(
    state: dict, config: BigGANDeepConfig, z: torch.Tensor, class_vector: torch.Tensor, truncation: float
) -> torch.Tensor:
    def cbn(x: torch.Tensor, prefix: str, cond: torch.Tensor) -> torch.Tensor:
        mean, var = _reference_statistics(state, prefix, truncation, config.n_stats)
        gain = 1 + F.linear(cond, state[f"{prefix}.scale.weight"]).unsqueeze(-1).unsqueeze(-1)
        bias = F.linear(cond, state[f"{prefix}.offset.weight"]).unsqueeze(-1).unsqueeze(-1)
        mean, var = mean.unsqueeze(0).unsqueeze(-1).unsqueeze(-1), var.unsqueeze(0).unsqueeze(-1).unsqueeze(-1)
        return (x - mean) / torch.sqrt(var + config.eps) * gain + bias

    def conv(x: torch.Tensor, prefix: str, padding: int = 0) -> torch.Tensor:
        return F.conv2d(x, state[f"{prefix}.weight"], state.get(f"{prefix}.bias"), padding=padding)

    def attention(x: torch.Tensor, prefix: str) -> torch.Tensor:
        b, ch, h, w = x.shape
        theta = conv(x, f"{prefix}.snconv1x1_theta").view(b, ch // 8, h * w)
        phi = F.max_pool2d(conv(x, f"{prefix}.snconv1x1_phi"), 2).view(b, ch // 8, h * w // 4)
        attn = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), dim=-1)
        g = F.max_pool2d(conv(x, f"{prefix}.snconv1x1_g"), 2).view(b, ch // 2, h * w // 4)
        attn_g = torch.bmm(g, attn.permute(0, 2, 1)).view(b, ch // 2, h, w)
        return x + state[f"{prefix}.gamma"] * conv(attn_g, f"{prefix}.snconv1x1_o_conv")

    def block(x: torch.Tensor, prefix: str, up: bool, cond: torch.Tensor) -> torch.Tensor:
        h = conv(F.relu(cbn(x, f"{prefix}.bn_0", cond)), f"{prefix}.conv_0")
        h = F.relu(cbn(h, f"{prefix}.bn_1", cond))
        if up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = conv(h, f"{prefix}.conv_1", padding=1)
        h = conv(F.relu(cbn(h, f"{prefix}.bn_2", cond)), f"{prefix}.conv_2", padding=1)
        h = conv(F.relu(cbn(h, f"{prefix}.bn_3", cond)), f"{prefix}.conv_3")
        shortcut = x if h.shape[1] == x.shape[1] else x[:, : x.shape[1] // 2]
        if up:
            shortcut = F.interpolate(shortcut, scale_factor=2, mode="nearest")
        return h + shortcut

    cond = torch.cat((z, F.linear(class_vector, state["embeddings.weight"])), dim=1)
    c0 = config.channel_width * config.layers[0][1]
    h = F.linear(cond, state["generator.gen_z.weight"], state["generator.gen_z.bias"])
    h = h.view(-1, 4, 4, c0).permute(0, 3, 1, 2).contiguous()
    index = 0
    for i, (up, _, _) in enumerate(config.layers):
        if i == config.attention_layer_position:
            h = attention(h, f"generator.layers.{index}")
            index += 1
        h = block(h, f"generator.layers.{index}", up, cond)
        index += 1
    mean, var = _reference_statistics(state, "generator.bn", truncation, config.n_stats)
    h = F.batch_norm(h, mean, var, state["generator.bn.weight"], state["generator.bn.bias"], False, 0.0, config.eps)
    h = F.conv2d(F.relu(h), state["generator.conv_to_rgb.weight"], state["generator.conv_to_rgb.bias"], padding=1)
    return torch.tanh(h[:, :3])


# the released 128 px architecture (all 10 GenBlocks, attention at 64 px, 51 statistics rows, z and e
# of 128 each so c has the released 256 terms) at a small channel width
FIDELITY = replace(BigGANDeepConfig.preset(128), channel_width=8)
FIDELITY_TRUNCATIONS = (0.4, 1.0, 0.37)  # two exact rows (20 and 50 of 51) and one interpolated (18/19)
# Ours against the reference on the same fp32 weights and inputs. The plain path runs the reference's
# operations on the same shapes and layouts, so on this project's CPU it agrees to the bit (max |d| = 0
# at all three truncations; before the fix 6.8e-6, 4.2e-6 and 1.3e-5 here, the gap that grew layer by
# layer). It is not asserted bit-exact: conv_to_rgb runs 3 filters where the reference runs all and
# slices (identical here, not promised by oneDNN), and BLAS may block a product differently with other
# buffer alignment or another CPU; each such difference is a few float32 ulps, carried through ~45
# layers to outputs in [-1, 1]. 5e-5 is the fidelity target docs/families/collage.md states.
FIDELITY_ATOL_FP32 = 5e-5
FIDELITY_ATOL_FP64 = 1e-12  # same architecture in float64: only float64 rounding is left


@pytest.fixture(scope="module")
def faithful() -> BigGANDeep:
    """A random FIDELITY generator with distinct statistics per truncation row in every BN and attention on."""
    model = random_biggan_deep(FIDELITY, seed=3)
    rng = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "running_means"):  # calibrated rows, each row then moved on its own
                module.running_means.add_(0.05 * torch.randn(module.running_means.shape, generator=rng))
                module.running_vars.mul_(1 + 0.2 * torch.rand(module.running_vars.shape, generator=rng))
    return model


def fidelity_inputs(truncation: float, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(11)
    z = torch.randn(batch, FIDELITY.z_dim, generator=rng).clamp(-2, 2) * truncation
    labels = F.one_hot(torch.randint(FIDELITY.num_classes, (batch,), generator=rng), FIDELITY.num_classes).float()
    return z, labels


def test_fidelity_setup_is_not_trivial(faithful: BigGANDeep) -> None:
    bns = [m for m in faithful.modules() if hasattr(m, "running_means")]
    assert len(bns) == 4 * FIDELITY.n_blocks + 1
    for bn in bns:  # every row its own statistics, none the init zeros / ones
        means, variances = bn.running_means, bn.running_vars
        assert (means[1:] != means[:-1]).all() and (variances[1:] != variances[:-1]).all()
        assert (means != 0).all() and (variances != 1).all() and (variances > 0).all()
    attention = faithful.generator.layers[FIDELITY.attention_layer_position]
    assert isinstance(attention, SelfAttention) and attention.gamma.item() != 0
    z, labels = fidelity_inputs(0.4)
    with torch.no_grad():
        images = faithful(z, labels, 0.4)
        gamma = attention.gamma.clone()
        attention.gamma.zero_()
        try:
            without_attention = faithful(z, labels, 0.4)
        finally:
            attention.gamma.copy_(gamma)
    assert images.std() > 0.1 and (images - without_attention).abs().max() > 1e-2  # attention matters


FIDELITY_CASES = [(torch.float32, t, FIDELITY_ATOL_FP32) for t in FIDELITY_TRUNCATIONS] + [
    (torch.float64, t, FIDELITY_ATOL_FP64) for t in FIDELITY_TRUNCATIONS[:2]
]


@pytest.mark.parametrize("dtype,truncation,atol", FIDELITY_CASES, ids=[f"{str(d)[6:]}-{t}" for d, t, _ in FIDELITY_CASES])
def test_fidelity_output_matches_the_reference(faithful: BigGANDeep, dtype: torch.dtype, truncation: float, atol: float) -> None:
    """fp32: the reference's arithmetic (summation order, layout); fp64: its architecture."""
    model = faithful if dtype == torch.float32 else copy.deepcopy(faithful).to(dtype)
    z, labels = (t.to(dtype) for t in fidelity_inputs(truncation))
    with torch.no_grad():
        ours = model(z, labels, truncation)
        reference = reference_biggan_deep(model.state_dict(), FIDELITY, z, labels, truncation)
    delta = (ours - reference).abs().max().item()
    print(f"BigGAN-deep fidelity, {str(dtype)[6:]}, truncation {truncation}: max |d| = {delta:.3g}")
    assert delta <= atol


@pytest.mark.parametrize("truncation", FIDELITY_TRUNCATIONS[:2])
def test_fidelity_one_class_map_everywhere_agrees_with_the_plain_path(faithful: BigGANDeep, truncation: float) -> None:
    """The spatial (sCBN) path splits every linear on c into W_z z + W_e e: equal up to float rounding."""
    z, labels = fidelity_inputs(truncation)
    dense = labels[:, :, None, None].expand(-1, -1, 16, 16).contiguous()
    mixture = ClassMixture(torch.ones(3, 1, 16, 16), labels[:, None, :])
    with torch.no_grad():
        plain = faithful(z, labels, truncation)
        for condition in (dense, mixture):
            mapped = faithful(z, labels, truncation, class_maps=[condition] * FIDELITY.n_blocks)
            delta = (mapped - plain).abs().max().item()
            print(f"BigGAN-deep sCBN map of one class vs plain, fp32, truncation {truncation}: max |d| = {delta:.3g}")
            # split sums (128 + 128 terms, then the per-pixel mix) round differently from the one
            # 256-term dot product, ~1 ulp per CBN over 40 CBNs; the same bound as the reference's
            assert delta <= FIDELITY_ATOL_FP32


def test_fidelity_features_stay_contiguous_nchw(faithful: BigGANDeep) -> None:
    """gen_z's output is NHWC data seen as NCHW; kept as that view, every later convolution ran in
    channels-last memory format on other kernels (the largest part of the fp32 gap found). The
    layout is exact and CPU-independent, unlike the figures above."""
    seen: list[tuple[str, bool]] = []
    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: seen.append((name, args[0].is_contiguous())))
        for name, module in faithful.named_modules()
        if isinstance(module, (torch.nn.Conv2d, SelfAttention))
    ]
    z, labels = fidelity_inputs(0.4, batch=2)
    maps = labels[:, :, None, None].expand(-1, -1, 8, 8).contiguous()
    try:
        with torch.no_grad():
            mixture = ClassMixture(torch.ones(2, 1, 8, 8), labels[:, None])
            for class_maps in (None, [maps] * FIDELITY.n_blocks, [mixture] * FIDELITY.n_blocks):
                seen.clear()
                faithful(z, labels, 0.4, class_maps=class_maps)
                assert len(seen) == 4 * FIDELITY.n_blocks + 5 and all(contiguous for _, contiguous in seen), seen
    finally:
        for hook in hooks:
            hook.remove()
