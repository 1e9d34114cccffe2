"""Async batch jobs through the real service (Ray Serve + SeaweedFS): POST/GET/DELETE /v1/jobs.

Items are edits of the shipped ``collage-faces`` model (32 px, fast on CPU). Each test uses seeds of
its own range, so no test's results are cached by another's.
"""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from service.webhooks import verify, webhook_id
from tests.test_api import assert_problem

MODEL = "collage-faces"
WEBHOOK_SECRET = "test-webhook-secret"  # conftest's service fixture configures the same secret
TERMINAL = ("succeeded", "completed_with_errors", "failed", "cancelled")


def sample(seed: int, class_id: int | str = 0, **params) -> dict:
    return {"model": MODEL, "op": "sample", "params": params, "inputs": {"seed": seed, "class_id": class_id}}


def submit(client, body: dict, key: str | None = None):
    return client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key} if key else {})


def wait_for(client, job_id: str, until=lambda s: s["state"] in TERMINAL, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        status = response.json()
        if until(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not there after {timeout_s} s: {status}")


def all_results(client, job_id: str, limit: int = 64) -> list[dict]:
    items, cursor = [], 0
    while cursor is not None:
        response = client.get(f"/v1/jobs/{job_id}/results", params={"cursor": cursor, "limit": limit})
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
    return items


def test_a_200_item_job_completes_with_every_result_stored(client):
    body = {"items": [sample(10_000 + i, i % 4) for i in range(200)]}
    response = submit(client, body)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/jobs/{response.json()['job_id']}"
    job = response.json()
    assert job["state"] in ("queued", "running") and job["counts"]["total"] == 200 and job["source"] == "items"

    status = wait_for(client, job["job_id"])
    assert status["state"] == "succeeded", status
    assert status["counts"] == {"total": 200, "succeeded": 200, "failed": 0, "cancelled": 0, "pending": 0}
    assert status["started_at"] and status["finished_at"] and status["errors"] == []

    items = all_results(client, job["job_id"])
    assert [item["index"] for item in items] == list(range(200))
    assert all(item["state"] == "succeeded" and item["width"] == 32 and item["seed"] == 10_000 + item["index"] for item in items)
    assert len({item["result_id"] for item in items}) == 200
    for item in items[::20]:  # every result is a stored PNG, readable as an asset
        asset = client.get(f"/v1/assets/{item['result_id']}")
        assert asset.status_code == 200 and asset.json()["width"] == 32
        assert client.get(item["url"]).content[:8] == b"\x89PNG\r\n\x1a\n"
    # the same edit run synchronously is the same content-addressed result, served from the cache
    again = client.post("/v1/edits", json=sample(10_000 + 7, 7 % 4))
    assert again.json()["result_id"] == items[7]["result_id"] and again.json()["cached"] is True


def test_a_bad_item_fails_alone_with_its_problem_object(client):
    items = [
        sample(11_000),
        {"model": "no-such-model", "op": "sample", "inputs": {"seed": 1, "class_id": 0}},
        sample(11_001, class_id="unicorn"),  # unknown class name
        {"model": MODEL, "op": "sample", "params": {"truncation": 7}, "inputs": {"seed": 2, "class_id": 0}},
        {"model": MODEL},  # not an edit request: op missing
        sample(11_002, 1),
    ]
    job_id = submit(client, {"items": items}).json()["job_id"]
    status = wait_for(client, job_id)
    assert status["state"] == "completed_with_errors"
    assert status["counts"]["succeeded"] == 2 and status["counts"]["failed"] == 4
    assert sorted(e["index"] for e in status["errors"]) == [1, 2, 3, 4]
    results = {item["index"]: item for item in all_results(client, job_id)}
    assert results[0]["state"] == results[5]["state"] == "succeeded"
    assert results[1]["problem"]["status"] == 404 and "no-such-model" in results[1]["problem"]["detail"]
    assert results[2]["problem"]["status"] == 422 and "unicorn" in results[2]["problem"]["detail"]
    assert results[3]["problem"]["status"] == 422 and "truncation" in results[3]["problem"]["detail"]
    assert results[4]["problem"]["status"] == 422 and "op" in results[4]["problem"]["detail"]
    for index in (1, 2, 3, 4):
        assert results[index]["state"] == "failed" and results[index]["result_id"] is None
        assert results[index]["problem"]["type"].startswith("https://")


def test_all_items_failing_is_a_failed_job(client):
    job_id = submit(client, {"items": [sample(1, class_id="unicorn"), sample(2, class_id=99)]}).json()["job_id"]
    assert wait_for(client, job_id)["state"] == "failed"


def test_idempotency_key_returns_the_same_job_and_refuses_another_body(client):
    body = {"items": [sample(12_000 + i) for i in range(3)]}
    first = submit(client, body, key="order-42-retouch")
    assert first.status_code == 202, first.text
    again = submit(client, body, key="order-42-retouch")
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]
    other = submit(client, {"items": [sample(12_999)]}, key="order-42-retouch")
    problem = assert_problem(other, 409, "different body")
    assert problem["job_id"] == first.json()["job_id"]
    assert submit(client, body).json()["job_id"] != first.json()["job_id"]  # no key: a new job each time
    assert wait_for(client, first.json()["job_id"])["counts"]["succeeded"] == 3
    assert submit(client, body, key="order-42-retouch").json()["state"] == "succeeded"  # also after it finished
    assert_problem(submit(client, body, key="has space"), 400, "Idempotency-Key")


def test_cancel_lets_items_in_flight_finish_and_marks_the_rest_cancelled(client):
    # project is slow (100 Adam steps per item), so most items are still queued when the cancel lands
    target = client.post("/v1/edits", json=sample(13_000, 2)).json()["result_id"]
    items = [
        {
            "model": MODEL,
            "op": "project",
            "params": {"steps": 100, "class_id": 2, "learning_rate": 0.05 + i / 1000},
            "inputs": {"image": target},
        }
        for i in range(60)
    ]
    job_id = submit(client, {"items": items}).json()["job_id"]
    wait_for(client, job_id, until=lambda s: s["state"] == "running", timeout_s=60)
    response = client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 202, response.text
    assert response.json()["state"] in ("cancelling", "cancelled")
    status = wait_for(client, job_id, timeout_s=120)
    counts = status["counts"]
    assert status["state"] == "cancelled", status
    assert counts["cancelled"] > 0 and counts["pending"] == 0
    assert counts["succeeded"] + counts["failed"] + counts["cancelled"] == 60 and counts["failed"] == 0
    items = all_results(client, job_id, limit=100)
    assert sum(item["state"] == "cancelled" for item in items) == counts["cancelled"]
    assert all(item["result_id"] for item in items if item["state"] == "succeeded")
    assert_problem(client.delete(f"/v1/jobs/{job_id}"), 409, "already finished")


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict, bytes]] = []
    fail_first = 0

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append((dict(self.headers), body))
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_receiver():
    _Receiver.received, _Receiver.fail_first = [], 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/collage", _Receiver
    server.shutdown()


def test_webhook_gets_the_signed_final_status_after_retries(client, webhook_receiver):
    url, receiver = webhook_receiver
    receiver.fail_first = 2  # two 503s, then accepted: delivery retries with backoff
    job_id = submit(client, {"items": [sample(14_000), sample(14_001)], "webhook_url": url}).json()["job_id"]
    status = wait_for(client, job_id, until=lambda s: s["state"] in TERMINAL and s["webhook"]["state"] != "pending")
    assert status["webhook"]["state"] == "delivered" and status["webhook"]["attempts"] == 3, status["webhook"]
    assert len(receiver.received) == 3
    ids = {{k.lower(): v for k, v in headers.items()}["webhook-id"] for headers, _ in receiver.received}
    assert ids == {webhook_id(job_id)}, "the retries of one delivery carry one webhook-id"
    headers, body = receiver.received[-1]
    assert verify(WEBHOOK_SECRET, headers, body)
    assert not verify("another-secret", headers, body)
    assert not verify(WEBHOOK_SECRET, headers, body + b" ")
    payload = json.loads(body)
    assert payload["job_id"] == job_id and payload["state"] == "succeeded" and payload["counts"]["succeeded"] == 2


def test_an_unreachable_webhook_is_recorded_and_does_not_fail_the_job(client):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    job_id = submit(client, {"items": [sample(14_100)], "webhook_url": dead_url}).json()["job_id"]
    status = wait_for(client, job_id, until=lambda s: s["state"] in TERMINAL and s["webhook"]["state"] != "pending")
    assert status["state"] == "succeeded"
    assert status["webhook"]["state"] == "failed" and status["webhook"]["attempts"] == 3  # COLLAGE_WEBHOOK_MAX_ATTEMPTS in conftest
    assert "ConnectError" in status["webhook"]["last_error"]


def test_a_manifest_in_s3_runs_like_inline_items(client):
    lines = [json.dumps(sample(15_000 + i, "owl")) for i in range(5)]
    manifest = ("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n").encode()  # a blank line is skipped
    asset = client.post("/v1/assets", files={"file": ("edits.jsonl", manifest, "application/x-ndjson")}, data={"kind": "data"})
    assert asset.status_code in (200, 201), asset.text
    job = submit(client, {"manifest": {"asset_id": asset.json()["asset_id"]}}).json()
    assert job["source"] == "manifest" and job["counts"]["total"] == 5
    assert wait_for(client, job["job_id"])["counts"]["succeeded"] == 5
    assert [item["seed"] for item in all_results(client, job["job_id"])] == [15_000 + i for i in range(5)]


def test_items_without_a_seed_get_one_fixed_per_job_and_item(client):
    items = [{"model": MODEL, "op": "sample", "inputs": {"class_id": 1}} for _ in range(3)]
    job_id = submit(client, {"items": items}).json()["job_id"]
    wait_for(client, job_id)
    seeds = [item["seed"] for item in all_results(client, job_id)]
    assert len(set(seeds)) == 3 and all(isinstance(seed, int) for seed in seeds)


@pytest.mark.parametrize(
    "body, status, detail",
    [
        ({}, 422, "exactly one"),
        ({"items": []}, 422, "at least 1"),
        ({"items": [sample(1)], "manifest": {"asset_id": "0" * 64}}, 422, "exactly one"),
        ({"items": [1, 2]}, 422, "valid dictionary"),
        ({"items": [sample(1)], "webhook_url": "ftp://example.com/x"}, 422, "webhook_url"),
        ({"manifest": {"asset_id": "0" * 64}}, 404, "does not exist"),
        ({"manifest": {"asset_id": "not-hex"}}, 422, "asset_id"),
        ({"items": [sample(1)], "priority": "high"}, 422, "priority"),
    ],
)
def test_bad_submissions_are_4xx(client, body, status, detail):
    assert_problem(submit(client, body), status, detail)


@pytest.mark.parametrize(
    "content, detail",
    [
        (b'{"model": "collage-faces", "op": "sample"}\nnot json\n', "line 2 is not JSON"),
        (b"[1, 2]\n", "line 1 is a JSON list"),
        (b"\n\n", "no edit requests"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_malformed_manifests_are_422(client, content, detail):
    asset = client.post("/v1/assets", files={"file": ("m.jsonl", content, "application/x-ndjson")}, data={"kind": "data"})
    assert_problem(submit(client, {"manifest": {"asset_id": asset.json()["asset_id"]}}), 422, detail)


def test_unknown_jobs_are_404(client):
    assert_problem(client.get("/v1/jobs/" + "a" * 32), 404, "does not exist")
    assert_problem(client.get("/v1/jobs/../../etc"), 404)
    assert_problem(client.get("/v1/jobs/NOT-A-JOB"), 404, "32 lowercase hex")
    assert_problem(client.get(f"/v1/jobs/{'b' * 32}/results"), 404)
    assert_problem(client.delete(f"/v1/jobs/{'c' * 32}"), 404)
    job_id = submit(client, {"items": [sample(16_000)]}).json()["job_id"]
    assert_problem(client.get(f"/v1/jobs/{job_id}/results", params={"limit": 0}), 422, "limit")
    assert_problem(client.get(f"/v1/jobs/{job_id}/results", params={"cursor": -1}), 422, "cursor")


def _item_records(job_id: str) -> dict[str, bytes]:
    """Every item record of a job, key -> bytes, read straight from S3 (the service's bucket and prefix)."""
    from service.config import get_settings
    from service.storage import AssetStore

    store = AssetStore(get_settings())
    keys = store.list_keys(store.relative(store.job_key(job_id, "items")) + "/")
    return {key: store.get(store.prefix + key) for key in keys}


def _lease_owner(job_id: str) -> str:
    from service.config import get_settings
    from service.job_lease import LEASE_OBJECT
    from service.storage import AssetStore

    store = AssetStore(get_settings())
    found = store.get_with_etag(store.job_key(job_id, LEASE_OBJECT))
    assert found is not None, f"job {job_id} has no lease"
    return json.loads(found[0])["owner"]


def test_two_runners_share_jobs_and_a_killed_runners_job_is_taken_over_with_every_item_once(client):
    """The service runs two JobRunner replicas (conftest). Kill the one holding the job's lease mid-job:
    the other (or the replica Serve starts instead) takes the job over once the lease expires, and
    every item is recorded exactly once, those recorded before the kill unchanged."""
    import ray

    total = 400
    job_id = submit(client, {"items": [sample(17_000 + i, i % 4) for i in range(total)]}).json()["job_id"]
    at_kill = wait_for(client, job_id, until=lambda s: s["counts"]["succeeded"] >= 40)
    holder = _lease_owner(job_id)
    runners = [a for a in ray.util.list_named_actors(all_namespaces=True) if "JobRunner" in a["name"]]
    assert len(runners) == 2, runners
    [killed] = [a for a in runners if a["name"].endswith("#" + holder.rsplit("-", 1)[0])]
    ray.kill(ray.get_actor(killed["name"], namespace=killed["namespace"]), no_restart=True)
    before = _item_records(job_id)
    assert at_kill["state"] == "running" and 40 <= len(before) < total, "the job must be killed mid-way"
    assert {json.loads(record)["runner"] for record in before.values()} == {holder}, "one runner ran the job until the kill"

    status = wait_for(client, job_id)
    assert status["state"] == "succeeded", status
    assert status["resumed"] >= 1 and status["counts"]["succeeded"] == total
    after = _item_records(job_id)
    indices = [int(key.rsplit("/", 1)[-1].split(".")[0]) for key in after]
    assert sorted(indices) == list(range(total)), "every item recorded exactly once"
    assert all(after[key] == record for key, record in before.items()), "items finished before the kill were not run again"
    successors = {json.loads(record)["runner"] for record in after.values()} - {holder}
    assert len(successors) == 1, "after the kill one other runner finished the job"
    items = all_results(client, job_id, limit=1000)
    assert len({item["result_id"] for item in items}) == total


def test_job_items_are_counted_on_the_ray_metrics_port(client):
    import os

    import httpx

    wait_for(client, submit(client, {"items": [sample(18_000), sample(18_001, class_id="nope")]}).json()["job_id"])
    url = f"http://127.0.0.1:{os.environ['COLLAGE_RAY_METRICS_PORT']}/metrics"
    deadline, lines = time.monotonic() + 60, []
    while time.monotonic() < deadline:  # Ray exports on an interval
        lines = [line for line in httpx.get(url, timeout=10).text.splitlines() if line.startswith("ray_collage_job_items")]
        if any('state="failed"' in line for line in lines) and any('state="succeeded"' in line for line in lines):
            break
        time.sleep(2)
    assert any('state="failed"' in line for line in lines) and any('state="succeeded"' in line for line in lines), lines


def test_a_queue_marker_without_a_job_is_dropped_by_the_runner(client):
    from service.config import get_settings
    from service.jobs import JobStore
    from service.storage import AssetStore

    jobs = JobStore(AssetStore(get_settings()))
    orphan = "e" * 32
    jobs.enqueue(orphan)
    deadline = time.monotonic() + 30
    while orphan in jobs.queued_ids() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert orphan not in jobs.queued_ids()
    assert client.get("/readyz").json()["checks"]["jobs"] == "ok"
