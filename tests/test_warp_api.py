"""Pose transfer (family ``warp``) through the REST API (real Serve + SeaweedFS) on a random-init model."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deployments.warp.checkpoint import export
from deployments.warp.networks import WarpConfig, WarpingGAN
from tests.helpers import png_bytes
from tests.test_api import assert_problem, decode
from training.train_warp import examples_of

MODEL = "warp-test-random"
HEIGHT, WIDTH = 32, 16


@pytest.fixture(scope="module")
def model(client):
    from service.config import get_settings
    from service.registry import ModelRegistry
    from service.storage import AssetStore

    torch.manual_seed(3)
    network = WarpingGAN(
        WarpConfig(
            height=HEIGHT, width=WIDTH, parser_channels=4, parser_blocks=1, matcher_channels=4, renderer_channels=4, renderer_blocks=1
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        manifest = export(network, Path(tmp), MODEL, "test model", examples_of(3, HEIGHT, WIDTH))
        ModelRegistry(AssetStore(get_settings())).register_dir(Path(tmp))
        files = {p.name: p.read_bytes() for p in (Path(tmp) / "examples").iterdir()}
    return {"manifest": manifest, "files": files}


def _transfer(client, inputs: dict):
    return client.post("/v1/edits", json={"model": MODEL, "op": "pose_transfer", "inputs": inputs, "output": {"inline": True}})


def _upload(client, data: bytes) -> str:
    response = client.post("/v1/assets", files={"file": ("x.png", data, "image/png")})
    assert response.status_code in (200, 201), response.text
    return response.json()["asset_id"]


def _example(model) -> tuple[str, dict]:
    image_id, example = next(iter(model["manifest"]["examples"].items()))
    return image_id, example


def test_the_model_lists_its_size_keypoints_and_examples(client, model):
    info = client.get(f"/v1/models/{MODEL}").json()
    assert info["family"] == "warp" and info["image_size"] == [HEIGHT, WIDTH]
    assert info["keypoint_names"][:2] == ["nose", "neck"] and len(info["keypoint_names"]) == 18
    assert len(info["examples"]) == 3 and [op["name"] for op in info["ops"]] == ["pose_transfer"]


def test_an_example_image_needs_only_the_target_pose(client, model):
    image_id, example = _example(model)
    assert client.get(f"/v1/assets/{image_id}").status_code == 200, "registering the model stored its examples as assets"
    response = _transfer(client, {"image": image_id, "target_keypoints": example["target_keypoints"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert decode(base64.b64decode(body["image_base64"])).shape == (HEIGHT, WIDTH, 3)
    parsing = client.get(f"/v1/assets/{body['extras']['parsing_asset_id']}")
    assert parsing.status_code == 200 and parsing.json()["width"] == WIDTH
    assert abs(sum(body["extras"]["parsing_shares"].values()) - 1) < 0.05
    again = _transfer(client, {"image": image_id, "target_keypoints": example["target_keypoints"]})
    assert again.json()["cached"] and again.json()["result_id"] == body["result_id"]
    other_pose = _transfer(client, {"image": image_id, "target_keypoints": example["keypoints"]})
    assert other_pose.status_code == 200 and other_pose.json()["result_id"] != body["result_id"]


def test_every_key_may_use_the_examples_but_not_the_parsings_others_get(client, model):
    from tests.conftest import auth_header

    image_id, example = _example(model)
    alice, bob = auth_header("alice"), auth_header("bob")
    body = {"model": MODEL, "op": "pose_transfer", "inputs": {"image": image_id, "target_keypoints": example["keypoints"]}}
    response = client.post("/v1/edits", json=body, headers=alice)
    assert response.status_code == 200, "examples shipped with a checkpoint are public"
    parsing_id = response.json()["extras"]["parsing_asset_id"]
    assert client.get(f"/v1/assets/{parsing_id}", headers=alice).status_code == 200
    assert client.get(f"/v1/assets/{parsing_id}", headers=bob).status_code == 404, "an edit's parsing belongs to its key"


def test_any_image_with_its_keypoints_and_parsing(client, model):
    image_id, example = _example(model)
    parsing_id = example["parsing"]
    fresh = decode(client.get(f"/v1/assets/{image_id}", params={"redirect": True}, follow_redirects=True).content)
    flipped = _upload(client, png_bytes(np.ascontiguousarray(fresh[::-1])))  # not an example: keypoints and parsing required
    assert_problem(_transfer(client, {"image": flipped, "target_keypoints": example["target_keypoints"]}), 422, "required")
    response = _transfer(
        client,
        {"image": flipped, "keypoints": example["keypoints"], "parsing": parsing_id, "target_keypoints": example["target_keypoints"]},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "change, detail",
    [
        (lambda k: k[:17], "18 entries"),
        (lambda k: [[WIDTH + 5, 3]] + k[1:], "outside"),
        (lambda k: [k[0], None] + k[2:], "torso"),
        (lambda k: [[float("nan"), 2]] + k[1:], ""),
    ],
)
def test_bad_target_keypoints_are_refused(client, model, change, detail):
    image_id, example = _example(model)
    body = json.loads(
        json.dumps(
            {"model": MODEL, "op": "pose_transfer", "inputs": {"image": image_id, "target_keypoints": change(example["target_keypoints"])}},
            allow_nan=True,
        )
    )
    response = client.post("/v1/edits", content=json.dumps(body, allow_nan=True), headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if detail:
        assert_problem(response, 422, detail)


def test_wrong_sized_images_and_non_label_parsings_are_refused(client, model):
    image_id, example = _example(model)
    big = _upload(client, png_bytes(np.zeros((HEIGHT * 2, WIDTH * 2, 3), np.uint8)))
    assert_problem(
        _transfer(
            client,
            {
                "image": big,
                "keypoints": example["keypoints"],
                "parsing": example["parsing"],
                "target_keypoints": example["target_keypoints"],
            },
        ),
        422,
        "works at",
    )
    not_labels = _upload(client, png_bytes(np.full((HEIGHT, WIDTH), 200, np.uint8)))
    assert_problem(
        _transfer(
            client,
            {"image": image_id, "keypoints": example["keypoints"], "parsing": not_labels, "target_keypoints": example["target_keypoints"]},
        ),
        422,
        "class indices",
    )


def test_a_photo_larger_than_the_model_is_fitted_by_its_crop_box(client, model):
    image_id, example = _example(model)
    fresh = decode(client.get(f"/v1/assets/{image_id}", params={"redirect": True}, follow_redirects=True).content)
    parsing = decode(client.get(f"/v1/assets/{example['parsing']}", params={"redirect": True}, follow_redirects=True).content)[..., 0]
    # the example person at twice its size, 20 px right and 14 px down in a larger photo
    photo = np.zeros((100, 80, 3), np.uint8)
    photo[14 : 14 + 2 * HEIGHT, 20 : 20 + 2 * WIDTH] = fresh.repeat(2, axis=0).repeat(2, axis=1)
    labels = np.zeros((100, 80), np.uint8)
    labels[14 : 14 + 2 * HEIGHT, 20 : 20 + 2 * WIDTH] = parsing.repeat(2, axis=0).repeat(2, axis=1)

    def in_the_photo(points):  # pixel centre p of the model's image is 2p + 0.5 of the scaled copy
        return [None if p is None else [20 + 2 * p[0] + 0.5, 14 + 2 * p[1] + 0.5] for p in points]

    inputs = {
        "image": _upload(client, png_bytes(photo)),
        "parsing": _upload(client, png_bytes(labels)),
        "keypoints": in_the_photo(example["keypoints"]),
        "target_keypoints": in_the_photo(example["target_keypoints"]),
    }
    body = {"model": MODEL, "op": "pose_transfer", "inputs": inputs, "params": {"crop_box": [20, 14, 2 * WIDTH, 2 * HEIGHT]}}
    response = client.post("/v1/edits", json=body)
    assert response.status_code == 200, response.text
    assert (response.json()["width"], response.json()["height"]) == (WIDTH, HEIGHT)
    fit = response.json()["extras"]["fit"]["image"]
    assert fit == {"photo_size": [80, 100], "box": [20, 14, 2 * WIDTH, 2 * HEIGHT], "scale": [0.5, 0.5], "mode": "stretch"}
    # a box around the keypoints (checked first, in the model's frame) that reaches past the photo's edge
    beyond = {**body, "params": {"crop_box": [20, 14, 4 * WIDTH, 4 * HEIGHT]}}
    assert_problem(
        client.post("/v1/edits", json=beyond), 422, "params.crop_box [20, 14, 64, 128] (x, y, width, height) reaches outside the 80x100"
    )
    in_the_model = {**inputs, "keypoints": example["keypoints"], "target_keypoints": example["target_keypoints"]}
    assert_problem(_transfer(client, in_the_model), 422, "works at")  # no crop box: the model's size, as before
