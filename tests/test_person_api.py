"""Disentangled person generation (family ``person``) through the REST API (real Serve + SeaweedFS) on a random-init model."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deployments.images import to_uint8_images
from deployments.person import ops
from deployments.person.checkpoint import export
from deployments.person.networks import DisentangledPersonGenerator
from schemas.common import STRIP_GAP
from tests.helpers import png_bytes
from tests.test_api import assert_problem, decode
from tests.test_person import HEIGHT, TINY, WIDTH
from training.train_person import examples_of

MODEL = "person-test-random"


@pytest.fixture(scope="module")
def model(client):
    from service.config import get_settings
    from service.registry import ModelRegistry
    from service.storage import AssetStore

    torch.manual_seed(5)
    network = DisentangledPersonGenerator(TINY).eval()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = export(network, Path(tmp), MODEL, "test model", examples_of(3, HEIGHT, WIDTH))
        ModelRegistry(AssetStore(get_settings())).register_dir(Path(tmp))
        images = {
            image_id: decode((Path(tmp) / "examples" / f"{i:02d}.png").read_bytes()) for i, image_id in enumerate(manifest["examples"])
        }
    return {"manifest": manifest, "network": network, "images": images}


def _edit(client, op: str, inputs: dict, params: dict | None = None):
    return client.post("/v1/edits", json={"model": MODEL, "op": op, "inputs": inputs, "params": params or {}, "output": {"inline": True}})


def _image(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return decode(base64.b64decode(response.json()["image_base64"]))


def _close(served: np.ndarray, local: np.ndarray) -> bool:
    """Within one grey level: the replica runs the op with 1 torch thread and its own batch size, whose kernels can
    round differently from this process's (~1e-6 on images in [-1, 1]), which can move a pixel across a rounding step."""
    return served.shape == local.shape and int(np.abs(served.astype(int) - local.astype(int)).max()) <= 1


def _upload(client, data: bytes) -> str:
    response = client.post("/v1/assets", files={"file": ("x.png", data, "image/png")})
    assert response.status_code in (200, 201), response.text
    return response.json()["asset_id"]


def _person(model, image_id: str) -> ops.People:
    from deployments.images import images_to_tensor
    from deployments.warp.pose import keypoint_tensors

    keypoints, visible = keypoint_tensors(model["manifest"]["examples"][image_id]["keypoints"])
    return ops.People(images_to_tensor([model["images"][image_id]]), keypoints[None], visible[None])


def test_the_model_lists_its_factors_ops_and_examples(client, model):
    info = client.get(f"/v1/models/{MODEL}").json()
    assert info["family"] == "person" and info["image_size"] == [HEIGHT, WIDTH] and info["factors"] == ["foreground", "background", "pose"]
    assert [op["name"] for op in info["ops"]] == ["recompose", "sample", "interpolate"] and len(info["examples"]) == 3
    for image_id in info["examples"]:
        assert client.get(f"/v1/assets/{image_id}").status_code == 200, "registering the model stored its examples as assets"


def test_recompose_matches_the_op_run_locally(client, model):
    a, b, c = list(model["manifest"]["examples"])
    served = _image(_edit(client, "recompose", {"foreground": a, "background": b, "pose": c}))
    expected = ops.recompose(model["network"], _person(model, a), _person(model, b), _person(model, c).keypoints, _person(model, c).visible)
    assert served.shape == (HEIGHT, WIDTH, 3)
    assert _close(served, to_uint8_images(expected.images)[0]), "the service runs the op"
    nothing_swapped = _image(_edit(client, "recompose", {"foreground": a, "background": a}))
    assert _close(nothing_swapped, to_uint8_images(ops.reconstruct(model["network"], _person(model, a)).images)[0])


def test_recompose_any_image_with_its_keypoints_and_a_given_pose(client, model):
    a, b, _ = list(model["manifest"]["examples"])
    points = model["manifest"]["examples"][a]["keypoints"]
    flipped = _upload(client, png_bytes(np.ascontiguousarray(model["images"][a][::-1])))  # not an example: keypoints required
    assert_problem(_edit(client, "recompose", {"foreground": flipped, "background": b}), 422, "foreground_keypoints is required")
    response = _edit(
        client,
        "recompose",
        {
            "foreground": flipped,
            "foreground_keypoints": points,
            "background": b,
            "pose_keypoints": model["manifest"]["examples"][b]["keypoints"],
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["extras"]["keypoints"] == [
        p if p is None else [round(v, 3) for v in p] for p in model["manifest"]["examples"][b]["keypoints"]
    ]


def test_sample_is_seeded_and_keeps_the_named_factors(client, model):
    a = next(iter(model["manifest"]["examples"]))
    first = _edit(client, "sample", {"seed": 7})
    image = _image(first)
    assert first.json()["extras"]["sampled"] == ["foreground", "background", "pose"] and len(first.json()["extras"]["keypoints"]) == 18
    again = _edit(client, "sample", {"seed": 7})
    # a cache hit: the stored PNG itself, so the same bytes
    assert again.json()["result_id"] == first.json()["result_id"] and np.array_equal(_image(again), image)
    assert not np.array_equal(_image(_edit(client, "sample", {"seed": 8})), image)
    kept = _edit(client, "sample", {"seed": 7, "image": a}, {"keep": ["pose", "foreground"]})
    expected = ops.sample(model["network"], [7], frozenset({"pose", "foreground"}), _person(model, a))
    assert _close(_image(kept), to_uint8_images(expected.images)[0])
    assert kept.json()["extras"]["kept"] == ["foreground", "pose"] and kept.json()["extras"]["sampled"] == ["background"]
    drawn = _edit(client, "sample", {})
    assert drawn.status_code == 200 and isinstance(drawn.json()["extras"]["seed"], int), "the server draws a seed"


@pytest.mark.parametrize("factor", ["foreground", "background", "pose"])
def test_interpolate_returns_a_strip_of_steps(client, model, factor):
    a, b, _ = list(model["manifest"]["examples"])
    response = _edit(client, "interpolate", {"start": a, "end": b}, {"factor": factor, "steps": 4})
    strip = _image(response)
    assert strip.shape == (HEIGHT, 4 * WIDTH + 3 * STRIP_GAP, 3)
    steps = response.json()["extras"]["steps"]
    assert [s["x"] for s in steps] == [i * (WIDTH + STRIP_GAP) for i in range(4)] and [s["t"] for s in steps] == [0, 0.3333, 0.6667, 1]
    expected = ops.interpolate(model["network"], factor, _person(model, a), _person(model, b), 4)
    assert _close(strip[:, WIDTH * 3 + STRIP_GAP * 3 :], to_uint8_images(expected.images)[3])


def test_bad_inputs_are_4xx_problems(client, model):
    a, b, _ = list(model["manifest"]["examples"])
    points = model["manifest"]["examples"][a]["keypoints"]
    big = _upload(client, png_bytes(np.zeros((HEIGHT * 2, WIDTH * 2, 3), np.uint8)))
    assert_problem(_edit(client, "recompose", {"foreground": big, "foreground_keypoints": points, "background": b}), 422, "works at")
    assert_problem(_edit(client, "recompose", {"foreground": a, "background": b, "pose_keypoints": points[:17]}), 422, "18 entries")
    assert_problem(
        _edit(client, "recompose", {"foreground": a, "background": b, "pose_keypoints": [[WIDTH + 3, 1]] + points[1:]}), 422, "outside"
    )
    assert_problem(
        _edit(client, "recompose", {"foreground": a, "background": b, "pose_keypoints": [points[0], None] + points[2:]}), 422, "torso"
    )
    assert_problem(_edit(client, "sample", {"seed": 1}, {"keep": ["pose"]}), 422, "needs inputs.image")
    assert_problem(_edit(client, "sample", {"seed": 1}, {"keep": ["hat"]}), 422, "keep")
    assert_problem(_edit(client, "interpolate", {"start": a, "end": b}, {"factor": "pose", "steps": 40}), 422, "steps")
    assert_problem(_edit(client, "interpolate", {"start": a, "end": b}, {"factor": "hair"}), 422, "factor")
    missing = "0" * 64
    response = _edit(client, "recompose", {"foreground": a, "background": missing, "background_keypoints": points})
    assert response.status_code == 404 and response.headers["content-type"].startswith("application/problem+json")


def test_a_batch_job_runs_each_op_and_matches_the_synchronous_edits(client, model):
    from tests.test_jobs_api import all_results, wait_for

    a, b, c = list(model["manifest"]["examples"])
    items = [
        {"model": MODEL, "op": "recompose", "inputs": {"foreground": b, "background": c, "pose": a}},
        {"model": MODEL, "op": "sample", "inputs": {"image": c, "seed": 11}, "params": {"keep": ["background"]}},
        {"model": MODEL, "op": "interpolate", "inputs": {"start": c, "end": a}, "params": {"factor": "foreground", "steps": 3}},
    ]
    response = client.post("/v1/jobs", json={"items": items})
    assert response.status_code == 202, response.text
    assert wait_for(client, response.json()["job_id"])["state"] == "succeeded"
    results = all_results(client, response.json()["job_id"])
    for item, result in zip(items, results):
        again = client.post("/v1/edits", json=item)
        assert again.status_code == 200 and again.json()["result_id"] == result["result_id"] and again.json()["cached"]


def test_recompose_takes_a_crop_box_of_each_photo(client, model):
    a, b, _ = list(model["manifest"]["examples"])
    points = model["manifest"]["examples"][a]["keypoints"]
    big = np.zeros((HEIGHT * 2, WIDTH * 3, 3), np.uint8)
    big[HEIGHT // 2 : HEIGHT // 2 + HEIGHT, WIDTH : 2 * WIDTH] = model["images"][a]
    foreground = _upload(client, png_bytes(big))
    shifted = [None if p is None else [p[0] + WIDTH, p[1] + HEIGHT // 2] for p in points]
    inputs = {"foreground": foreground, "foreground_keypoints": shifted, "background": b}
    response = _edit(client, "recompose", inputs, {"foreground_crop_box": [WIDTH, HEIGHT // 2, WIDTH, HEIGHT]})
    assert response.status_code == 200, response.text
    fits = response.json()["extras"]["fit"]
    assert fits["foreground"] == {
        "photo_size": [3 * WIDTH, 2 * HEIGHT],
        "box": [WIDTH, HEIGHT // 2, WIDTH, HEIGHT],
        "scale": [1.0, 1.0],
        "mode": "none",
    }
    assert fits["background"]["mode"] == "none" and fits["background"]["box"] == [0, 0, WIDTH, HEIGHT]
    # the same pixels and keypoints as the example itself: the same canonical model inputs, so the same image (tolerance:
    # the two edits may ride in batches of other sizes)
    plain = _edit(client, "recompose", {"foreground": a, "background": b})
    assert _close(_image(response), _image(plain))
    too_far = {"foreground_crop_box": [2 * WIDTH + 1, 0, WIDTH, HEIGHT]}
    assert_problem(_edit(client, "recompose", inputs, too_far), 422, "params.foreground_crop_box")
