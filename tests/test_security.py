"""API keys, scopes, per-key ownership, rate limits and deadlines (docs/security.md names each promise's test).

The session service requires keys (tests/conftest.py): ``admin`` (edit, jobs, admin), ``alice`` and
``bob`` (edit, jobs), ``jobs-only`` (jobs), ``limited`` (edit, 0.2 requests/s after a burst of 3).
"""

from __future__ import annotations

import time

import httpx
import pytest

from service.auth import LOCAL_DEVELOPER, KeyRing, RateLimiter, key_entry, new_token, token_sha256
from service.config import Settings
from service.errors import Unauthorized
from tests.conftest import TEST_RATE_BURST, auth_header
from tests.helpers import random_png
from tests.test_api import MODEL, assert_problem
from tests.test_jobs_api import MODEL as COLLAGE_MODEL
from tests.test_jobs_api import sample, wait_for


@pytest.fixture(scope="module")
def as_key(service):
    """key id -> an httpx client of the service sending that key's token."""
    clients: dict[str, httpx.Client] = {}

    def client_for(key_id: str) -> httpx.Client:
        if key_id not in clients:
            clients[key_id] = httpx.Client(base_url=service.url, timeout=120, headers=auth_header(key_id))
        return clients[key_id]

    yield client_for
    for http in clients.values():
        http.close()


@pytest.fixture(scope="module")
def anonymous(service):
    with httpx.Client(base_url=service.url, timeout=60) as http:
        yield http


def _upload(http: httpx.Client, seed: int) -> str:
    response = http.post("/v1/assets", files={"file": ("a.png", random_png(seed=seed), "image/png")})
    assert response.status_code in (200, 201), response.text
    return response.json()["asset_id"]


# ---- keys and scopes, without the service -----------------------------------------------------------
def test_key_ring_accepts_only_configured_tokens_and_keeps_only_their_hash():
    token = new_token()
    entry = key_entry("shop", token, ["edit"])
    assert entry.sha256 == token_sha256(token) and token not in entry.model_dump_json()
    keys = KeyRing(Settings(auth="required", api_keys=[entry]))
    principal = keys.authenticate(f"Bearer {token}")
    assert principal.key_id == "shop" and principal.scopes == {"edit"} and not principal.sees_everything
    for header in (None, "", "Bearer", f"Basic {token}", f"Bearer {token}x", "Bearer " + token_sha256(token)):
        with pytest.raises(Unauthorized):
            keys.authenticate(header)
    assert KeyRing(Settings(auth="disabled")).authenticate(None) == LOCAL_DEVELOPER


def test_settings_default_to_required_auth_and_refuse_duplicate_keys():
    fields = Settings.model_fields  # the defaults themselves: the session's environment sets both
    assert fields["auth"].default == "required" and fields["api_keys"].default_factory() == []
    with pytest.raises(ValueError, match="own id"):
        Settings(api_keys=[key_entry("a", "t1", ["edit"]), key_entry("a", "t2", ["jobs"])])
    with pytest.raises(ValueError):
        Settings(api_keys=[{"id": "a", "sha256": "0" * 64, "scopes": ["root"]}])


def test_rate_limiter_allows_a_burst_then_the_rate_and_says_when_to_retry():
    now = [0.0]
    limiter = RateLimiter(burst=2, clock=lambda: now[0])
    assert [limiter.take("k", 0.5) for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("k", 0.5) == pytest.approx(2.0)  # empty: one token takes 2 s at 0.5/s
    assert limiter.take("other", 0.5) == 0.0  # buckets are per key
    now[0] = 2.0
    assert limiter.take("k", 0.5) == 0.0 and limiter.take("k", 0.5) > 0
    assert all(limiter.take("unlimited", 0) == 0.0 for _ in range(100))


def test_rate_limiter_of_one_of_n_replicas_holds_its_share_of_rate_and_burst():
    now = [0.0]
    replicas = [RateLimiter(burst=4, clock=lambda: now[0], replicas=2) for _ in range(2)]
    # the key's burst of 4 is two per replica; round-robin over both admits exactly the burst in all
    admitted = sum(replica.take("k", 1.0) == 0.0 for _ in range(4) for replica in replicas)
    assert admitted == 4
    assert replicas[0].take("k", 1.0) == pytest.approx(2.0)  # this replica's share of 1/s is 0.5/s: a token in 2 s
    now[0] = 10.0  # 10 s at 1/s: 10 tokens in all, but each bucket holds at most its share of the burst
    assert sum(replica.take("k", 1.0) == 0.0 for _ in range(10) for replica in replicas) == 4
    assert RateLimiter(burst=1, replicas=4).depth == 1.0  # a share below one token would never admit: one at least


# ---- authentication and scopes through HTTP ----------------------------------------------------------
def test_probes_and_metrics_are_open_and_everything_else_needs_a_key(anonymous):
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code == 200
    assert anonymous.get("/metrics").status_code == 200  # metrics_public defaults to true
    for method, path in [
        ("GET", "/v1/models"),
        ("POST", "/v1/edits"),
        ("POST", "/v1/assets"),
        ("GET", "/v1/assets/" + "0" * 64),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/" + "0" * 32),
        ("POST", "/v1/assets/uploads"),
    ]:
        response = anonymous.request(method, path, json={})
        assert_problem(response, 401, "needs an API key"), (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_malformed_and_unknown_tokens_are_401(anonymous):
    response = anonymous.get("/v1/models", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_problem(response, 401, "Bearer <token>")
    response = anonymous.get("/v1/models", headers={"Authorization": "Bearer clg_not-a-configured-token"})
    assert_problem(response, 401, "not a valid API key")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_missing_scope_is_403(as_key):
    response = as_key("jobs-only").post("/v1/edits", json={"model": MODEL, "op": "sample", "inputs": {"seed": 1}})
    assert_problem(response, 403, "scopes ['edit']")
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert_problem(as_key("limited").post("/v1/jobs", json={"items": [sample(1)]}), 403, "jobs")
    assert_problem(as_key("alice").put(f"/v1/models/{MODEL}/catalog/labels", json={"labels": {"0": "x"}}), 403, "admin")
    catalog = as_key("alice").post("/v1/edits", json={"model": MODEL, "op": "catalog", "params": {"k": 2, "n_samples": 8}})
    assert_problem(catalog, 403, "admin")
    assert as_key("jobs-only").get("/v1/models").status_code == 200  # reading the model list needs any valid key


# ---- ownership of assets, results, uploads and jobs -------------------------------------------------
def test_an_asset_is_visible_only_to_keys_that_uploaded_it(as_key):
    asset_id = _upload(as_key("alice"), seed=1101)
    assert as_key("alice").get(f"/v1/assets/{asset_id}").status_code == 200
    assert as_key("admin").get(f"/v1/assets/{asset_id}").status_code == 200
    hidden = as_key("bob").get(f"/v1/assets/{asset_id}")
    missing = as_key("bob").get("/v1/assets/" + "0" * 64)
    assert_problem(hidden, 404)
    assert hidden.json()["detail"].replace(asset_id, "ID") == missing.json()["detail"].replace("0" * 64, "ID")  # nothing leaks
    # bob cannot use it as an input either; the check comes before any cache lookup or computation
    project = {"model": MODEL, "op": "project", "params": {"steps": 1, "resize": True}, "inputs": {"image": asset_id}}
    assert_problem(as_key("bob").post("/v1/edits", json=project), 404, "does not exist")
    # the same bytes uploaded by bob are his too (ids are content hashes)
    assert _upload(as_key("bob"), seed=1101) == asset_id
    assert as_key("bob").get(f"/v1/assets/{asset_id}").status_code == 200


def test_presigned_urls_live_presign_expires_s(as_key):
    from service.config import get_settings

    lifetime = get_settings().presign_expires_s
    info = as_key("alice").get(f"/v1/assets/{_upload(as_key('alice'), seed=1109)}").json()
    assert info["url_expires_in_s"] == lifetime and f"X-Amz-Expires={lifetime}" in info["url"]


def test_a_result_is_visible_only_to_keys_that_asked_for_it(as_key):
    body = {"model": MODEL, "op": "sample", "inputs": {"seed": 1102}}
    first = as_key("alice").post("/v1/edits", json=body).json()
    assert first["cached"] is False
    assert as_key("alice").get(f"/v1/assets/{first['result_id']}").status_code == 200
    assert_problem(as_key("bob").get(f"/v1/assets/{first['result_id']}"), 404)
    again = as_key("bob").post("/v1/edits", json=body).json()  # bob asks for the same edit: his result now
    assert again["result_id"] == first["result_id"] and again["cached"] is True
    assert as_key("bob").get(f"/v1/assets/{first['result_id']}").status_code == 200


def test_another_keys_projection_cannot_be_used(as_key):
    image = _upload(as_key("alice"), seed=1103)
    projected = as_key("alice").post(
        "/v1/edits",
        json={"model": COLLAGE_MODEL, "op": "project", "inputs": {"image": image}, "params": {"steps": 2, "class_id": 0, "resize": True}},
    )
    assert projected.status_code == 200, projected.text
    resample = {"model": COLLAGE_MODEL, "op": "sample", "inputs": {"projection": projected.json()["result_id"]}}
    assert as_key("alice").post("/v1/edits", json=resample).status_code == 200
    assert_problem(as_key("bob").post("/v1/edits", json=resample), 404, "does not exist")


def test_an_upload_slot_can_be_completed_only_by_its_key(as_key):
    slot = as_key("alice").post("/v1/assets/uploads", json={"content_type": "image/png", "kind": "image"}).json()
    httpx.put(slot["url"], content=random_png(seed=1104), headers=slot["headers"]).raise_for_status()
    assert_problem(as_key("bob").post(f"/v1/assets/uploads/{slot['upload_id']}/complete"), 404, "does not exist")
    done = as_key("alice").post(f"/v1/assets/uploads/{slot['upload_id']}/complete")
    assert done.status_code in (200, 201), done.text
    assert_problem(as_key("bob").get(f"/v1/assets/{done.json()['asset_id']}"), 404)


def test_jobs_belong_to_their_key_and_idempotency_keys_are_per_key(as_key):
    body = {"items": [sample(1105), sample(1106)]}
    alice = as_key("alice").post("/v1/jobs", json=body, headers={"Idempotency-Key": "shared-key-1"})
    bob = as_key("bob").post("/v1/jobs", json=body, headers={"Idempotency-Key": "shared-key-1"})
    assert alice.status_code == bob.status_code == 202, (alice.text, bob.text)  # two jobs, neither a replay of the other
    job_id = alice.json()["job_id"]
    assert bob.json()["job_id"] != job_id
    for method, path in [("GET", f"/v1/jobs/{job_id}"), ("GET", f"/v1/jobs/{job_id}/results"), ("DELETE", f"/v1/jobs/{job_id}")]:
        assert_problem(as_key("bob").request(method, path), 404, "does not exist")
    status = wait_for(as_key("alice"), job_id)
    assert status["state"] == "succeeded", status
    assert as_key("admin").get(f"/v1/jobs/{job_id}").status_code == 200
    results = as_key("alice").get(f"/v1/jobs/{job_id}/results").json()["items"]
    assert all(as_key("alice").get(f"/v1/assets/{item['result_id']}").status_code == 200 for item in results)
    replay = as_key("alice").post("/v1/jobs", json=body, headers={"Idempotency-Key": "shared-key-1"})
    assert replay.status_code == 200 and replay.json()["job_id"] == job_id


def test_job_items_run_with_the_submitting_keys_access(as_key):
    image = _upload(as_key("alice"), seed=1107)
    item = {"model": MODEL, "op": "project", "params": {"steps": 1, "resize": True}, "inputs": {"image": image}}
    job_id = as_key("bob").post("/v1/jobs", json={"items": [item]}).json()["job_id"]
    status = wait_for(as_key("bob"), job_id)
    assert status["state"] == "failed" and status["errors"][0]["problem"]["status"] == 404, status
    manifest = as_key("alice").post("/v1/assets", json={"data_base64": "e30K", "kind": "data"}).json()["asset_id"]
    assert_problem(as_key("bob").post("/v1/jobs", json={"manifest": {"asset_id": manifest}}), 404, "does not exist")


# ---- rate limit and deadline ------------------------------------------------------------------------
def test_a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_do_not(as_key):
    statuses = []
    for _ in range(TEST_RATE_BURST + 2):
        response = as_key("limited").get("/v1/models")
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert_problem(response, 429, "rate limit")
            assert int(response.headers["retry-after"]) >= 1
    assert statuses[0] == 200 and 429 in statuses, statuses
    assert all(as_key("alice").get("/v1/models").status_code == 200 for _ in range(TEST_RATE_BURST + 2))


def test_deadline_header_is_checked_and_an_expired_edit_is_not_computed(as_key):
    body = {"model": MODEL, "op": "sample", "inputs": {"seed": 1108}}
    assert_problem(as_key("alice").post("/v1/edits", json=body, headers={"X-Request-Timeout": "soon"}), 400, "X-Request-Timeout")
    assert_problem(as_key("alice").post("/v1/edits", json=body, headers={"X-Request-Timeout": "-1"}), 400, "X-Request-Timeout")
    assert_problem(as_key("alice").post("/v1/edits", json=body, headers={"X-Request-Timeout": "0"}), 504, "not computed")
    assert_problem(as_key("alice").post("/v1/edits", json=body, headers={"X-Request-Timeout": "0.000001"}), 504, "deadline")
    time.sleep(0.5)
    later = as_key("alice").post("/v1/edits", json=body, headers={"X-Request-Timeout": "60"})
    assert later.status_code == 200 and later.json()["cached"] is False  # the expired attempts stored nothing


def test_metrics_need_an_admin_key_when_not_public():
    import asyncio

    from starlette.requests import Request

    from service.auth import metrics_access
    from service.config import patched_environ
    from service.errors import Forbidden

    def request(token: str | None) -> Request:
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        return Request({"type": "http", "method": "GET", "path": "/metrics", "headers": headers, "query_string": b""})

    admin, alice = new_token(), new_token()
    keys = f"[{key_entry('ops', admin, ['admin']).model_dump_json()}, {key_entry('alice', alice, ['edit']).model_dump_json()}]"
    with patched_environ({"COLLAGE_AUTH": "required", "COLLAGE_API_KEYS": keys, "COLLAGE_METRICS_PUBLIC": "true"}):
        asyncio.run(metrics_access(request(None)))  # public: no token needed
    with patched_environ({"COLLAGE_AUTH": "required", "COLLAGE_API_KEYS": keys, "COLLAGE_METRICS_PUBLIC": "false"}):
        with pytest.raises(Unauthorized):
            asyncio.run(metrics_access(request(None)))
        with pytest.raises(Forbidden):
            asyncio.run(metrics_access(request(alice)))
        asyncio.run(metrics_access(request(admin)))
