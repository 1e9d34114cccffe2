"""Two ingress replicas behind one HTTP port: a key's rate limit holds for the service as a whole, not per
replica, and one scrape of Ray's metrics port carries both replicas' ingress metrics.

The service runs as ``collage serve`` (tests/test_jobs_restart.py) with ``ingress_replicas=2`` and API keys,
against the session's S3 server under a prefix of its own; the session's own service has one ingress replica.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_BUCKET, _free_port
from tests.test_jobs_restart import _kill_group, _start, _wait_ready

TOKENS = {"admin": "clg_replicas-admin-token", "metered": "clg_replicas-metered-token"}
METERED_RATE_PER_S = 1.0  # the key's budget across both replicas: a burst of BURST, then one request/s
BURST = 2


class TwoIngressService:
    def __init__(self, url: str, metrics_url: str) -> None:
        self.url, self.metrics_url = url, metrics_url

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, headers={"Authorization": f"Bearer {TOKENS[key]}"})


@pytest.fixture(scope="module")
def two_ingress(s3_server, tmp_path_factory) -> Iterator[TwoIngressService]:
    from service.auth import key_entry

    tmp = tmp_path_factory.mktemp("two-ingress")
    port, metrics_port = _free_port(), _free_port()
    keys = [
        key_entry("admin", TOKENS["admin"], ["edit", "jobs", "admin"]),
        key_entry("metered", TOKENS["metered"], ["edit"], METERED_RATE_PER_S),
    ]
    env = {
        **os.environ,
        "COLLAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "COLLAGE_S3_BUCKET": TEST_BUCKET,
        "COLLAGE_S3_PREFIX": f"two-ingress-{uuid.uuid4().hex[:8]}/",
        "COLLAGE_HTTP_PORT": str(port),
        "COLLAGE_RAY_METRICS_PORT": str(metrics_port),
        "COLLAGE_DATA_DIR": str(tmp / "data"),
        "COLLAGE_INGRESS_REPLICAS": "2",
        "COLLAGE_JOBS_RUNNER_REPLICAS": "1",
        "COLLAGE_AUTH": "required",
        "COLLAGE_API_KEYS": json.dumps([entry.model_dump() for entry in keys]),
        "COLLAGE_RATE_LIMIT_PER_S": "0",
        "COLLAGE_RATE_LIMIT_BURST": str(BURST),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
    }
    env.pop("COLLAGE_CLIENT_TOKEN", None)
    log_path = tmp / "serve.log"
    process = _start(env, log_path)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", process, log_path)
        yield TwoIngressService(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        _kill_group(process, signal.SIGTERM)


@pytest.mark.server
def test_a_keys_rate_limit_is_its_budget_across_both_ingress_replicas(two_ingress):
    """Over a window a key is admitted about burst + rate x window requests in all: its budget, not twice it (each
    replica holds half of rate and burst, service/auth.py). Sequential requests on one keep-alive connection."""
    statuses: list[int] = []
    with two_ingress.client("metered") as client:
        started = time.monotonic()
        while time.monotonic() - started < 8.0:
            response = client.get("/v1/models")
            assert response.status_code in (200, 429), response.text
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
            statuses.append(response.status_code)
            time.sleep(0.01)
        window = time.monotonic() - started
    admitted = statuses.count(200)
    budget = BURST + METERED_RATE_PER_S * window
    # each replica's bucket: BURST / 2 deep, refilled at RATE / 2; two of them: at most the key's budget in all
    assert admitted <= budget + 1, f"{admitted} admitted in {window:.1f} s, budget {budget:.1f}: {statuses}"
    assert admitted >= 0.6 * budget, f"only {admitted} admitted in {window:.1f} s, budget {budget:.1f}: {statuses}"
    assert 429 in statuses, statuses
    with two_ingress.client("admin") as admin:  # other keys are not affected
        assert all(admin.get("/v1/models").status_code == 200 for _ in range(2 * BURST))
    # the key's requests reached both replicas, and each refused some: each held to its share, not to the whole
    refusing = wait_for_replicas(two_ingress, lambda s: s.name == "ray_collage_http_requests_total" and s.labels.get("status") == "429")
    assert len(refusing) == 2, refusing


def ingress_samples(text: str) -> list[Any]:
    """The samples of the ingress replicas' ``ray_collage_*`` series in one scrape of Ray's metrics port."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        sample
        for family in text_string_to_metric_families(text)
        if family.name.startswith("ray_collage_")
        for sample in family.samples
        if sample.labels.get("deployment") == "Ingress"
    ]


def wait_for_replicas(service: TwoIngressService, wanted: Callable[[Any], bool], traffic: Callable[[], None] | None = None) -> dict:
    """Scrape Ray's metrics port once every 2 s until the ``wanted`` samples of one scrape name both ingress
    replicas (Ray exports on an interval; bounded at 60 s): replica tag -> those samples, of the last scrape."""
    deadline, replicas = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        if traffic is not None:
            traffic()
        replicas = {}
        for sample in ingress_samples(httpx.get(service.metrics_url, timeout=10).text):
            if wanted(sample):
                replicas.setdefault(sample.labels["replica"], []).append(sample)
        if len(replicas) >= 2:
            break
        time.sleep(2)
    return replicas


@pytest.mark.server
def test_one_scrape_of_rays_metrics_port_has_both_ingress_replicas_series(two_ingress):
    """The ingress's own metrics go through Ray's metrics export with Serve's deployment and replica tags (service/
    metrics.py): one scrape of the port the chart's ServiceMonitor scrapes has every replica's series, counters as
    ``_total``, latencies in seconds."""
    with two_ingress.client("admin") as admin:

        def traffic() -> None:
            for _ in range(8):
                assert admin.get("/v1/models").status_code == 200

        replicas = wait_for_replicas(
            two_ingress,
            lambda s: (
                s.name == "ray_collage_http_requests_total" and s.labels.get("route") == "/v1/models" and s.labels.get("status") == "200"
            ),
            traffic,
        )
    assert len(replicas) == 2, f"one scrape named the replicas {sorted(replicas)}"
    text = httpx.get(two_ingress.metrics_url, timeout=10).text
    samples = ingress_samples(text)
    for name in (
        "ray_collage_http_requests_total",
        "ray_collage_http_request_duration_seconds_bucket",
        "ray_collage_http_request_duration_seconds_count",
    ):
        assert {s.labels["replica"] for s in samples if s.name == name} == set(replicas), name
    assert all(s.labels.get("application") == "collage" for s in samples)
    served = {replica: sum(s.value for s in series) for replica, series in replicas.items()}
    assert all(count >= 1 for count in served.values()), served


def test_an_ingress_metric_records_into_rays_export_and_this_replicas_registry():
    """No Ray here: a stand-in for the ``ray.serve.metrics`` object sees each record with its tags (Serve adds the
    replica's); the prometheus-client registry (the replica's /metrics) sees the same values. Gauges: Ray's are set."""
    from prometheus_client import CollectorRegistry, generate_latest

    from service import metrics

    class RayStandIn:
        def __init__(self) -> None:
            self.calls: list[tuple[str, float, dict[str, str]]] = []

        def inc(self, value, tags=None):
            self.calls.append(("inc", value, tags))

        def set(self, value, tags=None):
            self.calls.append(("set", value, tags))

        def observe(self, value, tags=None):
            self.calls.append(("observe", value, tags))

    registry = CollectorRegistry()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics, "REGISTRY", registry)
        counter = metrics.Counter("t_requests", "test", ["route", "status"])
        gauge = metrics.Gauge("t_depth", "test", ["family"])
        histogram = metrics.Histogram("t_seconds", "test", ["family"], buckets=(0.1, 1))
    for metric in (counter, gauge, histogram):
        metric._ray = RayStandIn()
    counter.labels("/v1/edits", "200").inc()
    counter.labels("/v1/edits", "200").inc(2)
    gauge.labels("style").inc()
    gauge.labels("style").inc()
    gauge.labels("style").dec()
    histogram.labels("style").observe(0.5)
    assert counter._ray.calls == [
        ("inc", 1.0, {"route": "/v1/edits", "status": "200"}),
        ("inc", 2, {"route": "/v1/edits", "status": "200"}),
    ]
    assert [value for _, value, _ in gauge._ray.calls] == [1.0, 2.0, 1.0]
    assert histogram._ray.calls == [("observe", 0.5, {"family": "style"})]
    text = generate_latest(registry).decode()
    assert 't_requests_total{route="/v1/edits",status="200"} 3.0' in text
    assert 't_depth{family="style"} 1.0' in text and 't_seconds_count{family="style"} 1.0' in text
    with pytest.raises(ValueError):
        counter.labels("/v1/edits")
