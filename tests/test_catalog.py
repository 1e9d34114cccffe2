"""Part catalogs: building on a generator, storage in the registry, the offline CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from deployments.style import editing
from deployments.style.catalog import Catalog, build_catalog, cluster_maps, default_cluster_layer, mask_part_weights, style_layer_inputs
from deployments.style.stylegan2 import Generator, StyleGAN2Config
from schemas.style import CatalogLabels, apply_labels, style_layer_names
from service.errors import NotFound
from service.registry import ModelRegistry

CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "style-demo-random"


def tiny_generator(resolution: int = 16) -> Generator:
    torch.manual_seed(0)
    return Generator(StyleGAN2Config(resolution=resolution, style_dim=16, n_mlp=2, channel_max=16)).eval().requires_grad_(False)


def test_style_layer_inputs_are_what_each_layer_modulates():
    generator = tiny_generator(32)
    with torch.inference_mode():
        styles = generator.styles_from_ws(generator.broadcast_w(generator.mapping(torch.randn(2, 16))))
        image, inputs = style_layer_inputs(generator, styles)
    assert image.shape == (2, 3, 32, 32)
    for layer, a in zip(generator.style_layers, inputs):
        assert a.shape[:2] == (2, layer.channels), layer
        # upsampling convs read the previous resolution; all others read their own
        upsampling = layer.name.startswith("convs.") and int(layer.name.split(".")[1]) % 2 == 0
        assert a.shape[-1] == (layer.resolution // 2 if upsampling else layer.resolution), layer
    # the input of convs.1 is exactly the output of convs.0
    _, features = generator.synthesis_from_styles(styles, return_features=True)
    names = [layer.name for layer in generator.style_layers]
    assert torch.equal(inputs[names.index("convs.1")], features[1])  # the same call on the same styles


def test_torch_free_layer_names_match_the_generator():
    for resolution in (8, 32, 256):
        generator = Generator(StyleGAN2Config(resolution=resolution, style_dim=8, n_mlp=1, channel_max=8))
        assert style_layer_names(resolution) == [layer.name for layer in generator.style_layers]


def test_build_catalog_is_deterministic_and_columns_sum_to_one():
    generator = tiny_generator()
    catalog = build_catalog(generator, k=3, n_samples=12, seed=4)
    again = build_catalog(generator, k=3, n_samples=12, seed=4)
    assert catalog.cluster_layer == default_cluster_layer(generator) == "convs.1"  # plain conv at 8 px
    assert torch.equal(catalog.centroids, again.centroids)
    assert set(catalog.contributions) == {layer.name for layer in generator.style_layers}
    for layer in generator.style_layers:
        m = catalog.contributions[layer.name]
        assert m.shape == (3, layer.channels)
        sums = m.sum(0)
        # every channel's energy is split over the parts; a constant channel has none to split
        assert torch.all(((sums - 1).abs() < 1e-4) | (sums == 0)), layer
    assert torch.allclose(catalog.contributions["convs.3"].sum(0), torch.ones(16), atol=1e-4)
    assert catalog.centroids.norm(dim=1).sub(1).abs().max() < 1e-5


def test_catalog_round_trips_through_bytes_and_names_parts():
    generator = tiny_generator()
    catalog = build_catalog(generator, k=3, n_samples=8)
    catalog.labels = ["eyes", "hair", "eyes"]
    meta = catalog.meta(generator.style_layers)
    loaded = Catalog.from_bytes(catalog.to_bytes(), meta)
    assert loaded.labels == ["eyes", "hair", "eyes"] and loaded.cluster_layer == catalog.cluster_layer
    assert all(torch.equal(loaded.contributions[n], catalog.contributions[n]) for n in catalog.contributions)
    assert loaded.clusters_of("eyes") == [0, 2] and loaded.clusters_of("cluster_1") == [1]
    with pytest.raises(ValueError, match="unknown part 'nose'"):
        loaded.clusters_of("nose")
    assert [row["name"] for row in meta["layers"]] == [layer.name for layer in generator.style_layers]


def test_cluster_maps_cover_the_image_with_catalog_clusters():
    generator = tiny_generator()
    catalog = build_catalog(generator, k=4, n_samples=8)
    with torch.inference_mode():
        styles = generator.styles_from_ws(generator.broadcast_w(generator.mapping(torch.randn(3, 16))))
        image, labels = cluster_maps(generator, catalog, styles)
    assert labels.shape == (3, 8, 8) and labels.min() >= 0 and labels.max() < 4


def test_mask_part_weights_are_area_shares_of_the_clusters():
    labels = torch.tensor([[[0, 0], [1, 2]]])  # (1, 2, 2) cluster map
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2, :] = True  # the top half: both top cells (cluster 0)
    mask[0, 2:, :2] = True  # the bottom-left cell (cluster 1)
    mask[0, 3, 3] = True  # a quarter of the bottom-right cell (cluster 2)
    weights = mask_part_weights(labels, mask, k=3)
    assert torch.allclose(weights, torch.tensor([[8, 4, 1]]) / 13)
    with pytest.raises(ValueError, match="empty"):
        mask_part_weights(labels, torch.zeros(1, 4, 4, dtype=torch.bool), k=3)


def test_full_query_gives_the_reference_image_and_none_gives_the_target():
    generator = tiny_generator()
    with torch.inference_mode():
        ws = generator.broadcast_w(generator.mapping(torch.randn(2, 16)))
        s_styles, r_styles = generator.styles_from_ws(ws[:1]), generator.styles_from_ws(ws[1:])
        ones = [torch.ones(layer.channels) for layer in generator.style_layers]
        zeros = [torch.zeros(layer.channels) for layer in generator.style_layers]
        as_r = generator.synthesis_from_styles(editing.interpolate_styles(s_styles, r_styles, ones))
        as_s = generator.synthesis_from_styles(editing.interpolate_styles(s_styles, r_styles, zeros))
        # exact: interpolate_styles returns the end's styles bit for bit at q = 0 and 1, and synthesis(ws) is
        # synthesis_from_styles(styles_from_ws(ws)), the same kernels on the same batch
        assert torch.equal(as_r, generator.synthesis(ws[1:]))
        assert torch.equal(as_s, generator.synthesis(ws[:1]))


def test_registry_stores_lists_relabels_and_hides_stale_catalogs(store):
    registry = ModelRegistry(store, cache_ttl_s=0)
    with pytest.raises(NotFound):
        registry.put_attachment("style-demo-random", "catalog", b"x", {})
    registry.register_dir(CHECKPOINT)
    assert "catalog" not in registry.get_manifest("style-demo-random")
    generator = tiny_generator()
    catalog = build_catalog(generator, k=2, n_samples=4)
    meta = registry.put_attachment("style-demo-random", "catalog", catalog.to_bytes(), catalog.meta(generator.style_layers))
    listed = registry.get_manifest("style-demo-random")["catalog"]
    assert listed["sha256"] == meta["sha256"] and listed["labels"] == ["cluster_0", "cluster_1"]
    data, loaded_meta = registry.load_attachment("style-demo-random", "catalog")
    assert Catalog.from_bytes(data, loaded_meta).k == 2
    assert registry.edit_attachment("style-demo-random", "catalog", lambda meta: apply_labels(meta, CatalogLabels(labels={1: "eyes"})))[
        "labels"
    ] == ["cluster_0", "eyes"]
    assert registry.get_manifest("style-demo-random")["catalog"]["sha256"] == meta["sha256"]
    # new weights under the same name: the old catalog no longer describes them
    manifest = json.loads((CHECKPOINT / "model.json").read_text())
    registry.register(manifest, (CHECKPOINT / "weights.safetensors").read_bytes() + b"")  # same bytes: still valid
    assert "catalog" in registry.get_manifest("style-demo-random")
    from safetensors.numpy import save

    registry.register(manifest, save({"other": np.zeros(3, dtype=np.float32)}))  # other (well-formed) weights
    assert "catalog" not in registry.get_manifest("style-demo-random")
    with pytest.raises(NotFound):
        registry.load_attachment("style-demo-random", "catalog")


def test_cli_builds_and_labels_a_catalog_in_a_checkpoint_dir(tmp_path, capsys):
    from service.tools.cli import main

    directory = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT, directory)
    assert main(["catalog", "build", "ignored", "--dir", str(directory), "--k", "3", "--samples", "8"]) == 0
    meta = json.loads((directory / "catalog.json").read_text())
    assert meta["k"] == 3 and meta["labels"] == ["cluster_0", "cluster_1", "cluster_2"]
    assert main(["catalog", "label", "ignored", "0=eyes", "2=mouth", "--dir", str(directory)]) == 0
    assert json.loads((directory / "catalog.json").read_text())["labels"] == ["eyes", "cluster_1", "mouth"]
    with pytest.raises(SystemExit):
        main(["catalog", "label", "ignored", "eyes", "--dir", str(directory)])
    with pytest.raises(SystemExit):
        main(["catalog", "label", "ignored", "0=Not A Label", "--dir", str(directory)])
