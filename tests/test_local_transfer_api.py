"""Editing in Style through the REST API (real Serve + SeaweedFS): catalog, part maps, local transfer.

Runs on the shipped random-init model: the method's plumbing does not need a trained generator, and
results are checked for what must hold on any generator (q = 0 reproduces S, batching, caching).
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.helpers import png_bytes, random_png
from tests.test_api import MODEL, assert_problem, decode

K = 4


def _edit(client, op: str, params: dict | None = None, inputs: dict | None = None, model: str = MODEL):
    return client.post(
        "/v1/edits", json={"model": model, "op": op, "params": params or {}, "inputs": inputs or {}, "output": {"inline": True}}
    )


def _image(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return decode(base64.b64decode(response.json()["image_base64"]))


def _same_image(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to one uint8 level: a cached result may come from another batch size, whose conv
    kernels can round the last float bit differently (the exact q = 0 / q = 1 identities are
    tested on tensors in tests/test_catalog.py)."""
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def _upload(client, png: bytes) -> str:
    response = client.post("/v1/assets", files={"file": ("x.png", png, "image/png")})
    assert response.status_code in (200, 201), response.text
    return response.json()["asset_id"]


@pytest.fixture(scope="module")
def catalog(client):
    response = _edit(client, "catalog", {"k": K, "n_samples": 24, "seed": 5, "labels": ["eyes", "mouth", "hair", "background"]})
    assert response.status_code == 200, response.text
    return response.json()


def test_catalog_op_stores_the_catalog_and_lists_it(client, catalog):
    meta = catalog["extras"]["catalog"]
    assert meta["k"] == K and meta["labels"] == ["eyes", "mouth", "hair", "background"]
    assert catalog["width"] == 8 * 64 and catalog["height"] == 2 * 64  # 8 samples above their part maps
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}[MODEL]
    assert listed["catalog"]["sha256"] == meta["sha256"]
    assert [layer["name"] for layer in listed["catalog"]["layers"]][:3] == ["conv1", "to_rgb1", "convs.0"]
    assert {op["name"] for op in listed["ops"]} >= {"catalog", "part_map", "local_transfer"}


def test_catalog_labels_can_be_renamed(client, catalog):
    response = client.put(f"/v1/models/{MODEL}/catalog/labels", json={"labels": {"3": "skin"}})
    assert response.status_code == 200, response.text
    assert response.json()["labels"] == ["eyes", "mouth", "hair", "skin"]
    assert response.json()["sha256"] == catalog["extras"]["catalog"]["sha256"]  # names only; tensors unchanged
    assert_problem(client.put(f"/v1/models/{MODEL}/catalog/labels", json={"labels": {"9": "x"}}), 422)
    assert_problem(client.put(f"/v1/models/{MODEL}/catalog/labels", json={"labels": {"0": "Bad Name"}}), 422)
    client.put(f"/v1/models/{MODEL}/catalog/labels", json={"labels": {"3": "background"}})
    # attachments and their edits are the families' declarations: others are 404, on a model of another family too
    assert_problem(client.put(f"/v1/models/{MODEL}/catalog/names", json={"labels": {"3": "x"}}), 404, "no model attachment")
    assert_problem(client.put("/v1/models/collage-faces/catalog/labels", json={"labels": {"3": "x"}}), 404, "has no attachment")


def test_the_openapi_document_types_each_declared_attachment_edit(client):
    spec = client.get("/openapi.json").json()
    assert "/v1/models/{name}/{attachment}/{edit}" not in spec["paths"], "the generic route is published as its declared edits"
    put = spec["paths"]["/v1/models/{name}/catalog/labels"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CatalogLabels"}
    assert put["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CatalogInfo"}
    assert [p["name"] for p in put["parameters"]] == ["name"] and "application/problem+json" in put["responses"]["422"]["content"]
    catalog = spec["components"]["schemas"]["ModelInfo"]["properties"]["catalog"]
    assert {"$ref": "#/components/schemas/CatalogInfo"} in catalog["anyOf"]
    assert spec["components"]["schemas"]["CatalogInfo"]["properties"]["layers"]["items"] == {"$ref": "#/components/schemas/CatalogLayer"}


def test_part_map_is_a_colour_coded_png(client, catalog):
    response = _edit(client, "part_map", inputs={"target": {"seed": 3}})
    image = _image(response)
    assert image.shape == (64, 64, 3)
    extras = response.json()["extras"]
    assert abs(sum(extras["share"].values()) - 1) < 1e-3
    colours = {tuple(c) for c in image.reshape(-1, 3).tolist()}
    assert colours <= {tuple(v) for v in extras["legend"].values()}


def test_transfer_of_eyes_between_two_seeds(client, catalog):
    target = _image(_edit(client, "sample", inputs={"seed": 1}))
    response = _edit(
        client, "local_transfer", {"parts": ["eyes"], "query": "simple", "strength": 20}, {"target": {"seed": 1}, "reference": {"seed": 2}}
    )
    result = _image(response)
    extras = response.json()["extras"]
    assert extras["total_channels_changed"] > 0 and list(extras["part_weights"]) == ["0:eyes"]
    assert not np.array_equal(result, target)
    # Strength 0 asks for no change: exactly S (same styles, same synthesis as `sample`).
    unchanged = _image(
        _edit(
            client,
            "local_transfer",
            {"parts": ["eyes"], "query": "simple", "strength": 0},
            {"target": {"seed": 1}, "reference": {"seed": 2}},
        )
    )
    assert _same_image(unchanged, target)
    # Global transfer with weight 1 gives R's styles everywhere: exactly R.
    reference = _image(_edit(client, "sample", inputs={"seed": 2}))
    swapped = _image(
        _edit(client, "local_transfer", {"query": "global", "strength": 1.0}, {"target": {"seed": 1}, "reference": {"seed": 2}})
    )
    assert _same_image(swapped, reference)


def test_sequential_query_and_layer_range(client, catalog):
    response = _edit(
        client,
        "local_transfer",
        {"parts": ["mouth", "hair"], "query": "sequential", "layers": ["convs.2", "convs.3"]},
        {"target": {"seed": 4}, "reference": {"seed": 9}},
    )
    assert response.status_code == 200, response.text
    assert set(response.json()["extras"]["channels_changed"]) <= {"convs.2", "convs.3"}


def test_transfer_onto_a_projected_upload(client, catalog):
    asset = _upload(client, random_png(64, 64, seed=77))
    projected = _edit(client, "project", {"steps": 5}, {"image": asset})
    assert projected.status_code == 200, projected.text
    projection = projected.json()["result_id"]
    response = _edit(
        client,
        "local_transfer",
        {"parts": ["eyes"], "query": "simple", "strength": 20},
        {"target": {"projection": projection}, "reference": {"seed": 2}},
    )
    result = _image(response)
    # The projection's own image comes back unchanged at strength 0.
    same = _image(
        _edit(
            client,
            "local_transfer",
            {"parts": ["eyes"], "strength": 0, "query": "simple"},
            {"target": {"projection": projection}, "reference": {"seed": 2}},
        )
    )
    assert _same_image(same, _image(projected))
    assert not np.array_equal(result, same)


def test_transfer_by_mask(client, catalog):
    mask = np.zeros((64, 64), np.uint8)
    mask[16:32, 8:56] = 255
    asset = _upload(client, png_bytes(mask))
    response = _edit(
        client, "local_transfer", {"query": "simple", "strength": 10}, {"target": {"seed": 1}, "reference": {"seed": 2}, "mask": asset}
    )
    assert response.status_code == 200, response.text
    weights = response.json()["extras"]["part_weights"]
    assert abs(sum(weights.values()) - 1) < 1e-3


def test_many_pairs_run_as_one_batch(client, catalog):
    from concurrent.futures import ThreadPoolExecutor

    def run(seed: int):
        return _edit(
            client,
            "local_transfer",
            {"parts": ["eyes"], "query": "simple", "strength": 5},
            {"target": {"seed": seed}, "reference": {"seed": seed + 100}},
        )

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(run, range(40, 46)))
    assert all(r.status_code == 200 for r in responses)
    assert max(r.json()["timings"]["group_size"] for r in responses) > 1


@pytest.mark.parametrize(
    "params, inputs, fragment",
    [
        ({"parts": ["nose"]}, {}, "unknown part 'nose'"),
        ({"parts": ["eyes"], "strength": 101}, {}, "strength"),
        ({"parts": ["eyes"], "strength": -1}, {}, "strength"),
        ({"query": "global", "strength": 1.5}, {}, "global transfer"),
        ({}, {}, "exactly one"),
        ({"parts": ["eyes"], "layers": ["convs.99"]}, {}, "unknown layer"),
        ({"parts": ["eyes"]}, {"target": {"seed": 1, "w": [0.0]}}, "exactly one of seed"),
        ({"parts": ["eyes"]}, {"reference": {"projection": "0" * 64}}, "not the result_id"),
    ],
)
def test_bad_transfer_requests_are_4xx(client, catalog, params, inputs, fragment):
    body_inputs = {"target": {"seed": 1}, "reference": {"seed": 2}, **inputs}
    response = _edit(client, "local_transfer", params, body_inputs)
    problem = assert_problem(response, 422)
    assert fragment in str(problem), problem


def test_mask_of_the_wrong_size_or_empty_is_4xx(client, catalog):
    wrong = _upload(client, png_bytes(np.full((32, 32), 255, np.uint8)))
    problem = assert_problem(_edit(client, "local_transfer", {}, {"target": {"seed": 1}, "reference": {"seed": 2}, "mask": wrong}), 422)
    assert "32x32" in problem["detail"]
    empty = _upload(client, png_bytes(np.zeros((64, 64), np.uint8)))
    problem = assert_problem(_edit(client, "local_transfer", {}, {"target": {"seed": 1}, "reference": {"seed": 2}, "mask": empty}), 422)
    assert "empty" in problem["detail"]


def test_projection_of_another_op_is_refused(client, catalog):
    sample = _edit(client, "sample", inputs={"seed": 1}).json()["result_id"]
    problem = assert_problem(_edit(client, "part_map", inputs={"target": {"projection": sample}}), 422)
    assert "project" in problem["detail"]


def test_catalog_params_are_validated(client):
    assert_problem(_edit(client, "catalog", {"k": 1}), 422)
    assert_problem(_edit(client, "catalog", {"k": 3, "labels": ["a", "b"]}), 422)
    assert_problem(_edit(client, "catalog", {"cluster_layer": "convs.77"}), 422)


def test_shipped_faces_model_serves_its_catalog(client):
    """The trained demo model ships a labelled catalog: it is listed and its parts can be named at once."""
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}["style-faces"]
    assert listed["random_init"] is False and listed["resolution"] == 32
    assert {"eyes", "mouth"} <= set(listed["catalog"]["labels"]) and listed["catalog"]["k"] == 12
    response = _edit(client, "local_transfer", {"parts": ["eyes"]}, {"target": {"seed": 1}, "reference": {"seed": 2}}, model="style-faces")
    assert _image(response).shape == (32, 32, 3)
    assert response.json()["extras"]["total_channels_changed"] > 0
