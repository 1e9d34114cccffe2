"""The service on a multi-node Ray cluster on this machine, placed as the chart places it (issue 25).

One cluster for the module (tests/multinode.py: ``ray.cluster_utils.Cluster`` in a child process): a head node that
offers the custom resources the ingress and the job runner reserve, and two worker nodes that offer the one every
family replica reserves (``ingress_resources``, ``jobs_resources``, ``family_resources``: the settings the chart
turns into ray_actor_options, with worker groups offering them through rayStartParams.resources). Two ingress
replicas, two replicas of the style family, one of each other family. The tests run in file order: the last one
removes a worker node.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from service.config import REPO_ROOT, get_settings, patched_environ
from service.families import deployment_class_name, family_names
from tests.conftest import TEST_BUCKET, _free_port
from tests.helpers import png_bytes, random_png
from tests.multinode import ClusterDriver
from tests.test_jobs_api import TERMINAL, _item_records, all_results

pytestmark = pytest.mark.server

STYLE_REPLICAS = 2
INGRESS_REPLICAS = 2
ITEM_ATTEMPTS = 12  # a job item retries a 429/503 up to 12 times (backoff to 8 s: ~70 s), longer than a node's gap
# GCS declares a node dead after 3 missed health checks 1 s apart (Ray's defaults: 5 x 3 s), so the gap is short
SYSTEM_CONFIG = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3, "health_check_timeout_ms": 1000}


class MultiNode:
    def __init__(self, driver: ClusterDriver, metrics_ports: list[int]) -> None:
        self.driver, self.url, self.metrics_ports = driver, driver.url, metrics_ports

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def replicas(self, deployment: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.driver.replicas() if deployment is None or r["deployment"] == deployment]

    def scrape(self) -> list[Any]:
        """Every sample of one scrape of each node's Ray metrics port (a node that is gone: none)."""
        from prometheus_client.parser import text_string_to_metric_families

        samples = []
        for port in self.metrics_ports:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            except httpx.HTTPError:
                continue
            samples += [s for family in text_string_to_metric_families(text) for s in family.samples]
        return samples


@pytest.fixture(scope="module")
def multinode(s3_server, tmp_path_factory) -> Iterator[MultiNode]:
    tmp = tmp_path_factory.mktemp("multinode")
    metrics_ports = [_free_port() for _ in range(3)]
    env = {
        "COLLAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "COLLAGE_S3_BUCKET": TEST_BUCKET,
        "COLLAGE_S3_PREFIX": f"multinode-{uuid.uuid4().hex[:8]}/",
        "COLLAGE_HTTP_PORT": str(_free_port()),
        "COLLAGE_DATA_DIR": str(tmp / "data"),
        "COLLAGE_AUTH": "disabled",
        "COLLAGE_AUTOSCALING_ENABLED": "false",
        "COLLAGE_INGRESS_REPLICAS": str(INGRESS_REPLICAS),
        "COLLAGE_JOBS_RUNNER_REPLICAS": "1",
        "COLLAGE_JOBS_POLL_INTERVAL_S": "1",
        "COLLAGE_JOBS_ITEM_ATTEMPTS": str(ITEM_ATTEMPTS),
        "COLLAGE_FAMILY_OVERRIDES": json.dumps({"style": {"replicas": STYLE_REPLICAS}}),
        # seven family replicas of 0.1 CPU fit one worker node of 1 CPU: the survivor takes the removed node's
        "COLLAGE_FAMILY_NUM_CPUS": "0.1",
        "COLLAGE_FAMILY_RESOURCES": json.dumps({"collage_family": 1}),
        "COLLAGE_INGRESS_RESOURCES": json.dumps({"collage_ingress": 1}),
        "COLLAGE_JOBS_RESOURCES": json.dumps({"collage_jobs": 1}),
        "COLLAGE_BATCH_WAIT_TIMEOUT_S": "0.05",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
    }
    head = {
        "num_cpus": 3,  # two ingress replicas (Serve's 1 CPU each) and the runner
        "resources": {"collage_ingress": INGRESS_REPLICAS, "collage_jobs": 1},
        "metrics_export_port": metrics_ports[0],
    }
    workers = [{"num_cpus": 1, "resources": {"collage_family": 16}, "metrics_export_port": port} for port in metrics_ports[1:]]
    with patched_environ(env):
        os.environ.pop("COLLAGE_CLIENT_TOKEN", None)
        driver = ClusterDriver(dict(os.environ), head, workers, SYSTEM_CONFIG)
        try:
            yield MultiNode(driver, metrics_ports)
        finally:
            driver.stop()


# ---- an edit of every family ---------------------------------------------------------------------
def _upload(client: httpx.Client, data: bytes) -> str:
    response = client.post("/v1/assets", files={"file": ("x.png", data, "image/png")})
    assert response.status_code in (200, 201), response.text
    return response.json()["asset_id"]


def family_edits(client: httpx.Client) -> dict[str, Any]:
    """family -> a function of a number giving a small edit of that family on a shipped checkpoint."""
    hole = np.zeros((64, 64), np.uint8)
    hole[16:32, 20:44] = 255
    photo, mask = _upload(client, random_png(64, 64, seed=3)), _upload(client, png_bytes(hole))
    warp = json.loads((REPO_ROOT / "checkpoints" / "warp-persons" / "model.json").read_text())
    warp_image, warp_example = next(iter(warp["examples"].items()))
    edits = {
        "style": lambda i: {"model": "style-demo-random", "op": "sample", "inputs": {"seed": i}},
        "collage": lambda i: {"model": "collage-faces", "op": "sample", "inputs": {"seed": i, "class_id": i % 4}},
        "inpaint": lambda i: {
            "model": "edgeconnect-demo",
            "op": "inpaint",
            "params": {"sigma": 2.0 + i * 1e-6},
            "inputs": {"image": photo, "mask": mask},
        },
        "warp": lambda i: {
            "model": "warp-persons",
            "op": "pose_transfer",
            "inputs": {"image": warp_image, "target_keypoints": warp_example["target_keypoints"]},
        },
        "ingan": lambda i: {"model": "ingan-rocket", "op": "retarget", "params": {"outputs": [{"height": 64, "width": 96 + 8 * (i % 4)}]}},
        "person": lambda i: {"model": "person-persons", "op": "sample", "inputs": {"seed": i}},
    }
    assert set(edits) == set(family_names()), "every family has an edit here"
    return edits


def test_an_edit_of_every_family_succeeds_and_family_replicas_run_only_on_worker_nodes(multinode):
    with multinode.client() as client:
        for family, edit in family_edits(client).items():
            response = client.post("/v1/edits", json={**edit(1), "output": {"inline": True}})
            assert response.status_code == 200, f"{family}: {response.text[:500]}"
            assert base64.b64decode(response.json()["image_base64"])[:8] == b"\x89PNG\r\n\x1a\n"
    driver = multinode.driver
    replicas = multinode.replicas()
    for family in family_names():
        placed = [r for r in replicas if r["deployment"] == deployment_class_name(family)]
        assert len(placed) == (STYLE_REPLICAS if family == "style" else 1), placed
        assert {r["node_id"] for r in placed} <= set(driver.workers), f"{family} replicas outside the worker nodes: {placed}"
    ingress = [r for r in replicas if r["deployment"] == "Ingress"]
    runner = [r for r in replicas if r["deployment"] == "JobRunner"]
    assert len(ingress) == INGRESS_REPLICAS and {r["node_id"] for r in ingress + runner} == {driver.head}, replicas
    # the family replicas took both worker nodes (Serve spreads replicas over the nodes that fit them)
    assert {r["node_id"] for r in replicas if r["node_id"] != driver.head} == set(driver.workers), replicas


# ---- both replicas serve ---------------------------------------------------------------------------
def _served_by_replica(samples: list[Any], metric: str, deployment: str) -> Counter:
    served: Counter = Counter()
    for sample in samples:
        if sample.name == metric and sample.labels.get("deployment") == deployment:
            served[sample.labels["replica"]] += sample.value
    return served


def test_two_ingress_replicas_and_two_replicas_of_one_family_share_the_traffic(multinode):
    """Counted per replica by Ray's metrics ports: the ingress's own request counter (tagged with its replica by
    Serve) and Serve's request counter of the style deployment. Edits name a model (Serve's multiplexed model id),
    and Serve keeps a model's edits on the replica that loaded it while it has room (max_ongoing_requests): one
    model's edits stay on one replica. So the edits name two models of the family; the second, once the routers
    know where the first is loaded, goes to the replica with fewest models, the other one. Bounded: at most
    8 rounds of 24 edits."""
    import concurrent.futures

    models = ("style-demo-random", "style-faces")
    seeds = iter(range(10_000, 10_000 + 8 * 24))
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        clients = [multinode.client() for _ in range(6)]  # connections of their own: HAProxy balances requests

        def one(k: int, round: int) -> int:
            model = models[k % 2 if round else 0]  # the first round loads the first model (test one did already)
            body = {"model": model, "op": "sample", "inputs": {"seed": next(seeds)}}
            return clients[k % len(clients)].post("/v1/edits", json=body).status_code

        ingress, style = Counter(), Counter()
        try:
            for round in range(8):
                assert set(pool.map(one, range(24), [round] * 24)) == {200}
                time.sleep(2)  # Ray exports metrics on an interval; replicas report their models on one too
                samples = multinode.scrape()
                ingress = _served_by_replica(samples, "ray_collage_http_requests_total", "Ingress")
                style = _served_by_replica(samples, "ray_serve_deployment_request_counter_total", deployment_class_name("style"))
                if len(ingress) >= INGRESS_REPLICAS and len(style) >= STYLE_REPLICAS:
                    break
        finally:
            for client in clients:
                client.close()
    assert len(ingress) == INGRESS_REPLICAS and all(n >= 1 for n in ingress.values()), ingress
    assert len(style) == STYLE_REPLICAS and all(n >= 1 for n in style.values()), style
    style_replicas = {r["replica"] for r in multinode.replicas(deployment_class_name("style"))}
    assert set(style) == style_replicas, f"counted {sorted(style)}, running {sorted(style_replicas)}"


# ---- a worker node removed mid-traffic -------------------------------------------------------------
class Traffic:
    """Edits of every family from three threads, each at most ten a second, until stopped (at most 2400 requests
    or 300 s); each answer's status, Retry-After and content type."""

    def __init__(self, multinode: MultiNode, edits: dict[str, Any], threads: int = 3) -> None:
        self.multinode, self.edits = multinode, edits
        self.answers: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(threads)]
        self.count = 0

    def _run(self, k: int) -> None:
        deadline = time.monotonic() + 300
        families = list(self.edits)
        with self.multinode.client(timeout=90) as client:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                with self.lock:
                    if self.count >= 2400:
                        return
                    n = self.count = self.count + 1
                family = families[n % len(families)]
                try:
                    response = client.post("/v1/edits", json=self.edits[family](20_000 + n))
                    answer = {
                        "family": family,
                        "status": response.status_code,
                        "retry_after": response.headers.get("retry-after"),
                        "content_type": response.headers.get("content-type", ""),
                        "detail": response.text[:300] if response.status_code != 200 else "",
                        "at": time.monotonic(),
                    }
                except httpx.HTTPError as exc:  # a connection the service dropped: a failure of its own kind
                    answer = {"family": family, "status": None, "detail": repr(exc), "at": time.monotonic()}
                with self.lock:
                    self.answers.append(answer)
                # paced: bounded load on the two shared cores; longer after a refusal, as a client honouring backoff
                time.sleep(0.1 if answer["status"] == 200 else 0.3)

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(120)


def _wait(what: str, condition, timeout_s: float, interval_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def test_a_worker_node_removed_mid_traffic_its_replicas_come_back_and_a_job_completes_with_every_item_once(multinode):
    """Remove (kill) the worker node with most family replicas while edits of every family and a job run: Serve
    starts its replicas on the other worker node; meanwhile clients get 200, or 503 / 429 problems with Retry-After,
    never a 500; the job ends succeeded with every item recorded exactly once."""
    driver = multinode.driver
    with multinode.client() as client:
        edits = family_edits(client)
        total = 120
        items = [edits[family](30_000 + i) for i, family in zip(range(total), list(edits) * total)]
        job = client.post("/v1/jobs", json={"items": items})
        assert job.status_code == 202, job.text
        job_id = job.json()["job_id"]
        placed = Counter(r["node_id"] for r in multinode.replicas() if r["node_id"] != driver.head)
        victim, survivor = placed.most_common()[0][0], next(w for w in driver.workers if w != placed.most_common()[0][0])
        moved = sorted(r["deployment"] for r in multinode.replicas() if r["node_id"] == victim)
        with Traffic(multinode, edits) as traffic:
            _wait("traffic answered", lambda: sum(a["status"] == 200 for a in traffic.answers) >= 6, 120, 0.2)
            at_removal = _wait(
                "the job running", lambda: (s := client.get(f"/v1/jobs/{job_id}").json())["counts"]["succeeded"] and s, 120, 0.2
            )
            removed_at = time.monotonic()
            driver.remove_worker(victim)

            def recovered() -> bool:
                replicas = [r for r in multinode.replicas() if r["node_id"] != driver.head]
                counts = Counter(r["deployment"] for r in replicas)
                expected = {deployment_class_name(f): (STYLE_REPLICAS if f == "style" else 1) for f in family_names()}
                return dict(counts) == expected and {r["node_id"] for r in replicas} == {survivor}

            _wait("the removed node's replicas running on the other worker node", recovered, 240)
            recovered_at = time.monotonic()
            # after the gap every family serves again
            _wait(
                "every family answering 200 again",
                lambda: {a["family"] for a in traffic.answers if a["status"] == 200 and a["at"] > recovered_at} == set(edits),
                120,
            )
        answers = traffic.answers
        status = _wait("the job finished", lambda: (s := client.get(f"/v1/jobs/{job_id}").json())["state"] in TERMINAL and s, 240)
        results = all_results(client, job_id)

    statuses = Counter(a["status"] for a in answers)
    assert set(statuses) <= {200, 429, 503}, {k: [a for a in answers if a["status"] == k][:3] for k in statuses if k not in (200, 429, 503)}
    for answer in answers:
        if answer["status"] != 200:
            assert answer["retry_after"] and int(answer["retry_after"]) >= 1, answer
            assert answer["content_type"].startswith("application/problem+json"), answer
    assert statuses[200] >= len(edits), statuses
    assert moved, "the removed node ran family replicas"
    print(f"removed {moved}; gap {recovered_at - removed_at:.1f} s; answers {dict(statuses)}")

    assert at_removal["state"] == "running" and at_removal["counts"]["pending"] > 0, f"the job must run through the gap: {at_removal}"
    assert status["state"] == "succeeded", status
    assert status["counts"] == {"total": total, "succeeded": total, "failed": 0, "cancelled": 0, "pending": 0}, status
    assert [item["index"] for item in results] == list(range(total)), "every item once, in order"
    assert all(item["state"] == "succeeded" for item in results)
    get_settings.cache_clear()  # this module's environment: the cluster's prefix
    records = _item_records(job_id)
    indices = sorted(int(key.rsplit("/", 1)[-1].split(".")[0]) for key in records)
    assert indices == list(range(total)), "every item recorded exactly once"
