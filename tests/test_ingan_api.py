"""InGAN through the REST API (real Serve + SeaweedFS): retarget, fit jobs (progress, registration,
cancel) and the 4xx answers."""

from __future__ import annotations

import base64
import time

import httpx
import numpy as np
import pytest

from deployments.ingan import ops
from deployments.ingan.checkpoint import manifest_for, weights_bytes
from schemas.common import STRIP_GAP
from tests.conftest import TEST_RETARGET_PIXEL_BUDGET
from tests.helpers import png_bytes
from tests.test_api import assert_problem, decode
from tests.test_ingan import TINY, smooth_image
from tests.test_jobs_api import TERMINAL, wait_for

MODEL = "ingan-test-tiny"


@pytest.fixture(scope="module")
def model(client):
    """A tiny generator trained here in a few seconds on a 24 px image, registered like a fit job's."""
    import torch

    from service.config import get_settings
    from service.registry import ModelRegistry
    from service.storage import AssetStore

    torch.set_num_threads(1)
    image = smooth_image()
    settings = ops.FitSettings(iterations=150, scale_min=1.0, scale_max=1.0, rec_weight=1.0, lr=1e-3, d_channels=8, seed=1)
    generator, summary = ops.fit(image, TINY, settings)
    ModelRegistry(AssetStore(get_settings())).register(
        manifest_for(generator, image, name=MODEL, training=summary), weights_bytes(generator, image)
    )
    return image


def retarget(client, outputs: list[dict], model: str = MODEL):
    return client.post("/v1/edits", json={"model": model, "op": "retarget", "params": {"outputs": outputs}, "output": {"inline": True}})


def image_of(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return decode(base64.b64decode(response.json()["image_base64"]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_identity_size_gives_back_an_image_close_to_the_input(client, model):
    response = retarget(client, [{"height": 24, "width": 24}])
    output = image_of(response)
    assert output.shape == (24, 24, 3)
    assert psnr(output, model) > 24.0
    extras = response.json()["extras"]
    assert extras["size_multiple"] == 4 and extras["source_size"] == [24, 24]
    assert extras["outputs"] == [{"requested": [24, 24], "produced": [24, 24], "x": 0, "homography": None, "snapped": False}]


def test_sizes_snap_and_several_outputs_form_a_strip(client, model):
    response = retarget(client, [{"height": 25, "width": 49}, {"height": 12, "width": 13}, {"height": 40, "width": 20, "top_left": 0.2}])
    strip = image_of(response)
    outputs = response.json()["extras"]["outputs"]
    assert [o["produced"] for o in outputs] == [[24, 48], [12, 12], [40, 20]]
    assert [o["snapped"] for o in outputs] == [True, True, False]
    assert strip.shape == (40, 48 + 12 + 20 + 2 * STRIP_GAP, 3)
    assert [o["x"] for o in outputs] == [0, 48 + STRIP_GAP, 60 + 2 * STRIP_GAP]
    assert outputs[2]["homography"] == {"top_left": 0.2, "top_right": 0.0}
    # each panel is what the same output alone gives
    alone = image_of(retarget(client, [{"height": 24, "width": 48}]))
    assert np.array_equal(strip[:24, :48], alone)  # one forward per output, in the same replica: bit-exact


def test_zero_homography_equals_the_plain_resize_and_a_shift_changes_the_image(client, model):
    plain = image_of(retarget(client, [{"height": 24, "width": 36}]))
    zero = image_of(retarget(client, [{"height": 24, "width": 36, "top_left": 0.0, "top_right": -0.0}]))
    warped = image_of(retarget(client, [{"height": 24, "width": 36, "top_left": 0.25, "top_right": -0.25}]))
    assert np.array_equal(plain, zero)  # a zero shift is no homography: the same forward in the same replica
    assert warped.shape == plain.shape and not np.array_equal(warped, plain)


@pytest.mark.parametrize(
    "outputs, detail",
    [
        ([{"height": 0, "width": 24}], "greater than 0"),
        ([{"height": 24, "width": -8}], "greater than 0"),
        ([{"height": 2048, "width": 2048}], "above the 1,048,576 px this service returns"),
        ([], "at least 1"),
        ([{"height": 24, "width": 24, "top_left": 0.5, "top_right": -0.5}], "cross"),
        ([{"height": 24, "width": 24, "scale": 2}], "extra"),
    ],
)
def test_invalid_outputs_are_422(client, model, outputs, detail):
    assert_problem(retarget(client, outputs), 422, detail)


@pytest.mark.parametrize("outputs", [[{"height": 512, "width": 512}], [{"height": 128, "width": 128}] * 5])
def test_outputs_over_the_ops_pixel_budget_are_413_naming_it(client, model, outputs):
    # the test service's budget for ingan.retarget (model_pixel_budgets) is below what it may return
    response = retarget(client, outputs)
    assert_problem(response, 413, f"above this service's budget of {TEST_RETARGET_PIXEL_BUDGET:,} pixels per edit of this op")
    assert response.json()["budget_pixels"] == TEST_RETARGET_PIXEL_BUDGET


def test_retarget_of_an_unknown_model_is_404(client):
    assert_problem(retarget(client, [{"height": 24, "width": 24}], model="ingan-missing"), 404, "not registered")


def _upload(client, image: np.ndarray) -> str:
    response = client.post("/v1/assets", files={"file": ("x.png", png_bytes(image), "image/png")})
    assert response.status_code in (200, 201), response.text
    return response.json()["asset_id"]


def _fit(client, image_id: str, **fit):
    return client.post(
        "/v1/jobs", json={"fit": {"image": image_id, "size": 32, "base_channels": 8, "downscales": 2, "resblocks": 1, **fit}}
    )


def _wait_running(client, job_id: str, timeout_s: float = 120) -> tuple[dict, list[dict]]:
    """Poll until training reports progress; returns that status and every status seen."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(f"/v1/jobs/{job_id}").json()
        seen.append(status)
        if (status.get("fit") or {}).get("iteration", 0) > 0 or status["state"] in TERMINAL:
            return status, seen
        time.sleep(0.1)
    raise AssertionError(f"fit job {job_id} showed no progress in {timeout_s} s: {seen[-1]}")


def test_a_fit_job_trains_registers_and_serves_a_model(client):
    image = smooth_image(32, 48, seed=3)
    image_id = _upload(client, image)
    response = _fit(client, image_id, iterations=120, size=48, name="ingan-fit-test", seed=2)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["source"] == "fit" and job["counts"]["total"] == 1
    running, _ = _wait_running(client, job["job_id"])
    assert running["state"] == "running", running
    fit = running["fit"]
    assert fit["model"] == "ingan-fit-test" and 0 < fit["iteration"] < 120 and fit["iterations"] == 120
    assert set(fit["losses"]) == {"d", "g_adv", "rec_l1", "cycle_l1"} and fit["it_per_s"] > 0 and fit["image_size"] == [32, 48]

    status = wait_for(client, job["job_id"], timeout_s=180)
    assert status["state"] == "succeeded", status
    assert status["fit"]["iteration"] == 120
    (item,) = client.get(f"/v1/jobs/{job['job_id']}/results").json()["items"]
    assert item["state"] == "succeeded" and item["model"] == "ingan-fit-test" and item["op"] == "fit"
    assert item["extras"]["model"] == "ingan-fit-test" and item["extras"]["size_multiple"] == 4
    preview = decode(httpx.get(item["url"]).content)  # the input and six retargeted outputs, the tallest 1.5 x 32 px
    assert preview.shape[0] == 48 and np.array_equal(preview[:32, :48], image)

    info = client.get("/v1/models/ingan-fit-test").json()
    assert info["family"] == "ingan" and [op["name"] for op in info["ops"]] == ["retarget"]
    assert "ingan-fit-test" in [m["name"] for m in client.get("/v1/models").json()["models"]]
    wide = image_of(retarget(client, [{"height": 32, "width": 96}], model="ingan-fit-test"))
    assert wide.shape == (32, 96, 3)


def test_cancelling_a_fit_job_stops_training(client):
    image_id = _upload(client, smooth_image(32, 32, seed=5))
    job = _fit(client, image_id, iterations=100_000, name="ingan-cancelled").json()
    running, _ = _wait_running(client, job["job_id"])
    assert running["state"] == "running"
    response = client.delete(f"/v1/jobs/{job['job_id']}")
    assert response.status_code == 202 and response.json()["state"] in ("cancelling", "cancelled")
    status = wait_for(client, job["job_id"], timeout_s=60)
    assert status["state"] == "cancelled", status
    assert status["counts"] == {"total": 1, "succeeded": 0, "failed": 0, "cancelled": 1, "pending": 0}
    assert status["fit"]["iteration"] < 100_000
    assert_problem(client.get("/v1/models/ingan-cancelled"), 404, "not registered")


@pytest.mark.parametrize(
    "fit, status, detail",
    [
        ({"image": "0" * 64}, 404, "does not exist"),
        ({"image": "0" * 64, "iterations": 0}, 422, "iterations"),
        ({"image": "0" * 64, "scale_min": 2.0}, 422, "scale_min"),
        ({"image": "0" * 64, "family": "style"}, 422, "family"),
        ({"image": "0" * 64, "name": "Bad Name"}, 422, "name"),
        ("uploaded", 409, "belongs to the inpaint family"),
    ],
)
def test_bad_fit_submissions_are_4xx(client, fit, status, detail):
    if fit == "uploaded":  # a real image, but a name a model of another family has
        fit = {"image": _upload(client, smooth_image(seed=8)), "name": "edgeconnect-demo"}
    assert_problem(client.post("/v1/jobs", json={"fit": fit}), status, detail)


def test_a_fit_the_image_cannot_support_fails_with_its_problem(client):
    image_id = _upload(client, smooth_image(12, 200, seed=6))  # at longer side 48 the shorter one is 3 px
    job = _fit(client, image_id, size=48, name="ingan-too-thin").json()
    status = wait_for(client, job["job_id"], timeout_s=60)
    assert status["state"] == "failed" and status["counts"]["failed"] == 1, status
    (item,) = client.get(f"/v1/jobs/{job['job_id']}/results").json()["items"]
    assert item["state"] == "failed" and item["problem"]["status"] == 422 and "discriminator" in item["problem"]["detail"]


def test_cli_fit_uploads_trains_and_reports_the_model(service, client, tmp_path, capsys):
    from service.tools.cli import main

    path = tmp_path / "texture.png"
    path.write_bytes(png_bytes(smooth_image(24, 32, seed=7)))
    assert (
        main(["jobs", "fit", str(path), "--url", service.url, "--iterations", "10", "--size", "32", "--name", "ingan-cli", "--wait"]) == 0
    )
    assert "model ingan-cli registered" in capsys.readouterr().out
    assert image_of(retarget(client, [{"height": 24, "width": 64}], model="ingan-cli")).shape == (24, 64, 3)


def test_the_shipped_demo_model_is_registered_at_start_and_retargets(client):
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed["ingan-rocket"]["family"] == "ingan" and not listed["ingan-rocket"]["random_init"]
    response = retarget(
        client, [{"height": 64, "width": 190}, {"height": 64, "width": 96, "top_left": 0.2, "top_right": -0.2}], model="ingan-rocket"
    )
    assert image_of(response).shape == (64, 192 + STRIP_GAP + 96, 3)
    assert response.json()["extras"]["outputs"][0]["produced"] == [64, 192]


def test_a_refit_under_the_same_name_is_served_with_its_new_weights(client):
    import torch

    from deployments.ingan.ingan import Generator
    from service.config import get_settings
    from service.registry import ModelRegistry
    from service.storage import AssetStore

    registry = ModelRegistry(AssetStore(get_settings()))
    image = smooth_image(seed=9)
    outputs = []
    for seed in (0, 1):  # two untrained generators: different weights, same name
        torch.manual_seed(seed)
        generator = Generator(TINY).eval()
        registry.register(manifest_for(generator, image, name="ingan-refit"), weights_bytes(generator, image))
        time.sleep(5.5)  # past the ingress's manifest cache, as a client polling the fit job would be
        output = image_of(retarget(client, [{"height": 24, "width": 32}], model="ingan-refit"))
        # within one grey level: the replica runs with 1 torch thread, this process maybe not, and conv kernels may
        # round differently (~1e-6) with another thread count, which can move a pixel across a rounding step
        local = ops.retarget(generator, ops.to_tensor(image), [ops.Target(24, 32)])[0]
        assert output.shape == local.shape and np.abs(output.astype(int) - local.astype(int)).max() <= 1
        outputs.append(output)
    assert not np.array_equal(outputs[0], outputs[1])
