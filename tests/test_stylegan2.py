"""Unit tests of the StyleGAN2 generator, the port-checkpoint converter and the `sample` op (CPU, no Ray)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from deployments.style.checkpoint import convert_rosinality, infer_config, load_generator, read_rosinality, save_rosinality
from deployments.style.ops import latents_from_seeds, sample, to_uint8_images
from deployments.style.stylegan2 import Generator, StyleGAN2Config, Upsample, upfirdn2d

TINY = dict(style_dim=32, n_mlp=2, channel_max=16)
ATOL = 1e-5


def make_generator(resolution: int = 16, seed: int = 0, perturb: bool = True, **overrides) -> Generator:
    """Seeded tiny generator; ``perturb`` also randomises the parameters the port initialises to
    constants (biases, noise strengths), so every tensor of the checkpoint matters."""
    cfg = StyleGAN2Config(resolution=resolution, **{**TINY, **overrides})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = Generator(cfg).eval()
        if perturb:
            with torch.no_grad():
                for name, p in g.named_parameters():
                    if name.endswith("bias") or name.endswith("noise.weight"):
                        p.add_(0.2 * torch.randn_like(p))
    return g


@pytest.fixture(scope="module")
def gen() -> Generator:
    return make_generator(32)


# ---- architecture ----------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [8, 16, 32, 64])
def test_output_shapes(resolution: int) -> None:
    g = make_generator(resolution, perturb=False)
    assert g.n_latent == 2 * int(np.log2(resolution)) - 2
    z = torch.randn(2, TINY["style_dim"])
    with torch.no_grad():
        w = g.mapping(z)
        img, feats = g.synthesis(g.broadcast_w(w), return_features=True)
    assert w.shape == (2, TINY["style_dim"])
    assert img.shape == (2, 3, resolution, resolution)
    assert len(feats) == g.config.num_conv_layers == len(g.feature_layers())
    for f, layer in zip(feats, g.feature_layers()):
        assert f.shape == (2, g.channels[layer.resolution], layer.resolution, layer.resolution)
    assert torch.isfinite(img).all()


def test_state_dict_keys_follow_the_port_layout() -> None:
    keys = set(make_generator(16, perturb=False).state_dict())
    expected_some = {
        "style.1.weight", "style.2.bias", "input.input",
        "conv1.conv.weight", "conv1.conv.modulation.weight", "conv1.conv.modulation.bias",
        "conv1.noise.weight", "conv1.activate.bias",
        "to_rgb1.conv.weight", "to_rgb1.conv.modulation.weight", "to_rgb1.bias",
        "convs.0.conv.blur.kernel", "convs.3.activate.bias", "to_rgbs.1.upsample.kernel",
        "to_rgbs.1.conv.modulation.bias", "to_rgbs.1.bias", "noises.noise_0", "noises.noise_4",
    }  # fmt: skip
    assert expected_some <= keys
    assert "style.3.weight" not in keys and "convs.4.conv.weight" not in keys and "noises.noise_5" not in keys
    assert "convs.1.conv.blur.kernel" not in keys  # only upsampling convs blur


def test_upsample_matches_upfirdn_definition() -> None:
    # The port's Upsample: insert a zero after every sample, pad (2, 1), convolve with the 4x4
    # kernel [1,3,3,1]x[1,3,3,1]/64*4. Checked against a direct numpy transcription of that rule.
    x = torch.randn(1, 2, 5, 5)
    up = Upsample((1, 3, 3, 1))
    got = up(x)
    assert got.shape == (1, 2, 10, 10)
    k = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64 * 4
    z = np.zeros((2, 10, 10))
    z[:, ::2, ::2] = x[0].numpy()
    zp = np.pad(z, ((0, 0), (2, 1), (2, 1)))
    ref = np.zeros((2, 10, 10))
    for i in range(10):
        for j in range(10):
            ref[:, i, j] = (zp[:, i : i + 4, j : j + 4] * k[::-1, ::-1]).sum((1, 2))
    np.testing.assert_allclose(got[0].numpy(), ref, atol=1e-5)
    # a constant image stays constant away from the border
    assert torch.allclose(up(torch.ones(1, 1, 6, 6))[..., 2:-2, 2:-2], torch.ones(1, 1, 8, 8), atol=1e-6)
    # asymmetric kernel: upfirdn2d is a true convolution (flipped kernel)
    impulse = torch.zeros(1, 1, 3, 3)
    impulse[0, 0, 1, 1] = 1
    kern = torch.arange(9.0).reshape(3, 3)
    assert torch.equal(upfirdn2d(impulse, kern, pad=(1, 1)), kern.view(1, 1, 3, 3))


# ---- config inference ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "resolution, multiplier, channel_max, exact",
    [
        (1024, 2, 512, True),  # FFHQ config of the port
        (256, 2, 512, True),
        (256, 1, 512, True),
        (128, 4, 1024, True),  # multiplier 4: 1024 channels at 64px
        (64, 2, 64, True),  # the demo checkpoint's shape
        (512, 1, 128, True),
        (32, 1, 512, False),  # <= 32px: the multiplier never matters
        (64, 1, 200, False),  # 256 at 64px capped to 200: multiplier unidentifiable
    ],
)
def test_infer_config(resolution: int, multiplier: int, channel_max: int, exact: bool) -> None:
    cfg = StyleGAN2Config(resolution=resolution, style_dim=64, n_mlp=3, channel_multiplier=multiplier, channel_max=channel_max)
    with torch.device("meta"):  # shapes only, no memory
        state = Generator(cfg).state_dict()
    got = infer_config(state)
    assert got.channels() == cfg.channels()
    assert (got.resolution, got.style_dim, got.n_mlp) == (resolution, 64, 3)
    if exact:
        assert got == cfg
    with torch.device("meta"):
        assert set(Generator(got).state_dict()) == set(state)


def test_infer_config_rejects_other_layouts() -> None:
    with torch.device("meta"):
        state = Generator(StyleGAN2Config(resolution=16, **TINY)).state_dict()
    for broken in (
        {k: v for k, v in state.items() if k != "to_rgbs.0.bias"},  # hole in to_rgbs numbering
        {k: v for k, v in state.items() if not k.startswith("style.")},  # no mapping network
        {**state, "convs.1.conv.weight": torch.empty(1, 16, 8, 3, 3, device="meta")},  # wrong shape
        {**state, "extra.weight": torch.empty(3, device="meta")},  # unexpected key
        {k: v for k, v in state.items() if k != "noises.noise_2"},  # missing buffer
    ):
        with pytest.raises(ValueError):
            infer_config(broken)


# ---- checkpoint conversion -------------------------------------------------------------------


def test_convert_and_load_round_trip(tmp_path: Path, gen: Generator) -> None:
    latent_avg = gen.mean_latent(256, seed=3)
    src = tmp_path / "port.pt"
    save_rosinality(gen, src, latent_avg=latent_avg)
    manifest = convert_rosinality(src, tmp_path / "out", "style-test", description="round trip")
    assert manifest["arch"] == gen.config.to_dict()
    assert manifest["family"] == "style" and manifest["format"] == "stylegan2"
    assert manifest["source_format"] == "rosinality-stylegan2-pytorch"
    assert (manifest["resolution"], manifest["style_dim"], manifest["n_latent"]) == (32, 32, gen.n_latent)
    assert manifest["ops"] == ["sample", "project", "catalog", "part_map", "local_transfer"] and manifest["random_init"] is False
    assert json.loads((tmp_path / "out" / "model.json").read_text()) == manifest

    data = (tmp_path / "out" / "weights.safetensors").read_bytes()
    for weights in (data, tmp_path / "out" / "weights.safetensors"):
        loaded, avg = load_generator(weights, manifest["arch"])
        assert not loaded.training
        assert torch.equal(avg, latent_avg)
        for key, value in gen.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        z = latents_from_seeds([1, 2], 32)
        assert torch.equal(sample(loaded, z=z, truncation=0.6, mean_w=avg), sample(gen, z=z, truncation=0.6, mean_w=latent_avg))

    # a bare state dict (no g_ema wrapper, no latent_avg) converts too
    torch.save(gen.state_dict(), tmp_path / "bare.pt")
    bare = convert_rosinality(tmp_path / "bare.pt", tmp_path / "bare", "style-bare")
    _, avg = load_generator(tmp_path / "bare" / "weights.safetensors", bare["arch"])
    assert avg is None


def test_load_generator_rejects_mismatched_arch(tmp_path: Path, gen: Generator) -> None:
    save_rosinality(gen, tmp_path / "port.pt")
    manifest = convert_rosinality(tmp_path / "port.pt", tmp_path / "out", "style-test")
    data = (tmp_path / "out" / "weights.safetensors").read_bytes()
    with pytest.raises(ValueError):
        load_generator(data, {**manifest["arch"], "resolution": 64})
    with pytest.raises(ValueError):
        load_generator(data, {**manifest["arch"], "channel_max": 32})
    with pytest.raises(ValueError):
        load_generator(b"not a safetensors file", manifest["arch"])


def _touch_marker(path: str) -> None:  # what a malicious pickle would run on load
    Path(path).write_text("code ran")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch_marker, (self.marker,))


def test_convert_refuses_arbitrary_pickled_objects(tmp_path: Path, gen: Generator) -> None:
    marker = tmp_path / "marker"
    src = tmp_path / "evil.pt"
    torch.save({"g_ema": gen.state_dict(), "payload": _Payload(marker)}, src)
    with pytest.raises(ValueError, match="pickled objects"):
        convert_rosinality(src, tmp_path / "out", "style-evil")
    assert not marker.exists(), "the pickled payload was executed"
    assert not (tmp_path / "out" / "weights.safetensors").exists()


def test_convert_accepts_port_training_checkpoint(tmp_path: Path, gen: Generator) -> None:
    # The port's train.py also saves g, d, optimizer states and `args` (an argparse.Namespace).
    import argparse

    src = tmp_path / "train.pt"
    torch.save(
        {"g": gen.state_dict(), "g_ema": gen.state_dict(), "d": {"w": torch.zeros(2)}, "g_optim": {"state": {}},
         "args": argparse.Namespace(size=32, latent=32), "ada_aug_p": 0.1},
        src,
    )  # fmt: skip
    state, avg = read_rosinality(src)
    assert avg is None and set(state) == set(gen.state_dict())
    buf = io.BytesIO()
    torch.save({"something": torch.zeros(1)}, buf)
    with pytest.raises(ValueError, match="no generator"):
        read_rosinality(buf.getvalue())
    with pytest.raises(ValueError):
        read_rosinality(b"garbage bytes")


# ---- determinism and ops ---------------------------------------------------------------------


def test_latents_from_seeds_are_per_seed() -> None:
    a = latents_from_seeds([7, 8, 9], 32)
    assert a.shape == (3, 32)
    assert torch.equal(latents_from_seeds([8], 32)[0], a[1])
    assert torch.equal(latents_from_seeds([9, 7], 32), a[[2, 0]])
    for bad in ([], [-1], [2**32], [1.5], [True]):
        with pytest.raises(ValueError):
            latents_from_seeds(bad, 32)


def test_same_seed_same_image_different_seeds_differ(gen: Generator) -> None:
    a = sample(gen, z=latents_from_seeds([5], 32))
    b = sample(gen, z=latents_from_seeds([5], 32))
    c = sample(gen, z=latents_from_seeds([6], 32))
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 1e-2
    u = to_uint8_images(a)
    assert u.dtype == np.uint8 and u.shape == (1, 32, 32, 3)


def test_noise_modes(gen: Generator) -> None:
    ws = gen.broadcast_w(gen.mapping(latents_from_seeds([3], 32)))
    with torch.no_grad():
        const = [gen.synthesis(ws, noise_mode="const") for _ in range(2)]
        rand = [gen.synthesis(ws, noise_mode="random") for _ in range(2)]
        none = gen.synthesis(ws, noise_mode="none")
    assert torch.equal(const[0], const[1])
    assert not torch.equal(rand[0], rand[1])  # noise strengths are non-zero in this generator
    assert not torch.equal(none, const[0])
    with pytest.raises(ValueError):
        gen.synthesis(ws, noise_mode="bogus")


def test_batch_independence(gen: Generator) -> None:
    seeds = [11, 12, 13, 14]
    batch = sample(gen, z=latents_from_seeds(seeds, 32), truncation=0.7)
    mean_w = gen.mean_latent()
    for i, seed in enumerate(seeds):
        alone = sample(gen, z=latents_from_seeds([seed], 32), truncation=0.7, mean_w=mean_w)
        torch.testing.assert_close(batch[i : i + 1], alone, atol=ATOL, rtol=0)
    # W+ input in a mixed batch
    ws = gen.broadcast_w(gen.mapping(latents_from_seeds(seeds, 32))).clone()
    ws[:, 4:] = ws.roll(1, 0)[:, 4:]  # style mixing
    batch = sample(gen, w=ws)
    torch.testing.assert_close(batch[2:3], sample(gen, w=ws[2:3]), atol=ATOL, rtol=0)


def test_styles_round_trip(gen: Generator) -> None:
    ws = torch.randn(2, gen.n_latent, gen.style_dim)
    with torch.no_grad():
        styles = gen.styles_from_ws(ws)
        assert len(styles) == len(gen.style_layers)
        for s, layer in zip(styles, gen.style_layers):
            assert s.shape == (2, layer.channels)
        assert torch.equal(gen.synthesis_from_styles(styles), gen.synthesis(ws))
        # editing one layer's style changes the image; the shape contract is enforced
        edited = [s.clone() for s in styles]
        edited[3] = edited[3] * 1.5
        assert not torch.equal(gen.synthesis_from_styles(edited), gen.synthesis(ws))
    with pytest.raises(ValueError, match="style of layer"):
        gen.synthesis_from_styles([*styles[:-1], styles[-1][:, :3]])
    with pytest.raises(ValueError, match="ws must have shape"):
        gen.styles_from_ws(ws[:, :-1])


def test_truncation_zero_gives_the_mean_image(gen: Generator) -> None:
    mean_w = gen.mean_latent(512, seed=1)
    imgs = sample(gen, z=latents_from_seeds([1, 2, 3], 32), truncation=0.0, mean_w=mean_w)
    mean_img = sample(gen, w=mean_w[None])
    for img in imgs:
        torch.testing.assert_close(img[None], mean_img, atol=ATOL, rtol=0)
    # default mean_w is the generator's deterministic mean_latent()
    assert torch.equal(gen.mean_latent(), gen.mean_latent())
    torch.testing.assert_close(
        sample(gen, z=latents_from_seeds([4], 32), truncation=0.0), sample(gen, w=gen.mean_latent()[None]), atol=ATOL, rtol=0
    )


def test_sample_validates_inputs(gen: Generator) -> None:
    z = latents_from_seeds([1], 32)
    with pytest.raises(ValueError):
        sample(gen)
    with pytest.raises(ValueError):
        sample(gen, z=z, w=z)
    with pytest.raises(ValueError):
        sample(gen, z=torch.randn(1, 31))
    with pytest.raises(ValueError):
        sample(gen, w=torch.randn(1, 3, 32))
    with pytest.raises(ValueError):
        sample(gen, z=z, truncation=0.5, mean_w=torch.zeros(7))


def test_shipped_demo_checkpoint_loads() -> None:
    root = Path(__file__).resolve().parents[1] / "checkpoints" / "style-demo-random"
    if not (root / "model.json").exists():
        pytest.skip("demo checkpoint not generated")
    manifest = json.loads((root / "model.json").read_text())
    assert manifest["random_init"] is True and "RANDOM-INIT" in (root / "README.md").read_text()
    g, avg = load_generator(root / "weights.safetensors", manifest["arch"])
    assert avg is not None and avg.shape == (manifest["style_dim"],)
    img = sample(g, z=latents_from_seeds([0], manifest["style_dim"]))
    assert img.shape == (1, 3, manifest["resolution"], manifest["resolution"])
    assert (root / "weights.safetensors").stat().st_size < 5_000_000
    assert set(safetensors.torch.load_file(root / "weights.safetensors")) == {*g.state_dict(), "latent_avg"}


def test_unfused_modulated_conv_matches_the_fused_one():
    """Training uses the unfused form (shared weight, modulated activations); it must be the same maths."""
    torch.manual_seed(0)
    gen = Generator(StyleGAN2Config(resolution=32, style_dim=32, n_mlp=2, channel_max=32)).eval()
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.1 * torch.randn_like(p))  # non-trivial biases and noise strengths
        z = torch.randn(3, 32)
        fused = gen(z=z)
        unfused = gen.set_fused_modconv(False)(z=z)
    assert torch.allclose(fused, unfused, atol=1e-4, rtol=1e-4)
