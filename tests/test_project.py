"""`project` (real image -> latent): the pure op, and the image-input path of the API it exercises."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import torch
from PIL import Image

from deployments.style import ops
from deployments.style.stylegan2 import Generator, StyleGAN2Config
from tests.helpers import png_bytes, random_png
from tests.test_api import CHECKPOINT, MODEL, assert_problem, decode


def tiny_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(StyleGAN2Config(resolution=16, style_dim=16, n_mlp=2, channel_max=16)).eval().requires_grad_(False)


def test_projection_fits_an_image_the_generator_can_make():
    generator = tiny_generator()
    mean_w = generator.mean_latent(256)
    with torch.inference_mode():
        target_w = generator.mapping(ops.latents_from_seeds([3], 16))
        target = generator.synthesis(target_w.view(1, 1, -1).expand(1, generator.n_latent, -1))
    _, _, start_mse = ops.project(generator, target, mean_w=mean_w, steps=1, learning_rate=1e-9)
    _, image, mse = ops.project(generator, target, mean_w=mean_w, steps=150, learning_rate=0.05)
    assert mse.item() < 0.1 * start_mse.item()
    assert image.shape == (1, 3, 16, 16)


def test_projection_rows_are_independent_of_their_batch():
    generator = tiny_generator()
    mean_w = generator.mean_latent(256)
    target = torch.rand(3, 3, 16, 16) * 2 - 1
    w_batch, _, _ = ops.project(generator, target, mean_w=mean_w, steps=10, learning_rate=0.05, latent_space="w")
    w_alone, _, _ = ops.project(generator, target[1:2], mean_w=mean_w, steps=10, learning_rate=0.05, latent_space="w")
    assert torch.allclose(w_batch[1], w_alone[0], atol=1e-5)
    assert torch.equal(w_batch[1, 0], w_batch[1, -1])  # W space: one w broadcast to every layer


def _upload(client, png: bytes) -> str:
    response = client.post("/v1/assets", files={"file": ("x.png", png, "image/png")})
    assert response.status_code in (200, 201), response.text
    return response.json()["asset_id"]


def test_project_returns_a_latent_that_sample_reproduces(client):
    asset = _upload(client, random_png(64, 64, seed=21))
    body = {"model": MODEL, "op": "project", "params": {"steps": 15}, "inputs": {"image": asset}}
    response = client.post("/v1/edits", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    n_latent, style_dim = json.loads((CHECKPOINT / "model.json").read_text())["n_latent"], 128
    assert len(result["extras"]["w"]) == n_latent * style_dim and result["extras"]["mse"] > 0
    progress = result["extras"]["progress"]  # the loss along the optimisation: first step, every 10%, final fit
    assert progress[0]["step"] == 1 and progress[-1] == {"step": 15, "mse": round(result["extras"]["mse"], 6), "final": True}
    assert [p["step"] for p in progress[1:-1]] == list(range(2, 16)) and progress[-1]["mse"] < progress[0]["mse"]
    projected = decode(httpx.get(result["url"]).content)

    replay = client.post("/v1/edits", json={"model": MODEL, "op": "sample", "inputs": {"w": result["extras"]["w"]}}).json()
    assert np.abs(decode(httpx.get(replay["url"]).content).astype(int) - projected.astype(int)).max() <= 1

    again = client.post("/v1/edits", json=body).json()  # cache hit restores the extras from the sidecar
    assert again["cached"] is True and again["extras"] == result["extras"]


def test_project_image_size_mode_and_asset_checks(client):
    wrong_size = _upload(client, random_png(32, 48, seed=22))
    assert_problem(
        client.post("/v1/edits", json={"model": MODEL, "op": "project", "params": {"steps": 2}, "inputs": {"image": wrong_size}}),
        422,
        "params.resize=true",
    )
    resized = client.post(
        "/v1/edits", json={"model": MODEL, "op": "project", "params": {"steps": 2, "resize": True}, "inputs": {"image": wrong_size}}
    )
    assert resized.status_code == 200 and resized.json()["width"] == 64

    gray = _upload(client, png_bytes(np.random.default_rng(5).integers(0, 256, (64, 64), dtype=np.uint8)))
    assert (
        client.post("/v1/edits", json={"model": MODEL, "op": "project", "params": {"steps": 2}, "inputs": {"image": gray}}).status_code
        == 200
    )

    assert_problem(client.post("/v1/edits", json={"model": MODEL, "op": "project", "inputs": {"image": "ab" * 32}}), 404, "upload it")
    assert_problem(client.post("/v1/edits", json={"model": MODEL, "op": "project", "inputs": {"image": "not-a-hash"}}), 422, "image")
    assert_problem(
        client.post("/v1/edits", json={"model": MODEL, "op": "project", "params": {"steps": 5000}, "inputs": {"image": gray}}), 422, "steps"
    )


def test_project_inline_output(client):
    asset = _upload(client, random_png(64, 64, seed=23))
    result = client.post(
        "/v1/edits", json={"model": MODEL, "op": "project", "params": {"steps": 3}, "inputs": {"image": asset}, "output": {"inline": True}}
    ).json()
    assert Image.open(io.BytesIO(base64.b64decode(result["image_base64"]))).size == (64, 64)


def test_project_fits_a_non_square_photo_and_says_how(client):
    photo = _upload(client, random_png(40, 100, seed=24))  # 100 x 40, landscape
    body = {"model": MODEL, "op": "project", "params": {"steps": 2, "resize": True, "fit": "center_crop"}, "inputs": {"image": photo}}
    response = client.post("/v1/edits", json=body)
    assert response.status_code == 200, response.text
    assert (response.json()["width"], response.json()["height"]) == (64, 64)
    # the middle 40 x 40 of the photo, scaled by 64/40: the result put back over that box
    assert response.json()["extras"]["fit"] == {
        "image": {"photo_size": [100, 40], "box": [30, 0, 40, 40], "scale": [1.6, 1.6], "mode": "center_crop"}
    }
    assert len(response.json()["extras"]["w"]) > 0  # the fit is beside the latent, not instead of it
    outside = {**body, "params": {"steps": 2, "crop_box": [50, 0, 64, 41]}}
    assert_problem(client.post("/v1/edits", json=outside), 422, "params.crop_box [50, 0, 64, 41] (x, y, width, height) reaches outside")
    assert_problem(client.post("/v1/edits", json={**body, "params": {"crop_box": [0, 0, 0, 8]}}), 422, "params.crop_box")
    assert_problem(client.post("/v1/edits", json={**body, "params": {"resize": True, "fit": "cover"}}), 422, "params.fit")
