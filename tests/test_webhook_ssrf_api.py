"""Webhook SSRF through the API, with the address check on (as in production): every non-public form is a 422 at
submit; a public address is accepted and its delivery is attempted there only. The service runs inside a network
namespace of its own (the ``netns`` mark, tests/conftest.py), so nothing can leave the machine even on a regression."""

from __future__ import annotations

import os
import signal
import uuid

import httpx
import pytest

from service.config import Settings
from service.storage import AssetStore
from tests.conftest import TEST_BUCKET, _free_port
from tests.test_api import assert_problem
from tests.test_jobs import NON_PUBLIC_WEBHOOKS
from tests.test_jobs_api import sample, wait_for
from tests.test_jobs_restart import _kill_group, _start, _wait_ready


@pytest.mark.netns
@pytest.mark.server
def test_the_api_refuses_every_non_public_webhook_and_delivers_only_to_the_checked_address(s3_server, tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "COLLAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "COLLAGE_S3_BUCKET": TEST_BUCKET,
        "COLLAGE_S3_PREFIX": f"ssrf-{uuid.uuid4().hex[:8]}/",
        "COLLAGE_HTTP_PORT": str(port),
        "COLLAGE_RAY_METRICS_PORT": str(_free_port()),
        "COLLAGE_DATA_DIR": str(tmp_path / "data"),
        "COLLAGE_JOBS_POLL_INTERVAL_S": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        "COLLAGE_AUTH": "disabled",
        "COLLAGE_WEBHOOK_ALLOW_PRIVATE": "false",
        "COLLAGE_WEBHOOK_SECRET": "ssrf-test-secret",
        "COLLAGE_WEBHOOK_MAX_ATTEMPTS": "2",
        "COLLAGE_WEBHOOK_BACKOFF_S": "0.1",
        "COLLAGE_WEBHOOK_TIMEOUT_S": "2",
    }
    log_path = tmp_path / "serve.log"
    store = AssetStore(Settings(s3_endpoint_url=s3_server.endpoint_url, s3_bucket=TEST_BUCKET, s3_prefix=env["COLLAGE_S3_PREFIX"]))
    process = _start(env, log_path)
    try:
        _wait_ready(url, process, log_path)
        with httpx.Client(base_url=url, timeout=60) as client:
            for webhook in NON_PUBLIC_WEBHOOKS:
                response = client.post("/v1/jobs", json={"items": [sample(31_000)], "webhook_url": webhook})
                assert_problem(response, 422, "not a public address")
            assert not store.list_keys("jobs/") and not store.list_keys("job-queue/"), "a refused job is not stored"
            public = "http://8.8.8.8:9/hook"  # public: accepted; unreachable here (loopback only), so the delivery fails
            job_id = client.post("/v1/jobs", json={"items": [sample(31_001)], "webhook_url": public}).json()["job_id"]
            status = wait_for(client, job_id, until=lambda s: s["state"] == "succeeded" and s["webhook"]["state"] != "pending")
            webhook = status["webhook"]
            assert webhook["state"] == "failed" and webhook["attempts"] == 2 and webhook["last_error"], webhook
    finally:
        _kill_group(process, signal.SIGTERM)
