"""Locust scenarios for Collage: synchronous edits of every family op, and batch jobs.

    locust -f loadtests/locustfile.py --headless -u 8 -r 8 -t 30s --host http://127.0.0.1:8000 --csv out/c8

``python -m loadtests.load`` runs it at several concurrencies and draws the charts. Settings
(environment variables, so they reach every Locust process):

- ``COLLAGE_LOAD_OPS``: ``mixed`` (default: every op of ``loadtests.bench.BENCH_OPS``, equal
  weights) or comma-separated ``family.op`` names; ``jobs`` adds the job scenario, ``jobs`` alone
  runs only it.
- ``COLLAGE_LOAD_JOB_ITEMS``: edits per job (default 20).
- ``COLLAGE_LOAD_MAX_REQUESTS``: stop after this many requests in total (0 = only --run-time).
- ``COLLAGE_LOAD_SUMMARY``: a path; at exit the final figures per request name go there as JSON.
  (Locust's own CSV is rewritten once a second and not at exit, so a run shorter than that second
  can leave it without a row for requests that did finish.)

Every edit is distinct (a fresh seed), so the result cache never answers. Requests are named by op
(``edit collage.sample``), so Locust's statistics come per op; a job is one entry (``job N items``)
whose response time is submit → finished.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time

from locust import HttpUser, constant, events, task

from loadtests.bench import BENCH_OPS, bench_assets
from service.auth import client_headers

_SELECTED = os.environ.get("COLLAGE_LOAD_OPS", "mixed").split(",")
_JOBS = "jobs" in _SELECTED
_OPS = [b for b in BENCH_OPS if "mixed" in _SELECTED or b.name in _SELECTED]
_JOB_ITEMS = int(os.environ.get("COLLAGE_LOAD_JOB_ITEMS", "20"))
_MAX_REQUESTS = int(os.environ.get("COLLAGE_LOAD_MAX_REQUESTS", "0"))
_numbers = itertools.count(random.Random(time.time_ns()).randrange(10**8))
_assets: dict[str, str] = {}
_sent = 0


@events.test_start.add_listener
def _upload_assets(environment, **_):
    """The images the ops read, uploaded once per Locust process (content-addressed: re-uploads are no-ops)."""
    import httpx

    with httpx.Client(base_url=environment.host, timeout=60, headers=client_headers()) as client:
        for name, data in bench_assets(64).items():
            response = client.post("/v1/assets", files={"file": (f"{name}.png", data, "image/png")})
            response.raise_for_status()
            _assets[name] = response.json()["asset_id"]


@events.request.add_listener
def _bound_requests(**_):
    global _sent
    _sent += 1
    if _MAX_REQUESTS and _sent >= _MAX_REQUESTS and _runner is not None:
        _runner.quit()


_runner = None


@events.init.add_listener
def _keep_runner(environment, **_):
    global _runner
    _runner = environment.runner


@events.quit.add_listener
def _write_summary(**_):
    """The run's final figures per request name (and 'Aggregated'), after every user has stopped."""
    path = os.environ.get("COLLAGE_LOAD_SUMMARY")
    if not path or _runner is None:
        return
    stats = _runner.stats
    rows = {}
    for name, entry in [*((e.name, e) for e in stats.entries.values()), ("Aggregated", stats.total)]:
        finished = entry.num_requests > 0
        rows[name] = {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "per_s": entry.total_rps,
            **{
                key: entry.get_response_time_percentile(q) if finished else None
                for key, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99))
            },
        }
    with open(path, "w") as handle:
        json.dump(rows, handle)


def _edit_task(bench):
    def run(user: HttpUser) -> None:
        body = bench.body(next(_numbers), _assets)
        with user.client.post("/v1/edits", json=body, name=f"edit {bench.name}", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif response.json().get("cached"):
                response.failure("served from the cache: the scenario must send distinct edits")

    run.__name__ = f"edit_{bench.family}_{bench.op}"
    return run


class AuthorizedUser(HttpUser):
    """Sends the COLLAGE_CLIENT_TOKEN API key with every request."""

    abstract = True

    def on_start(self) -> None:
        self.client.headers.update(client_headers())


class EditUser(AuthorizedUser):
    """A closed-loop client of POST /v1/edits: the next edit as soon as the last one answered."""

    wait_time = constant(0)
    tasks = [_edit_task(b) for b in _OPS]
    abstract = not tasks


class JobUser(AuthorizedUser):
    """Submits a job of COLLAGE_LOAD_JOB_ITEMS edits (the scenario's ops, round robin) and waits for it."""

    wait_time = constant(0)
    abstract = not _JOBS

    @task
    def job(self) -> None:
        ops = _OPS or BENCH_OPS
        items = [ops[k % len(ops)].body(next(_numbers), _assets) for k in range(_JOB_ITEMS)]
        name = f"job {_JOB_ITEMS} items"
        started = time.perf_counter()
        response = self.client.post("/v1/jobs", json={"items": items}, name="submit job")
        if response.status_code != 202:
            return
        job_id = response.json()["job_id"]
        state = "queued"
        while state not in ("succeeded", "completed_with_errors", "failed", "cancelled"):
            time.sleep(0.25)
            status = self.client.get(f"/v1/jobs/{job_id}", name="job status").json()
            state = status["state"]
        elapsed_ms = 1e3 * (time.perf_counter() - started)
        failed = None if state == "succeeded" else RuntimeError(f"job ended {state}: {status['counts']}")
        self.environment.events.request.fire(
            request_type="JOB", name=name, response_time=elapsed_ms, response_length=0, exception=failed, context={}
        )
