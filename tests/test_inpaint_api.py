"""EdgeConnect inpainting through the REST API (real Serve + SeaweedFS) on a random-init model."""

from __future__ import annotations

import base64
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from deployments.inpaint.checkpoint import export
from tests.conftest import TEST_INPAINT_PIXEL_BUDGET
from tests.helpers import png_bytes
from tests.test_api import assert_problem, decode
from tests.test_edgeconnect import random_edgeconnect

MODEL = "inpaint-test-random"


@pytest.fixture(scope="module")
def model(client):
    from service.config import get_settings
    from service.registry import ModelRegistry
    from service.storage import AssetStore

    with tempfile.TemporaryDirectory() as tmp:
        export(random_edgeconnect(seed=4), Path(tmp), name=MODEL, random_init=True, description="test model")
        ModelRegistry(AssetStore(get_settings())).register_dir(Path(tmp))
    return MODEL


def _upload(client, array: np.ndarray) -> str:
    response = client.post("/v1/assets", files={"file": ("x.png", png_bytes(array), "image/png")})
    assert response.status_code in (200, 201), response.text
    return response.json()["asset_id"]


def _inpaint(client, image: str, mask: str, params: dict | None = None, edges: str | None = None):
    inputs = {"image": image, "mask": mask, **({"edges": edges} if edges else {})}
    return client.post(
        "/v1/edits", json={"model": MODEL, "op": "inpaint", "params": params or {}, "inputs": inputs, "output": {"inline": True}}
    )


def _image(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return decode(base64.b64decode(response.json()["image_base64"]))


def _photo(height=40, width=36, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (30, 20, 60)  # a dark half and a bright half: a Canny edge between
    image[:, width // 2 :] = (230, 220, 160)
    return np.clip(image.astype(int) + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)


def _hole(height=40, width=36, box=(10, 25, 8, 28)) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    top, bottom, left, right = box
    mask[top:bottom, left:right] = 255
    return mask


def test_inpaint_round_trip_keeps_size_and_outside_and_returns_the_edge_map(client, model):
    photo, hole = _photo(), _hole()
    response = _inpaint(client, _upload(client, photo), _upload(client, hole))
    result = _image(response)
    assert result.shape == photo.shape  # 40 x 36: padded to multiples of 4 inside, cropped back
    outside = hole == 0
    assert np.array_equal(result[outside], photo[outside])
    extras = response.json()["extras"]
    assert extras["empty_mask"] is False and extras["hole_pixels"] == 15 * 20 and extras["user_edges"] is False
    edges = client.get(f"/v1/assets/{extras['edges_asset_id']}")
    assert edges.status_code == 200 and (edges.json()["width"], edges.json()["height"]) == (36, 40)
    assert edges.json()["mode"] == "L"
    edge_map = decode(client.get(edges.json()["url"]).content)[..., 0]  # decode gives RGB
    assert edge_map.shape == (40, 36)


def _edge_map(client, response) -> np.ndarray:
    info = client.get(f"/v1/assets/{response.json()['extras']['edges_asset_id']}").json()
    return decode(client.get(info["url"]).content)[..., 0]  # decode gives RGB


def test_edge_map_param_picks_the_official_inference_or_training_path(client, model):
    photo, hole = _upload(client, _photo(seed=5)), _upload(client, _hole())
    default = _inpaint(client, photo, hole)
    generated = _inpaint(client, photo, hole, {"edge_map": "generated"})
    composited = _inpaint(client, photo, hole, {"edge_map": "composited"})
    # the default is "generated": the same canonical params, so the same result (a cache hit)
    assert generated.json()["result_id"] == default.json()["result_id"] and generated.json()["cached"] is True
    assert composited.json()["result_id"] != default.json()["result_id"] and composited.json()["cached"] is False
    assert not np.array_equal(_image(composited), _image(default))
    outside = _hole() == 0
    canny, raw = _edge_map(client, composited), _edge_map(client, default)
    assert canny[:, 17:19][outside[:, 17:19]].max() == 255  # composited: the colour step's Canny edge, outside
    assert not np.array_equal(raw[outside], canny[outside])  # generated: the edge generator's own map there
    schema = client.get(f"/v1/models/{MODEL}").json()["ops"][0]["params_schema"]["properties"]["edge_map"]
    assert schema["enum"] == ["generated", "composited"] and schema["default"] == "generated" and "official" in schema["description"]


def test_a_models_own_param_defaults_fill_what_a_request_leaves_out(client, model):
    from service.config import get_settings
    from service.errors import ProblemError
    from service.registry import ModelRegistry
    from service.storage import AssetStore

    registry = ModelRegistry(AssetStore(get_settings()))
    name = "inpaint-test-composited"
    with tempfile.TemporaryDirectory() as tmp:
        export(
            random_edgeconnect(seed=4),
            Path(tmp),
            name=name,
            random_init=True,
            description="trained on composited edges",
            param_defaults={"inpaint": {"edge_map": "composited"}},
        )
        registry.register_dir(Path(tmp))
        for bad, says in [
            ({"inpaint": {"edge_map": "canny"}}, "edge_map"),
            ({"inpaint": {"colour": 1}}, "colour"),
            ({"sample": {}}, "sample"),
        ]:
            manifest = {**json.loads((Path(tmp) / "model.json").read_text()), "name": "inpaint-test-bad", "param_defaults": bad}
            with pytest.raises(ProblemError, match=says):  # refused when registered, not on every request after
                registry.register(manifest, (Path(tmp) / "weights.safetensors").read_bytes())
    photo, hole = _upload(client, _photo(seed=6)), _upload(client, _hole())

    def edit(params: dict) -> dict:
        body = {"model": name, "op": "inpaint", "params": params, "inputs": {"image": photo, "mask": hole}}
        response = client.post("/v1/edits", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    default, composited, generated = edit({}), edit({"edge_map": "composited"}), edit({"edge_map": "generated"})
    assert composited["result_id"] == default["result_id"] and composited["cached"] is True
    assert generated["result_id"] != default["result_id"]  # a request still picks the other path
    schema = client.get(f"/v1/models/{name}").json()["ops"][0]["params_schema"]["properties"]["edge_map"]
    assert schema["default"] == "composited"


def test_user_edges_and_dilation(client, model):
    photo, hole = _upload(client, _photo()), _upload(client, _hole())
    strokes = np.zeros((40, 36), np.uint8)
    strokes[17, :] = 255
    steered = _inpaint(client, photo, hole, edges=_upload(client, strokes))
    assert steered.status_code == 200 and steered.json()["extras"]["user_edges"] is True
    plain = _inpaint(client, photo, hole)
    assert not np.array_equal(_image(steered), _image(plain))
    composited = {"edge_map": "composited"}
    steered_composited = _inpaint(client, photo, hole, composited, edges=_upload(client, strokes))
    assert not np.array_equal(_image(steered_composited), _image(_inpaint(client, photo, hole, composited)))
    assert np.all(_edge_map(client, steered_composited)[17, 8:28] == 255)  # the stroke, inside the hole
    grown = _inpaint(client, photo, hole, {"dilate": 2})
    assert grown.json()["extras"]["hole_pixels"] == 19 * 24


def test_empty_mask_returns_the_input_flagged(client, model):
    photo = _photo()
    response = _inpaint(client, _upload(client, photo), _upload(client, np.zeros((40, 36), np.uint8)))
    assert np.array_equal(_image(response), photo)
    assert response.json()["extras"]["empty_mask"] is True and response.json()["extras"]["hole_pixels"] == 0


def test_same_size_requests_share_a_batch(client, model):
    photo = _upload(client, _photo(seed=3))
    masks = [_upload(client, _hole(box=(i, i + 8, 4, 30))) for i in range(2, 30, 5)]
    with ThreadPoolExecutor(len(masks)) as pool:
        responses = list(pool.map(lambda m: _inpaint(client, photo, m), masks))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert max(r.json()["timings"]["group_size"] for r in responses) > 1


def test_resize_mask_flag(client, model):
    photo = _upload(client, _photo())
    big = _upload(client, np.kron(_hole(), np.ones((2, 2), np.uint8)))
    assert_problem(_inpaint(client, photo, big), 422, "resize_mask")
    response = _inpaint(client, photo, big, {"resize_mask": True})
    assert response.status_code == 200 and response.json()["extras"]["hole_pixels"] == 15 * 20


@pytest.mark.parametrize(
    "mask,params,detail",
    [
        (np.full((40, 36), 255, np.uint8), {}, "whole image"),
        (np.full((40, 36), 120, np.uint8), {}, "not black and white"),
        (_hole(), {"dilate": 40}, "less than or equal to 32"),
        (_hole(), {"sigma": 0}, "greater than 0"),
        (_hole(), {"edge_map": "canny"}, "params.edge_map"),
        (_hole(), {"edge_map": True}, "params.edge_map"),
    ],
)
def test_bad_masks_and_params_are_422(client, model, mask, params, detail):
    assert_problem(_inpaint(client, _upload(client, _photo()), _upload(client, mask), params), 422, detail)


def test_unknown_asset_is_404(client, model):
    assert_problem(_inpaint(client, _upload(client, _photo()), "0" * 64), 404, "does not exist")


def test_demo_grid_inpaints_two_photos_with_two_holes(client, model):
    from service.tools.demo import demo_holes, inpaint_grid

    holes = demo_holes(32)
    assert all(m.dtype == np.uint8 and 0 < (m > 0).mean() < 0.5 for m in holes.values())
    lines: list[str] = []
    info = client.get(f"/v1/models/{MODEL}").json()
    grid = inpaint_grid(client, info, say=lines.append, size=32, cell=32)
    assert grid.size == (4 * 32, 16 + 4 * 32) and len(lines) == 4


def test_a_large_photo_runs_on_crops_and_over_the_pixel_budget_is_a_413(client, model):
    height, width = 1000, 900  # over the test service's budget for inpaint whole (model_pixel_budgets)
    y, x = np.mgrid[0:height, 0:width]
    photo = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=-1).astype(np.uint8)  # compresses well
    hole = np.zeros((height, width), np.uint8)
    hole[100:140, 120:150] = 255
    hole[900:960, 800:820] = 255
    photo_id, hole_id = _upload(client, photo), _upload(client, hole)
    body = assert_problem(_inpaint(client, photo_id, hole_id, {"strategy": "original"}), 413, "max_model_pixels")
    assert (
        body["budget_pixels"] == TEST_INPAINT_PIXEL_BUDGET and "strategy 'crop'" in body["detail"] and "resize_limit <=" in body["detail"]
    )
    response = client.post(
        "/v1/edits", json={"model": MODEL, "op": "inpaint", "params": {"crop_margin": 32}, "inputs": {"image": photo_id, "mask": hole_id}}
    )
    assert response.status_code == 200, response.text
    extras = response.json()["extras"]
    assert extras["strategy"] == "crop" and len(extras["crop_boxes"]) == 2  # far apart: two crops, one batch
    assert extras["model_pixels"] < 200 * 200
    result = decode(client.get(response.json()["url"]).content)
    outside = hole == 0
    assert result.shape == photo.shape and np.array_equal(result[outside], photo[outside])
    assert not np.array_equal(result[~outside], photo[~outside])
    assert_problem(_inpaint(client, photo_id, hole_id, {"strategy": "tile"}), 422, "params.strategy")


def test_output_region_returns_the_holes_box_of_the_full_result(client, model):
    photo, hole = _photo(seed=7), _hole(box=(12, 30, 5, 21))  # rows 12-29, cols 5-20
    photo_id, hole_id = _upload(client, photo), _upload(client, hole)
    body = {"model": MODEL, "op": "inpaint", "params": {"dilate": 0}, "inputs": {"image": photo_id, "mask": hole_id}}
    full = client.post("/v1/edits", json={**body, "output": {"inline": True}})
    region = client.post("/v1/edits", json={**body, "output": {"inline": True, "region": True}})
    assert region.status_code == 200, region.text
    assert region.json()["result_id"] != full.json()["result_id"]  # output.region is part of the cache key
    extras = region.json()["extras"]
    assert extras["region"] == {"x": 5, "y": 12, "width": 16, "height": 18}
    assert extras["full_size"] == {"width": 36, "height": 40}
    assert (region.json()["width"], region.json()["height"]) == (16, 18)
    box = _image(region)
    # the same edit computed twice, each alone in its batch: the region's pixels are the full result's
    assert np.array_equal(box, _image(full)[12:30, 5:21])
    # what a compositing client does: paste the region at its offset into the photo it sent
    pasted = photo.copy()
    pasted[12:30, 5:21] = box
    assert np.array_equal(pasted, _image(full))
    empty = client.post(
        "/v1/edits",
        json={**body, "inputs": {"image": photo_id, "mask": _upload(client, np.zeros((40, 36), np.uint8))}, "output": {"region": True}},
    )
    assert empty.json()["extras"]["region"] == {"x": 0, "y": 0, "width": 36, "height": 40}  # nothing changed: all of it
