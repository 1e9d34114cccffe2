"""Storage outages and restarts: 503 with Retry-After while S3 is down, nothing lost or half-written after."""

from __future__ import annotations

import time

import httpx

from tests.helpers import random_png
from tests.test_api import MODEL, assert_problem


def _wait_until_ready(client: httpx.Client, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.5)
    raise AssertionError("service did not become ready again")


def test_s3_outage_gives_503_and_recovers_without_half_written_results(client, s3_server):
    body = {"model": MODEL, "op": "sample", "inputs": {"seed": 424242}}
    s3_server.stop()
    try:
        response = client.post("/v1/edits", json=body)
        problem = assert_problem(response, 503, "unreachable")
        assert int(response.headers["retry-after"]) > 0, problem
        assert_problem(client.get("/readyz"), 503, "storage")
        upload = client.post("/v1/assets", files={"file": ("a.png", random_png(seed=9), "image/png")})
        assert_problem(upload, 503)
    finally:
        s3_server.start(timeout=90)
    _wait_until_ready(client)
    recovered = client.post("/v1/edits", json=body)
    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["cached"] is False  # the failed attempt left nothing behind that looks like a result


def test_restart_of_service_and_storage_keeps_assets_and_results(service, client, s3_server):
    png = random_png(seed=77)
    asset = client.post("/v1/assets", files={"file": ("a.png", png, "image/png")}).json()
    edit = client.post("/v1/edits", json={"model": MODEL, "op": "sample", "inputs": {"seed": 77}}).json()

    service.stop(keep_ray=True)
    s3_server.stop()
    s3_server.start(timeout=90)
    service.start()

    again = client.get(f"/v1/assets/{asset['asset_id']}")
    assert again.status_code == 200 and httpx.get(again.json()["url"]).content == png
    repeat = client.post("/v1/edits", json={"model": MODEL, "op": "sample", "inputs": {"seed": 77}}).json()
    assert repeat["cached"] is True and repeat["result_id"] == edit["result_id"]
