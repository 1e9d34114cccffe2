"""End to end through HTTP: the real Serve app, the real S3 server, the shipped demo checkpoint."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import hashlib
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import TEST_MAX_BODY_BYTES
from tests.helpers import cmyk_jpeg, png16, png_bomb, random_png, truncated_png

MODEL = "style-demo-random"
CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / MODEL


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def assert_problem(response: httpx.Response, status: int, detail_contains: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["type"].startswith("https://") and body["title"] and body["detail"]
    assert detail_contains.lower() in body["detail"].lower(), body["detail"]
    assert response.headers.get("x-request-id")
    return body


# ---- probes, models -----------------------------------------------------------------------------
def test_health_ready_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "storage": "ok",
        "family:style": "ok",
        "family:collage": "ok",
        "family:inpaint": "ok",
        "family:ingan": "ok",
        "family:warp": "ok",
        "family:person": "ok",
        "jobs": "ok",
    }
    client.post("/v1/edits", json={"model": MODEL, "op": "sample", "inputs": {"seed": 11}})
    text = client.get("/metrics").text
    assert 'collage_http_requests_total{op="sample",route="/v1/edits",status="200"}' in text
    assert "collage_batch_size_bucket" in text and "collage_queue_depth" in text
    assert "collage_http_request_duration_seconds_bucket" in text


def test_ray_metrics_port_exports_serve_metrics(client):
    import os
    import time

    client.post("/v1/edits", json={"model": MODEL, "op": "sample", "inputs": {"seed": 12}})
    url = f"http://127.0.0.1:{os.environ['COLLAGE_RAY_METRICS_PORT']}/metrics"
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline:  # Ray exports on an interval; wait for the first scrape with Serve metrics
        text = httpx.get(url, timeout=10).text
        if "ray_serve_" in text and "collage_family_batch_size" in text:
            break
        time.sleep(2)
    assert "ray_serve_" in text and "collage_family_batch_size" in text


def test_models_lists_demo_checkpoint_with_op_parameters(client):
    listing = client.get("/v1/models").json()
    assert {"name": "style", "deployed": True, "ops": ["catalog", "local_transfer", "part_map", "project", "sample"]} in listing["families"]
    model = next(m for m in listing["models"] if m["name"] == MODEL)
    assert model["family"] == "style" and model["resolution"] == 64 and model["random_init"] is True
    sample = next(op for op in model["ops"] if op["name"] == "sample")
    assert sample["params_schema"]["properties"]["truncation"]["maximum"] == 2.0
    assert set(sample["inputs_schema"]["properties"]) == {"seed", "z", "w"}
    project = next(op for op in model["ops"] if op["name"] == "project")
    assert project["params_schema"]["properties"]["steps"]["maximum"] == 1000
    assert client.get(f"/v1/models/{MODEL}").json()["weights_sha256"] == model["weights_sha256"]


def test_openapi_is_served(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/edits", "/v1/assets", "/v1/models", "/readyz"} <= set(spec["paths"])


# ---- assets ------------------------------------------------------------------------------------
def test_upload_multipart_then_download_by_presigned_url(client):
    png = random_png(seed=1)
    first = client.post("/v1/assets", files={"file": ("a.png", png, "image/png")})
    assert first.status_code == 201, first.text
    info = first.json()
    assert info["asset_id"] == hashlib.sha256(png).hexdigest()
    assert (info["width"], info["height"], info["kind"], info["created"]) == (48, 32, "image", True)
    assert httpx.get(info["url"]).content == png
    again = client.post("/v1/assets", files={"file": ("a.png", png, "image/png")})
    assert again.status_code == 200 and again.json()["created"] is False
    fetched = client.get(f"/v1/assets/{info['asset_id']}").json()
    assert fetched["size"] == len(png)
    redirect = client.get(f"/v1/assets/{info['asset_id']}", params={"redirect": "true"})
    assert redirect.status_code == 307 and httpx.get(redirect.headers["location"]).content == png


def test_upload_base64_json(client):
    png = random_png(seed=2)
    response = client.post("/v1/assets", json={"data_base64": base64.b64encode(png).decode(), "content_type": "image/png"})
    assert response.status_code == 201 and response.json()["asset_id"] == hashlib.sha256(png).hexdigest()


def test_presigned_put_upload_flow(client):
    png = random_png(seed=3)
    slot = client.post("/v1/assets/uploads", json={"content_type": "image/png", "size": len(png)}).json()
    assert httpx.put(slot["url"], content=png, headers=slot["headers"]).status_code == 200
    done = client.post(f"/v1/assets/uploads/{slot['upload_id']}/complete")
    assert done.status_code == 201, done.text
    assert done.json()["asset_id"] == hashlib.sha256(png).hexdigest()
    assert_problem(client.post(f"/v1/assets/uploads/{slot['upload_id']}/complete"), 404, "does not exist")


def test_presigned_upload_completed_before_put_is_404(client):
    slot = client.post("/v1/assets/uploads", json={"content_type": "image/png"}).json()
    assert_problem(client.post(f"/v1/assets/uploads/{slot['upload_id']}/complete"), 404, "PUT the bytes")


# ---- edits -------------------------------------------------------------------------------------
def test_sample_round_trip_matches_the_generator_run_directly(client):
    import torch

    from deployments.style import ops
    from deployments.style.checkpoint import load_generator

    response = client.post(
        "/v1/edits", json={"model": MODEL, "op": "sample", "params": {"truncation": 0.7}, "inputs": {"seed": 5}, "output": {"inline": True}}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["seed"] == 5 and result["random_init"] is True and (result["width"], result["height"]) == (64, 64)
    png = httpx.get(result["url"]).content
    assert base64.b64decode(result["image_base64"]) == png
    served = decode(png)

    manifest = json.loads((CHECKPOINT / "model.json").read_text())
    generator, latent_avg = load_generator((CHECKPOINT / "weights.safetensors").read_bytes(), manifest["arch"])
    with torch.inference_mode():
        z = ops.latents_from_seeds([5], manifest["arch"]["style_dim"])
        expected = ops.to_uint8_images(ops.sample(generator, z=z, truncation=0.7, mean_w=latent_avg))[0]
    assert np.abs(served.astype(int) - expected.astype(int)).max() <= 1


def test_repeated_edit_is_a_cache_hit_and_result_is_an_asset(client):
    body = {"model": MODEL, "op": "sample", "inputs": {"seed": 123}}
    first = client.post("/v1/edits", json=body).json()
    second = client.post("/v1/edits", json=body).json()
    assert first["cached"] is False and second["cached"] is True
    assert first["result_id"] == second["result_id"]
    assert second["timings"]["compute_ms"] is None and second["timings"]["transit_ms"] is None
    assert 0 < first["timings"]["transit_ms"] < first["timings"]["total_ms"], "the Ray call's share of the computed edit"
    assert httpx.get(first["url"]).content == httpx.get(second["url"]).content
    assert client.get(f"/v1/assets/{first['result_id']}").json()["width"] == 64
    # an equivalent request spelled differently (default param written out) is the same result
    third = client.post("/v1/edits", json={**body, "params": {"truncation": 1.0}}).json()
    assert third["cached"] is True and third["result_id"] == first["result_id"]


def test_server_draws_a_seed_when_none_is_given(client):
    a = client.post("/v1/edits", json={"model": MODEL, "op": "sample"}).json()
    b = client.post("/v1/edits", json={"model": MODEL, "op": "sample"}).json()
    assert isinstance(a["seed"], int) and a["seed"] != b["seed"] and a["result_id"] != b["result_id"]
    replay = client.post("/v1/edits", json={"model": MODEL, "op": "sample", "inputs": {"seed": a["seed"]}}).json()
    assert replay["cached"] is True and replay["result_id"] == a["result_id"]


def test_output_formats_are_their_own_results_with_their_media_type(client):
    body = {"model": MODEL, "op": "sample", "inputs": {"seed": 321}, "output": {"inline": True}}
    png = client.post("/v1/edits", json=body).json()
    pixels = decode(base64.b64decode(png["image_base64"]))
    for fmt, quality, media_type in [("webp", 85, "image/webp"), ("jpeg", None, "image/jpeg")]:
        output = {"inline": True, "format": fmt, **({"quality": quality} if quality else {})}
        first = client.post("/v1/edits", json={**body, "output": output}).json()
        assert first["content_type"] == media_type and first["cached"] is False
        assert first["result_id"] != png["result_id"]  # another encoding is another stored object
        data = base64.b64decode(first["image_base64"])
        assert Image.open(io.BytesIO(data)).format == fmt.upper()
        # lossy, of the same pixels: a 64 px face at quality >= 85 stays within a few grey levels on average
        assert np.abs(decode(data).astype(int) - pixels).mean() < 8
        assert httpx.get(first["url"]).headers["content-type"] == media_type
        assert client.get(f"/v1/assets/{first['result_id']}").json()["content_type"] == media_type
        again = client.post("/v1/edits", json={**body, "output": output}).json()
        assert again["cached"] is True and again["result_id"] == first["result_id"] and again["content_type"] == media_type
    other_quality = client.post("/v1/edits", json={**body, "output": {"format": "webp", "quality": 40}}).json()
    assert other_quality["cached"] is False
    # the default quality is the same result as writing it out
    spelled = client.post("/v1/edits", json={**body, "output": {"format": "jpeg", "quality": 90}}).json()
    assert spelled["cached"] is True


def test_output_region_of_an_op_that_changes_the_whole_image_is_all_of_it(client):
    body = {"model": MODEL, "op": "sample", "inputs": {"seed": 322}, "output": {"inline": True}}
    whole = client.post("/v1/edits", json=body).json()
    region = client.post("/v1/edits", json={**body, "output": {"inline": True, "region": True}}).json()
    assert region["result_id"] != whole["result_id"] and region["cached"] is False  # the option is part of the cache key
    assert (region["width"], region["height"]) == (whole["width"], whole["height"])
    assert region["extras"]["region"] == {"x": 0, "y": 0, "width": whole["width"], "height": whole["height"]}
    assert region["extras"]["full_size"] == {"width": whole["width"], "height": whole["height"]}
    assert np.array_equal(decode(base64.b64decode(region["image_base64"])), decode(base64.b64decode(whole["image_base64"])))
    again = client.post("/v1/edits", json={**body, "output": {"region": True}}).json()
    assert again["cached"] is True and again["extras"]["region"] == region["extras"]["region"]  # the stored extras say it too


@pytest.mark.parametrize(
    "output,detail",
    [
        ({"format": "gif"}, "format"),
        ({"format": "png", "quality": 80}, "quality"),
        ({"format": "jpeg", "quality": 0}, "quality"),
        ({"format": "webp", "quality": 101}, "quality"),
        ({"region": "yes"}, "output.region"),  # strict: a string is no bool
        ({"region": 1}, "output.region"),
        ({"region": {"x": 0, "y": 0}}, "output.region"),
    ],
)
def test_bad_output_options_are_422(client, output, detail):
    assert_problem(client.post("/v1/edits", json={"model": MODEL, "op": "sample", "inputs": {"seed": 1}, "output": output}), 422, detail)


def test_w_and_z_inputs(client):
    style_dim = json.loads((CHECKPOINT / "model.json").read_text())["arch"]["style_dim"]
    z = client.post("/v1/edits", json={"model": MODEL, "op": "sample", "inputs": {"z": [0.1] * style_dim}})
    w = client.post("/v1/edits", json={"model": MODEL, "op": "sample", "inputs": {"w": [0.0] * style_dim}})
    assert z.status_code == 200 and w.status_code == 200
    assert z.json()["seed"] is None and z.json()["result_id"] != w.json()["result_id"]


def test_concurrent_requests_are_batched(client):
    bodies = [{"model": MODEL, "op": "sample", "inputs": {"seed": 1000 + i}} for i in range(16)]
    with cf.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda b: client.post("/v1/edits", json=b), bodies))
    assert all(r.status_code == 200 for r in results)
    sizes = [r.json()["timings"]["batch_size"] for r in results]
    assert max(sizes) > 1, sizes
    assert all(r.json()["timings"]["group_size"] <= r.json()["timings"]["batch_size"] for r in results)
    assert len({r.json()["result_id"] for r in results}) == 16


# ---- bad input: every case is a 4xx problem+json ------------------------------------------------
BAD_EDITS = [
    ({"model": "no-such-model", "op": "sample"}, 404, "not registered"),
    ({"model": MODEL, "op": "paint"}, 422, "has no op"),
    ({"model": MODEL, "op": "sample", "params": {"truncation": 5}}, 422, "truncation"),
    ({"model": MODEL, "op": "sample", "params": {"psi": 0.5}}, 422, "psi"),
    ({"model": MODEL, "op": "sample", "inputs": {"seed": -1}}, 422, "seed"),
    ({"model": MODEL, "op": "sample", "inputs": {"seed": 1, "z": [0.0]}}, 422, "at most one"),
    ({"model": MODEL, "op": "sample", "inputs": {"z": [0.0, 1.0]}}, 422, "must have 128"),
    ({"model": MODEL, "op": "sample", "colour": "red"}, 422, "colour"),
    ({"model": "../etc", "op": "sample"}, 422, "model"),
    ({"op": "sample"}, 422, "model"),
]


@pytest.mark.parametrize("body,status,detail", BAD_EDITS, ids=[f"{s}-{d}" for _, s, d in BAD_EDITS])
def test_bad_edit_requests(client, body, status, detail):
    assert_problem(client.post("/v1/edits", json=body), status, detail)


def test_malformed_json_is_400(client):
    response = client.post("/v1/edits", content=b'{"model": ', headers={"content-type": "application/json"})
    assert_problem(response, 400, "not valid JSON")


BAD_UPLOADS = [
    (b"hello, not an image", 422, "not a readable image"),
    (png_bomb(), 413, "pixels"),
    (cmyk_jpeg(), 422, "mode"),
    (png16(), 422, "mode"),
    (truncated_png(), 422, "truncated"),
]


@pytest.mark.parametrize("data,status,detail", BAD_UPLOADS, ids=["not-image", "bomb", "cmyk", "16-bit", "truncated"])
def test_bad_image_uploads(client, data, status, detail):
    assert_problem(client.post("/v1/assets", files={"file": ("x.png", data, "image/png")}), status, detail)


def test_oversize_body_is_refused_before_reading(client):
    big = b"\0" * (TEST_MAX_BODY_BYTES + 1)
    assert_problem(client.post("/v1/assets", content=big, headers={"content-type": "application/json"}), 413, "exceeds")


def test_oversize_chunked_body_is_refused(client):
    def chunks():
        for _ in range(5):
            yield b"\0" * (TEST_MAX_BODY_BYTES // 4)

    response = client.post("/v1/assets", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(response, 413, "exceeds")


JSON_ROUTES = [
    ("POST", "/v1/assets"),
    ("POST", "/v1/edits"),
    ("POST", "/v1/jobs"),
    ("POST", "/v1/assets/uploads"),
    ("POST", "/v1/assets/uploads/" + "0" * 32 + "/complete"),
    ("PUT", "/v1/models/collage-faces/catalog/labels"),
]


@pytest.mark.parametrize("method,path", JSON_ROUTES)
def test_every_json_entry_point_refuses_deep_nesting_with_a_400(client, method, path):
    from service.json_body import MAX_JSON_DEPTH

    for depth in (MAX_JSON_DEPTH + 1, 1_100, 100_000):  # past the limit, past Python's recursion, far past
        body = b'{"a": ' * depth + b"1" + b"}" * depth
        response = client.request(method, path, content=body, headers={"content-type": "application/json"})
        assert_problem(response, 400, f"deeper than {MAX_JSON_DEPTH} levels")
    response = client.request(method, path, content=b'{"a": [1, 2', headers={"content-type": "application/json"})
    assert_problem(response, 400, "not valid JSON")


@pytest.mark.parametrize("path", ["/v1/edits", "/v1/jobs"])
def test_oversize_chunked_json_body_is_a_413_on_every_route(client, path):
    def chunks():
        yield b'{"model": "collage-faces", "op": "sample", "params": {"pad": "'
        for _ in range(5):
            yield b"x" * (TEST_MAX_BODY_BYTES // 4)
        yield b'"}}'

    response = client.post(path, content=chunks(), headers={"content-type": "application/json"})
    assert_problem(response, 413, "exceeds")


BAD_MEDIA_TYPES = {
    "crlf": "image/png\r\nX-Amz-Meta-Owner: someone",
    "lf": "image/png\n",
    "nul": "image/png\x00",
    "100kb": "image/" + "x" * 100_000,
    "non-ascii": "image/pngé",
    "no-subtype": "image",
}


@pytest.mark.parametrize("name", list(BAD_MEDIA_TYPES))
def test_a_content_type_that_cannot_be_a_header_is_a_422_and_nothing_is_stored(client, name):
    content_type = BAD_MEDIA_TYPES[name]
    data = b"bytes of a data asset " + name.encode()
    asset_id = hashlib.sha256(data).hexdigest()
    response = client.post(
        "/v1/assets", json={"data_base64": base64.b64encode(data).decode(), "kind": "data", "content_type": content_type}
    )
    assert_problem(response, 422, "content_type")
    assert_problem(client.post("/v1/assets/uploads", json={"content_type": content_type, "kind": "data"}), 422, "content_type")
    if "\r" not in content_type and "\n" not in content_type:  # a multipart part header cannot carry a line break
        multipart = client.post("/v1/assets", data={"kind": "data"}, files={"file": ("x.bin", data, content_type)})
        # 422 from the ingress, or 400 where the multipart parser already refuses the part header (the 100 KB line)
        assert_problem(multipart, 400 if len(content_type) > 8192 else 422, "media type" if len(content_type) <= 8192 else "")
    assert_problem(client.get(f"/v1/assets/{asset_id}"), 404, "does not exist")


def test_other_bad_requests(client):
    assert_problem(client.post("/v1/assets", content=b"x", headers={"content-type": "text/plain"}), 415, "multipart")
    assert_problem(client.post("/v1/assets", json={"data_base64": "***"}), 422, "base64")
    assert_problem(client.get("/v1/assets/" + "0" * 64), 404, "does not exist")
    assert_problem(client.get("/v1/assets/not-a-hash"), 404, "64 lowercase hex")
    assert_problem(client.get("/v1/nothing-here"), 404, "no route")
    assert_problem(client.get("/v1/models/unknown-model"), 404, "not registered")


def test_request_id_is_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "test-request-0001"})
    assert response.headers["x-request-id"] == "test-request-0001"
    problem = client.post("/v1/edits", json={"model": "nope-model", "op": "sample"}, headers={"X-Request-ID": "test-request-0002"})
    assert problem.json()["instance"] == "test-request-0002"
