"""Neural Collage through the REST API (real Serve + SeaweedFS): sample, label_collage, feature_collage, project.

A random-init SNGAN-projection model is registered for the module (the identities checked here hold
for any weights); results are compared with the same generator run in this process.
"""

from __future__ import annotations

import base64
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deployments.collage import ops
from deployments.collage.checkpoint import export
from tests.helpers import png_bytes
from tests.test_api import assert_problem, decode
from tests.test_collage_ops import CONFIG, K, random_sngan

MODEL = "collage-test-random"
CLASSES = ["cat", "dog", "owl", "fox"]
R = CONFIG.resolution


@pytest.fixture(scope="module")
def generator():
    return random_sngan(seed=3)


@pytest.fixture(scope="module")
def model(client, generator):
    from service.config import get_settings
    from service.registry import ModelRegistry
    from service.storage import AssetStore

    with tempfile.TemporaryDirectory() as tmp:
        export(generator, Path(tmp), name=MODEL, classes=CLASSES, random_init=True, description="test model")
        ModelRegistry(AssetStore(get_settings())).register_dir(Path(tmp))
    return MODEL


def _edit(client, op: str, params: dict | None = None, inputs: dict | None = None):
    return client.post(
        "/v1/edits", json={"model": MODEL, "op": op, "params": params or {}, "inputs": inputs or {}, "output": {"inline": True}}
    )


def _image(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return decode(base64.b64decode(response.json()["image_base64"]))


def _close(a: np.ndarray, b: np.ndarray, levels: int = 1) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= levels


def _upload(client, array: np.ndarray) -> str:
    response = client.post("/v1/assets", files={"file": ("x.png", png_bytes(array), "image/png")})
    assert response.status_code in (200, 201), response.text
    return response.json()["asset_id"]


def _mask(top: int, bottom: int, left: int, right: int, size: int = R) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[top:bottom, left:right] = 255
    return mask


def _local(generator, seed: int, klass: int, **kwargs) -> np.ndarray:
    z = ops.truncated_latents([seed], CONFIG.z_dim)
    with torch.no_grad():
        image = generator(z, F.one_hot(torch.tensor([klass]), K).float(), **kwargs)
    return ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


def test_model_is_listed_with_classes_layers_and_ops(client, model):
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}[MODEL]
    assert listed["family"] == "collage" and listed["classes"] == CLASSES
    assert listed["layers"] == ["block0", "block1", "block2"]
    assert {op["name"] for op in listed["ops"]} == {"sample", "label_collage", "feature_collage", "project"}


def test_sample_by_class_name_index_and_soft_vector(client, model, generator):
    by_name = _image(_edit(client, "sample", inputs={"seed": 4, "class_id": "owl"}))
    assert _close(by_name, _local(generator, 4, 2))
    assert _close(_image(_edit(client, "sample", inputs={"seed": 4, "class_id": 2})), by_name)
    soft = _image(_edit(client, "sample", inputs={"seed": 4, "class_weights": {"cat": 1, "dog": 1}}))
    z = ops.truncated_latents([4], CONFIG.z_dim)
    with torch.no_grad():
        expected = generator(z, torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    expected = ((expected.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert _close(soft, expected)


def test_label_collage_identities_through_the_api(client, model, generator):
    mask = _upload(client, _mask(0, R, 0, R))
    base = {"seed": 9, "class_id": "cat"}
    same = _image(_edit(client, "label_collage", inputs={"base": base, "regions": [{"mask": mask, "class_id": "cat"}]}))
    assert _close(same, _local(generator, 9, 0))  # the base class everywhere = plain CBN
    other = _image(_edit(client, "label_collage", inputs={"base": base, "regions": [{"mask": mask, "class_id": "fox"}]}))
    assert _close(other, _local(generator, 9, 3))  # class c everywhere = sampling class c


def test_label_collage_region_and_extras(client, model, generator):
    mask = _upload(client, _mask(8, 20, 4, 28))
    response = _edit(
        client,
        "label_collage",
        {"layers": [2]},
        {"base": {"seed": 9, "class_id": "cat"}, "regions": [{"mask": mask, "class_id": "owl", "intensity": 0.8}]},
    )
    edited = _image(response)
    extras = response.json()["extras"]
    assert extras["layers"] == [2] and extras["base_class"] == {"cat": 1.0}
    assert extras["regions"] == [{"class": "owl", "intensity": 0.8, "area": round(12 * 24 / R**2 * 0.8, 4)}]
    change = np.abs(edited.astype(int) - _local(generator, 9, 0).astype(int)).sum(-1)
    assert change.sum() > 0
    near = np.zeros_like(change, bool)
    near[4:24, 0:32] = True
    assert change[near].sum() / change.sum() > 0.95


def test_label_collages_with_different_masks_and_classes_share_a_batch(client, model, generator):
    mask_arrays = [_mask(i, i + 10, 2, 30) for i in range(0, 18, 3)]
    masks = [_upload(client, m) for m in mask_arrays]
    bodies = [
        ({"layers": [i % 3]}, {"base": {"seed": 20 + i, "class_id": i % 4}, "regions": [{"mask": masks[i], "class_id": (i + 1) % 4}]})
        for i in range(6)
    ]

    def run(body):
        return _edit(client, "label_collage", *body)

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(run, bodies))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert max(r.json()["timings"]["group_size"] for r in responses) > 1
    # each result of the shared batch is what that collage gives computed alone
    for i, response in enumerate(responses):
        base = F.one_hot(torch.tensor([i % 4]), K).float()
        mixture = ops.spatial_class_weights(
            base,
            [torch.from_numpy(mask_arrays[i]).float()[None] / 255],
            [F.one_hot(torch.tensor([(i + 1) % 4]), K).float()],
            [torch.ones(1)],
        )
        uses = torch.zeros(1, 3, dtype=torch.bool)
        uses[0, i % 3] = True
        with torch.no_grad():
            alone = ops.label_collage(generator, ops.truncated_latents([20 + i], CONFIG.z_dim), base, mixture, uses)
        expected = ((alone.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
        assert _close(_image(response), expected)


def test_feature_collage_identities_and_shift(client, model, generator):
    full = _upload(client, _mask(0, R, 0, R))
    base, reference = {"seed": 30, "class_id": "dog"}, {"seed": 31, "class_id": "dog"}
    response = _edit(client, "feature_collage", inputs={"base": base, "references": [{**reference, "mask": full, "layers": [1]}]})
    assert _close(_image(response), _local(generator, 31, 1))  # one mask, no shift: the reference
    half = _upload(client, _mask(0, R, 0, R // 2))
    moved = _edit(
        client, "feature_collage", inputs={"base": base, "references": [{**reference, "mask": half, "layers": [0, 1], "shift": [8, 0]}]}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["extras"]["references"] == [{"class": {"dog": 1.0}, "layers": [0, 1], "shift": [8, 0]}]
    assert not _close(_image(moved), _local(generator, 30, 1), levels=8)


def test_project_then_edit_the_projection(client, model, generator):
    target = _local(generator, 41, 3)
    image = _upload(client, target)
    response = client.post(
        "/v1/edits",
        json={"model": MODEL, "op": "project", "params": {"steps": 40, "candidates": ["owl", "fox"]}, "inputs": {"image": image}},
    )
    assert response.status_code == 200, response.text
    fit = response.json()
    extras = fit["extras"]
    assert extras["class_name"] in ("owl", "fox") and set(extras["candidates"]) == {"owl", "fox"}
    assert len(extras["z"]) == CONFIG.z_dim and extras["progress"][-1]["step"] == 40
    mask = _upload(client, _mask(0, R, 0, R))
    # the projection's own class everywhere reproduces the fit
    again = _edit(
        client,
        "label_collage",
        inputs={"base": {"projection": fit["result_id"]}, "regions": [{"mask": mask, "class_id": extras["class_name"]}]},
    )
    fitted = _image(
        client.post(
            "/v1/edits",
            json={
                "model": MODEL,
                "op": "project",
                "params": {"steps": 40, "candidates": ["owl", "fox"]},
                "inputs": {"image": image},
                "output": {"inline": True},
            },
        )
    )
    assert _close(_image(again), fitted)
    relabelled = _edit(client, "sample", inputs={"projection": fit["result_id"], "class_id": "cat"})
    assert relabelled.status_code == 200 and not _close(_image(relabelled), fitted)


@pytest.mark.parametrize(
    "op,params,inputs,status,detail",
    [
        ("sample", {}, {"seed": 1}, 422, "needs a class"),
        ("sample", {}, {"seed": 1, "class_id": "whale"}, 422, "not a class"),
        ("sample", {}, {"seed": 1, "class_id": 7}, 422, "indices are 0..3"),
        ("sample", {}, {"z": [0.0] * 3, "class_id": 0}, 422, "must have 16 numbers"),
        ("sample", {}, {"seed": 1, "class_weights": {"cat": 0}}, 422, "positive weight"),
        ("sample", {"truncation": 0}, {"seed": 1, "class_id": 0}, 422, "truncation"),
        ("label_collage", {"layers": [3]}, {"base": {"seed": 1, "class_id": 0}, "regions": "MASK"}, 422, "out of range"),
        ("label_collage", {}, {"base": {"seed": 1, "class_id": 0}, "regions": []}, 422, "regions"),
        ("label_collage", {}, {"base": {"class_id": 0}, "regions": "MASK"}, 422, "needs one of seed"),
        ("label_collage", {}, {"base": {"seed": 1, "class_id": 0}, "regions": "EMPTY"}, 422, "empty"),
        ("label_collage", {}, {"base": {"seed": 1, "class_id": 0}, "regions": "BIG"}, 422, "resize_masks"),
        ("feature_collage", {}, {"base": {"seed": 1, "class_id": 0}, "references": "SHIFT"}, 422, "off a 32x32"),
        ("label_collage", {}, {"base": {"projection": "0" * 64}, "regions": "MASK"}, 422, "not the result_id"),
        ("project", {}, {"image": "SMALL"}, 422, "params.resize"),
    ],
)
def test_bad_inputs_are_4xx(client, model, op, params, inputs, status, detail):
    def region(mask):
        return [{"mask": _upload(client, mask), "class_id": 1}]

    if inputs.get("regions") == "MASK":
        inputs = {**inputs, "regions": region(_mask(0, 8, 0, 8))}
    elif inputs.get("regions") == "EMPTY":
        inputs = {**inputs, "regions": region(np.zeros((R, R), np.uint8))}
    elif inputs.get("regions") == "BIG":
        inputs = {**inputs, "regions": region(_mask(0, 8, 0, 8, size=64))}
    elif inputs.get("references") == "SHIFT":
        inputs = {**inputs, "references": [{"seed": 2, "class_id": 1, "mask": _upload(client, _mask(0, 8, 0, 8)), "shift": [40, 0]}]}
    elif inputs.get("image") == "SMALL":
        inputs = {"image": _upload(client, np.zeros((16, 16, 3), np.uint8))}
    assert_problem(_edit(client, op, params, inputs), status, detail)


def test_resize_masks_accepts_other_sizes(client, model):
    mask = _upload(client, _mask(0, 32, 0, 32, size=64))
    response = _edit(
        client, "label_collage", {"resize_masks": True}, {"base": {"seed": 1, "class_id": 0}, "regions": [{"mask": mask, "class_id": 2}]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["extras"]["regions"][0]["area"] == 0.25


def test_demo_grid_runs_every_collage_op(client, model):
    from service.tools.demo import neural_collage_grid

    info = client.get(f"/v1/models/{MODEL}").json()
    lines: list[str] = []
    grid = neural_collage_grid(client, info, say=lines.append, seeds=(1, 2), cell=32)
    assert grid.size == (32 * 8, 2 * (14 + 32))  # base, 3 targets, late-only, reference, pasted, mask
    assert len(lines) == 2 and "middle" in lines[0]  # no shipped masks for this model: the centred box


NON_FINITE_BODIES = {  # raw JSON text: Python's json would read NaN and Infinity, and 1e309 overflows to inf
    "z-nan": '{"seed": null, "z": [NaN], "class_id": 0}',
    "z-infinity": '{"z": [Infinity], "class_id": 0}',
    "z-minus-infinity": '{"z": [-Infinity], "class_id": 0}',
    "z-1e309": '{"z": [1e309], "class_id": 0}',
    "z-1e308": '{"z": [1e308], "class_id": 0}',
    "weights-nan": '{"seed": 1, "class_weights": {"0": NaN}}',
    "weights-1e308": '{"seed": 1, "class_weights": {"0": 1e308}}',
    "weights-1e309": '{"seed": 1, "class_weights": {"0": 1e309}}',
}


@pytest.mark.parametrize("name", list(NON_FINITE_BODIES))
def test_non_finite_and_huge_latents_are_a_4xx(client, model, name):
    body = '{"model": "%s", "op": "sample", "inputs": %s}' % (MODEL, NON_FINITE_BODIES[name])
    response = client.post("/v1/edits", content=body, headers={"content-type": "application/json"})
    # NaN/Infinity are not JSON (400); 1e309 parses to infinity and 1e308 is past the bound (422)
    assert_problem(response, 400 if "nan" in name or "infinity" in name else 422)


@pytest.mark.parametrize(
    "inputs",
    [
        {"seed": "7", "class_id": 0},
        {"seed": True, "class_id": 0},
        {"seed": 7.5, "class_id": 0},
        {"seed": 7, "class_id": True},
        {"seed": 7, "class_id": 1.0},
        {"seed": 7, "class_id": "1"},
    ],
)
def test_seeds_and_classes_are_not_coerced(client, model, inputs):
    response = client.post("/v1/edits", json={"model": MODEL, "op": "sample", "inputs": inputs})
    assert_problem(response, 422)
