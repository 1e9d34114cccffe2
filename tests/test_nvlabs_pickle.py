"""NVlabs stylegan2-ada pickles: `collage models upload X.pkl --format stylegan2-ada-pkl`.

The snapshots are written by tests/nvlabs_reference.py in NVlabs' format (plain pickle, networks as
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` calls with the module source inside)
from randomly initialised networks of NVlabs' layout; the converted model's images are compared with
that reference's. Hostile pickles must be refused by name without running anything.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import uuid

import numpy as np
import pytest
import torch

from deployments.safe_load import RESTRICTED_PICKLE_GLOBALS, PersistentRecord, load_restricted_pickle
from deployments.style import ops
from deployments.style.checkpoint import load_generator, save_rosinality
from deployments.style.nvlabs import STYLEGAN3_REFUSED, convert_nvlabs, generator_state_dict, read_nvlabs_pickle
from deployments.style.stylegan2 import Generator, StyleGAN2Config
from tests import nvlabs_reference as ref

# Float tolerance of converted-vs-reference images (values up to ~10): the two generators compute the
# same products in a different order (e.g. NVlabs scales the ToRGB styles, the port the weights;
# the styled-conv weights are stored times sqrt(fan_in) and scaled back at run time), so results
# differ by float32 rounding (measured ~3e-6), not by kernels run on the same bytes.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def nvlabs_g() -> ref.Generator:
    return ref.random_generator(seed=0)


@pytest.fixture(scope="module")
def converted(nvlabs_g, tmp_path_factory):
    """(manifest, generator, latent_avg) of the reference's snapshot converted through convert_nvlabs."""
    tmp = tmp_path_factory.mktemp("nvlabs")
    other = ref.random_generator(seed=1)  # the snapshot's non-EMA G: must not be the one converted
    (tmp / "network-snapshot-000000.pkl").write_bytes(ref.dump_snapshot(ref.snapshot(nvlabs_g, other)))
    manifest = convert_nvlabs(tmp / "network-snapshot-000000.pkl", tmp / "out", "nvlabs-32", description="test")
    generator, latent_avg = load_generator(tmp / "out" / "weights.safetensors", manifest["arch"])
    return manifest, generator, latent_avg


def _z(n: int = 3, dim: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def max_delta(nvlabs_g: ref.Generator, generator: Generator, latent_avg: torch.Tensor, psi: float, fused: bool) -> float:
    z = _z()
    expected = nvlabs_g(z, None, truncation_psi=psi, noise_mode="const", fused_modconv=fused)
    generator.set_fused_modconv(fused)
    try:
        got = ops.sample(generator, z=z, truncation=psi, mean_w=latent_avg)  # the serving op
    finally:
        generator.set_fused_modconv(True)
    return (got - expected).abs().max().item()


# ---------------------------------------------------------------------------------------------
# Fidelity
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fused", [True, False], ids=["fused-modconv", "unfused-modconv"])
@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_converted_generator_matches_the_nvlabs_reference(nvlabs_g, converted, psi, fused):
    manifest, generator, latent_avg = converted
    delta = max_delta(nvlabs_g, generator, latent_avg, psi, fused)
    print(f"max |delta| vs NVlabs reference (psi={psi}, fused_modconv={fused}): {delta:.3g}")
    assert delta <= TOLERANCE


def test_manifest_and_exact_tensor_copies(nvlabs_g, converted):
    manifest, generator, latent_avg = converted
    assert manifest["source_format"] == "nvlabs-stylegan2-ada-pkl" and manifest["format"] == "stylegan2"
    assert manifest["arch"] == {
        "resolution": 32,
        "style_dim": 32,
        "n_mlp": 2,
        "channel_multiplier": 2,
        "channel_max": 32,
        "conv_clamp": 256,
    }
    assert manifest["n_latent"] == nvlabs_g.num_ws == 8
    # Bytes copied unchanged where both sides apply the same gains (lr_multiplier 0.01, ToRGB 1/sqrt(in)).
    assert torch.equal(latent_avg, nvlabs_g.mapping.w_avg)
    assert torch.equal(generator.style[1].weight, nvlabs_g.mapping.fc0.weight)
    assert torch.equal(generator.style[2].bias, nvlabs_g.mapping.fc1.bias)
    assert torch.equal(generator.to_rgbs[2].conv.weight[0], nvlabs_g.synthesis.b32.torgb.weight)
    assert torch.equal(generator.noises.noise_6[0, 0], nvlabs_g.synthesis.b32.conv1.noise_const)
    assert torch.equal(generator.convs[5].noise.weight[0], nvlabs_g.synthesis.b32.conv1.noise_strength)


def test_noise_mode_none_matches_too(nvlabs_g, converted):
    _, generator, _ = converted
    z = _z()
    expected = nvlabs_g(z, None, noise_mode="none")
    assert (generator(z=z, noise_mode="none") - expected).abs().max().item() <= TOLERANCE
    # ... and the constant noise does change the image (so the const comparison above tests it).
    assert (generator(z=z, noise_mode="const") - expected).abs().max().item() > 0.01


def test_conv_clamp_is_applied_where_nvlabs_applies_it(tmp_path):
    """A clamp of 0.5 cuts most activations and ToRGB outputs: only the right placement matches."""
    g = ref.random_generator(seed=2, conv_clamp=0.5)
    (tmp_path / "g.pkl").write_bytes(ref.dump_snapshot(ref.snapshot(g)))
    manifest = convert_nvlabs(tmp_path / "g.pkl", tmp_path / "out", "clamped")
    assert manifest["arch"]["conv_clamp"] == 0.5
    generator, latent_avg = load_generator(tmp_path / "out" / "weights.safetensors", manifest["arch"])
    assert max_delta(g, generator, latent_avg, 1.0, True) <= TOLERANCE
    unclamped, _ = load_generator(tmp_path / "out" / "weights.safetensors", {**manifest["arch"], "conv_clamp": None})
    assert (unclamped(z=_z()) - generator(z=_z())).abs().max().item() > 0.1


def test_unclamped_network_converts_without_conv_clamp(tmp_path):
    g = ref.random_generator(seed=3, conv_clamp=None, resolution=16, w_dim=16, channels=16, n_mlp=3)
    (tmp_path / "g.pkl").write_bytes(ref.dump_snapshot(ref.snapshot(g)))
    manifest = convert_nvlabs(tmp_path / "g.pkl", tmp_path / "out", "unclamped")
    assert "conv_clamp" not in manifest["arch"] and manifest["arch"]["n_mlp"] == 3
    generator, latent_avg = load_generator(tmp_path / "out" / "weights.safetensors", manifest["arch"])
    z = _z(dim=16)
    assert (ops.sample(generator, z=z, truncation=0.5, mean_w=latent_avg) - g(z, None, truncation_psi=0.5)).abs().max() <= TOLERANCE


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_every_pickle_protocol_of_python3_reads_the_same(nvlabs_g, protocol):
    # NVlabs wrote its files with Python 3.7's default (protocol 3); later Pythons default to 4.
    sd, latent_avg, config = generator_state_dict(read_nvlabs_pickle(ref.dump_snapshot(ref.snapshot(nvlabs_g), protocol)))
    expected, _, _ = generator_state_dict(read_nvlabs_pickle(ref.dump_snapshot(ref.snapshot(nvlabs_g), 4)))
    assert sd.keys() == expected.keys() and all(torch.equal(sd[k], expected[k]) for k in sd)
    assert config.conv_clamp == 256 and torch.equal(latent_avg, nvlabs_g.mapping.w_avg)


def test_records_keep_hyperparameters_as_plain_values(nvlabs_g):
    data = load_restricted_pickle(ref.dump_snapshot(ref.snapshot(nvlabs_g)))
    assert set(data) == {"training_set_kwargs", "G", "D", "G_ema", "augment_pipe"} and data["augment_pipe"] is None
    g = data["G_ema"]
    assert isinstance(g, PersistentRecord) and g.class_name == "Generator"
    assert "module_src" not in g.state  # the source code is dropped unread
    assert g.state["_init_kwargs"]["mapping_kwargs"] == {"num_layers": 2, "lr_multiplier": 0.01}
    assert type(g.state["_init_kwargs"]["mapping_kwargs"]) is dict  # dnnlib.util.EasyDict -> dict
    fc = g.modules["mapping"].modules["fc0"]
    assert isinstance(fc.state["weight_gain"], np.float64) and fc.state["weight_gain"] == 0.01 / np.sqrt(32)
    assert isinstance(g.modules["synthesis"].modules["b4"].state["_non_persistent_buffers_set"], set)


# ---------------------------------------------------------------------------------------------
# Nothing in the file runs
# ---------------------------------------------------------------------------------------------


class _Call:
    """Pickles as a call of ``func(*args)`` (what a hostile file holds)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _hostile_snapshot(payload) -> bytes:
    g = ref.random_generator(seed=4, resolution=8, w_dim=8, channels=8, n_mlp=1)
    g.synthesis.b8.conv1.extra_setting = payload  # a hyperparameter in a layer's state
    return ref.dump_snapshot(ref.snapshot(g))


def _payloads(marker: str):
    code = f"open({marker!r}, 'w').close()"
    return {
        "os.system": (_Call(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        "builtins.eval": (_Call(builtins.eval, code), "builtins.eval"),
        "builtins.exec": (_Call(builtins.exec, code), "builtins.exec"),
        "builtins.getattr": (_Call(builtins.getattr, "x", "upper"), "builtins.getattr"),
        "unknown class": (torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear"),
        "unknown function": (_Call(torch.load, "x.pt"), "torch.serialization.load"),
    }


@pytest.mark.parametrize("kind", list(_payloads("x")))
def test_hostile_pickles_are_refused_by_name_and_run_nothing(tmp_path, kind):
    marker = tmp_path / "pwned"
    payload, refused = _payloads(str(marker))[kind]
    data = _hostile_snapshot(payload)
    if kind in ("os.system", "builtins.eval", "builtins.exec"):  # the payload is live: plain pickle runs it
        pickle.loads(pickle.dumps(payload))
        assert marker.exists()
        marker.unlink()
    (tmp_path / "evil.pkl").write_bytes(data)
    with pytest.raises(ValueError, match=f"refused to unpickle: the file names the global {refused}"):
        convert_nvlabs(tmp_path / "evil.pkl", tmp_path / "out", "evil")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_the_pickled_source_code_is_never_run(tmp_path, nvlabs_g):
    marker = tmp_path / "pwned"
    data = ref.dump_snapshot(ref.snapshot(nvlabs_g), module_src=f"open({str(marker)!r}, 'w').close()\n")
    assert str(marker).encode() in data  # NVlabs' own loader would exec this
    (tmp_path / "g.pkl").write_bytes(data)
    convert_nvlabs(tmp_path / "g.pkl", tmp_path / "out", "src")
    assert not marker.exists()


def test_a_hostile_storage_blob_is_refused_by_torch_weights_only_loading(tmp_path):
    marker = tmp_path / "pwned"
    blob = io.BytesIO()
    torch.save(_Call(os.system, f"touch {marker}"), blob, _use_new_zipfile_serialization=False)
    data = _hostile_snapshot(_Call(torch.storage._load_from_bytes, blob.getvalue()))
    with pytest.raises(ValueError, match="refused to load the checkpoint.*names.*system"):
        load_restricted_pickle(data)
    assert not marker.exists()


def test_tensorflow_era_pickles_are_refused_with_a_hint():
    tf_pickle = b"\x80\x03cdnnlib.tflib.network\nNetwork\n)\x81q\x00."  # what the TF releases' .pkl files start with
    with pytest.raises(ValueError, match=r"dnnlib\.tflib\.network\.Network.*TensorFlow StyleGAN pickle.*legacy\.py"):
        load_restricted_pickle(tf_pickle)


def test_numpy_object_arrays_and_persistent_ids_are_refused(tmp_path):
    with pytest.raises(ValueError, match="numpy object dtype"):
        load_restricted_pickle(pickle.dumps({"a": np.array([1, 2], dtype=object)}, protocol=4))

    class WithIds(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage-0" if isinstance(obj, str) and obj == "tensor" else None

    buffer = io.BytesIO()
    WithIds(buffer, protocol=4).dump({"w": "tensor"})
    with pytest.raises(ValueError, match="persistent id"):
        load_restricted_pickle(buffer.getvalue())


def test_not_a_pickle_or_a_torch_save_file_is_a_clear_error(tmp_path):
    (tmp_path / "junk.pkl").write_bytes(b"\x00\x01 not a pickle")
    with pytest.raises(ValueError, match="not a readable pickle"):
        convert_nvlabs(tmp_path / "junk.pkl", tmp_path / "out", "junk")
    save_rosinality(Generator(StyleGAN2Config(resolution=8, style_dim=8, n_mlp=1, channel_max=8)), tmp_path / "port.pt")
    with pytest.raises(ValueError, match="not a readable pickle"):
        convert_nvlabs(tmp_path / "port.pt", tmp_path / "out", "port")


def test_allow_list_holds_data_rebuilders_only():
    names = {f"{m}.{n}" for m, n in RESTRICTED_PICKLE_GLOBALS}
    assert not names & {
        "builtins.eval",
        "builtins.exec",
        "builtins.getattr",
        "builtins.__import__",
        "posix.system",
        "os.system",
        "copyreg._reconstructor",
        "torch.load",
    }
    # What NVlabs snapshots name (the rest is numpy/torch spellings of the same rebuilders).
    assert {
        "torch_utils.persistence._reconstruct_persistent_obj",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch.storage._load_from_bytes",
        "collections.OrderedDict",
        "dnnlib.util.EasyDict",
        "builtins.set",
    } <= names


# ---------------------------------------------------------------------------------------------
# Networks the port cannot reproduce
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [3, 5])  # protocol 5 pickles contiguous arrays through numpy's _frombuffer
def test_stylegan3_networks_are_refused_clearly(tmp_path, protocol):
    data = ref.dump_snapshot(ref.snapshot(ref.Generator3()), protocol)
    loaded = load_restricted_pickle(data)["G_ema"]
    synthesis_input = loaded.modules["synthesis"].modules["input"].state
    size, rate = synthesis_input["size"], synthesis_input["sampling_rate"]  # numpy values rebuilt as plain numpy
    assert type(size) is np.ndarray and size.tolist() == [36, 36] and type(rate) is np.float64 and rate == 16
    assert np.array_equal(
        load_restricted_pickle(pickle.dumps(np.arange(6.0).reshape(2, 3), protocol=protocol)), np.arange(6.0).reshape(2, 3)
    )
    (tmp_path / "sg3.pkl").write_bytes(data)
    with pytest.raises(ValueError, match="StyleGAN3 synthesis networks are not supported"):
        convert_nvlabs(tmp_path / "sg3.pkl", tmp_path / "out", "sg3")
    assert "StyleGAN3" in STYLEGAN3_REFUSED


def test_conditional_and_non_skip_generators_are_refused(tmp_path):
    conditional = ref.random_generator(seed=5, resolution=8, w_dim=8, channels=8, n_mlp=1, c_dim=4)
    with pytest.raises(ValueError, match=r"conditional generators are not supported \(c_dim=4\)"):
        generator_state_dict(read_nvlabs_pickle(ref.dump_snapshot(ref.snapshot(conditional))))
    resnet = ref.random_generator(seed=5, resolution=8, w_dim=8, channels=8, n_mlp=1)
    resnet.synthesis.b8.architecture = "resnet"
    with pytest.raises(ValueError, match=r"b8: architecture 'resnet'; only 'skip'"):
        generator_state_dict(read_nvlabs_pickle(ref.dump_snapshot(ref.snapshot(resnet))))
    with pytest.raises(ValueError, match="expected a dict with 'G_ema'"):
        read_nvlabs_pickle(pickle.dumps({"G": None}))


def test_config_conv_clamp_defaults_off_and_stays_out_of_existing_manifests():
    assert "conv_clamp" not in StyleGAN2Config().to_dict()
    assert StyleGAN2Config.from_dict({**StyleGAN2Config().to_dict(), "conv_clamp": 256}).conv_clamp == 256
    for bad in (0, -1, float("inf"), True, "256"):
        with pytest.raises(ValueError, match="conv_clamp"):
            StyleGAN2Config(conv_clamp=bad)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def s3_prefix(s3_server):
    """The CLI's registry (get_settings) on the session's S3 server, under a prefix of this test's own."""
    from service.config import get_settings, patched_environ

    with patched_environ({"COLLAGE_S3_PREFIX": f"t-{uuid.uuid4().hex}/"}):
        yield get_settings()


def test_cli_upload_converts_and_registers_an_nvlabs_pickle(s3_prefix, nvlabs_g, tmp_path):
    from service.registry import ModelRegistry
    from service.storage import AssetStore
    from service.tools.cli import main

    (tmp_path / "ffhq.pkl").write_bytes(ref.dump_snapshot(ref.snapshot(nvlabs_g)))
    assert main(["models", "upload", str(tmp_path / "ffhq.pkl"), "--name", "nvlabs-cli", "--format", "stylegan2-ada-pkl"]) == 0
    registry = ModelRegistry(AssetStore(s3_prefix))
    manifest = registry.get_manifest("nvlabs-cli")
    assert manifest["source_format"] == "nvlabs-stylegan2-ada-pkl" and manifest["arch"]["conv_clamp"] == 256
    generator, latent_avg = load_generator(registry.load_weights("nvlabs-cli"), manifest["arch"])
    assert max_delta(nvlabs_g, generator, latent_avg, 0.7, True) <= TOLERANCE


def test_cli_upload_refuses_a_hostile_pickle(s3_prefix, tmp_path, capsys):
    from service.tools.cli import main

    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(_hostile_snapshot(_Call(os.system, f"touch {marker}")))
    assert main(["models", "upload", str(tmp_path / "evil.pkl"), "--name", "evil", "--format", "stylegan2-ada-pkl"]) == 2
    assert f"names the global {os.system.__module__}.system" in capsys.readouterr().err
    assert not marker.exists()
