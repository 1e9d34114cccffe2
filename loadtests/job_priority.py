"""Do synchronous edits keep priority while a batch job runs? Sync latency alone vs beside a job.

    python -m loadtests.job_priority [--url URL] [--model collage-faces] [--clients 2] [--seconds 20] [--baseline]

Without --url it starts the service locally (embedded S3, Ray, Serve; only the model's family) and
stops it afterwards. Three phases, every edit with a fresh seed so nothing is served from the cache:

1. sync only: ``--clients`` closed-loop clients POST /v1/edits for ``--seconds``;
2. sync + job: the same clients while a job of ``--job-items`` edits runs;
3. job only: the rest of that job (or a second one) without sync traffic.

Prints sync p50/p95/p99 latency and throughput for phases 1 and 2, job items/s for 2 and 3, and
writes ``docs/job-priority.json`` and a chart ``docs/img/job-priority.png``. ``--baseline`` repeats
the run on a service with both priority mechanisms off (runner always at ``jobs_max_in_flight``,
family replicas never holding job items back), which is what the priority is worth.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import threading
import time
from pathlib import Path

import httpx

from loadtests.bench import percentile
from service.auth import client_headers

TERMINAL = ("succeeded", "completed_with_errors", "failed", "cancelled")


def sync_load(url: str, body_for_seed, clients: int, seconds: float, seeds) -> dict:
    """Closed loop: each client sends the next edit when the previous one answered."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client_loop() -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=120, headers=client_headers()) as client:
            while time.monotonic() < stop_at:
                with lock:
                    seed = next(seeds)
                started = time.perf_counter()
                response = client.post("/v1/edits", json=body_for_seed(seed))
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status_code == 200 and not response.json()["cached"]:
                        latencies.append(elapsed)
                    else:
                        errors += 1

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    return {
        "requests": len(latencies),
        "errors": errors,
        "per_s": len(latencies) / wall,
        "p50_ms": 1e3 * percentile(latencies, 0.5),
        "p95_ms": 1e3 * percentile(latencies, 0.95),
        "p99_ms": 1e3 * percentile(latencies, 0.99),
        "mean_ms": 1e3 * statistics.fmean(latencies) if latencies else float("nan"),
    }


def done_items(client: httpx.Client, job_id: str) -> tuple[int, str]:
    status = client.get(f"/v1/jobs/{job_id}").json()
    return status["counts"]["total"] - status["counts"]["pending"], status["state"]


def measure(url: str, model: str, clients: int, seconds: float, job_items: int) -> dict:
    base = random.randrange(10**6, 10**9)
    seeds = iter(range(base, base + 10**6))

    def body_for_seed(seed: int) -> dict:
        return {"model": model, "op": "sample", "inputs": {"seed": seed, "class_id": seed % 4}}

    results: dict = {}
    with httpx.Client(base_url=url, timeout=120, headers=client_headers()) as client:
        for seed in range(base - 20, base - 10):  # warm-up: model loaded, batches formed once
            client.post("/v1/edits", json=body_for_seed(seed))
        print(f"phase 1: {clients} sync clients for {seconds:.0f} s, no job …", flush=True)
        results["sync_only"] = sync_load(url, body_for_seed, clients, seconds, seeds)

        job_seeds = range(base + 500_000, base + 500_000 + job_items)
        job_id = client.post("/v1/jobs", json={"items": [body_for_seed(s) for s in job_seeds]}).json()["job_id"]
        while done_items(client, job_id)[1] == "queued":
            time.sleep(0.1)
        print(f"phase 2: the same clients beside job {job_id} ({job_items} items) …", flush=True)
        done_before, started = done_items(client, job_id)[0], time.monotonic()
        results["sync_with_job"] = sync_load(url, body_for_seed, clients, seconds, seeds)
        done_after, state = done_items(client, job_id)
        results["job_items_per_s_with_sync"] = (done_after - done_before) / (time.monotonic() - started)
        if state in TERMINAL:
            raise SystemExit(f"the job finished during phase 2: raise --job-items above {job_items}")

        print("phase 3: the job alone …", flush=True)
        done_before, started = done_after, time.monotonic()
        time.sleep(min(seconds, 10))
        done_after, state = done_items(client, job_id)
        results["job_items_per_s_alone"] = (done_after - done_before) / (time.monotonic() - started)
        if state not in TERMINAL:
            client.delete(f"/v1/jobs/{job_id}")
    return results


def chart(runs: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    labels = ["p50", "p95", "p99"]
    bars = [("sync only", runs["priority"]["sync_only"])]
    bars += [(f"sync beside a job ({name})", run["sync_with_job"]) for name, run in runs.items()]
    width = 0.8 / len(bars)
    for offset, (name, result) in enumerate(bars):
        left.bar([i + width * offset for i in range(3)], [result[f"{label}_ms"] for label in labels], width=width * 0.95, label=name)
    left.set_xticks([i + width * (len(bars) - 1) / 2 for i in range(3)], labels)
    left.set_ylabel("sync edit latency (ms)")
    left.legend(fontsize=7)
    names, values, colours = [], [], []
    for name, run in runs.items():
        names += [f"sync\n({name})", f"job beside sync\n({name})", f"job alone\n({name})"]
        values += [run["sync_with_job"]["per_s"], run["job_items_per_s_with_sync"], run["job_items_per_s_alone"]]
        colours += ["C1" if name == "priority" else "C2", "C7", "C7"]
    right.bar(range(len(values)), values, color=colours)
    right.axhline(runs["priority"]["sync_only"]["per_s"], color="C0", ls="--", lw=1, label="sync alone")
    right.set_xticks(range(len(values)), names, fontsize=6.5)
    right.set_ylabel("edits / s")
    right.legend(fontsize=7)
    first = runs["priority"]
    fig.suptitle(
        f"{first['model']} sample, {first['clients']} closed-loop sync clients + a background job "
        f"(priority: {first['jobs_max_in_flight']} job items in flight, {first['jobs_min_in_flight']} beside sync traffic)",
        fontsize=8.5,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# The service's own policy, and (--baseline) the same service with both priority mechanisms off.
POLICIES = {"priority": {}, "no priority": {"COLLAGE_JOBS_MIN_IN_FLIGHT": "1000000", "COLLAGE_JOBS_MAX_YIELD_S": "0"}}


def main(argv: list[str] | None = None) -> int:
    import os
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="running service; default: start one locally (per policy)")
    parser.add_argument("--model", default="collage-faces")
    parser.add_argument("--clients", type=int, default=2, help="closed-loop sync clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of phases 1 and 2")
    parser.add_argument("--job-items", type=int, default=3000, help="items of the background job (must outlast phase 2)")
    parser.add_argument("--baseline", action="store_true", help="also measure with job priority switched off (starts a second service)")
    parser.add_argument("--out", default="docs", help="folder for job-priority.json and img/job-priority.png")
    args = parser.parse_args(argv)

    from service.config import get_settings, patched_environ

    runs: dict[str, dict] = {}
    for policy, env in POLICIES.items():
        if policy != "priority" and (not args.baseline or args.url):
            continue
        service, url = None, args.url
        with patched_environ(env):
            try:
                if url is None:
                    from service.runtime import LocalService

                    print(f"[{policy}] starting a local service (collage family only) …", flush=True)
                    service = LocalService(families="collage").start()
                    url = service.url
                result = measure(url, args.model, args.clients, args.seconds, args.job_items)
                settings = get_settings()
                result.update(
                    jobs_max_in_flight=settings.jobs_max_in_flight,
                    jobs_min_in_flight=min(settings.jobs_min_in_flight, settings.jobs_max_in_flight),
                    jobs_max_yield_s=settings.jobs_max_yield_s,
                )
                runs[policy] = result
            finally:
                if service is not None:
                    service.stop()
    for result in runs.values():
        result.update(model=args.model, clients=args.clients, seconds=args.seconds, batch_max_size=get_settings().batch_max_size)

    print(f"\n{'':34}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'job items/s':>13}")
    rows = [("sync only", runs["priority"]["sync_only"], None)]
    rows += [(f"sync beside a job ({name})", run["sync_with_job"], run["job_items_per_s_with_sync"]) for name, run in runs.items()]
    for name, r, job_rate in rows:
        job = f"{job_rate:13.1f}" if job_rate is not None else ""
        print(f"{name:34}{r['per_s']:8.1f}{r['p50_ms']:9.1f}{r['p95_ms']:9.1f}{r['p99_ms']:9.1f}{job}")
    for name, run in runs.items():
        print(f"job alone ({name}): {run['job_items_per_s_alone']:.1f} items/s")
    out = Path(args.out)
    document = {
        "command": "python -m loadtests.job_priority " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "runs": runs,
    }
    (out / "job-priority.json").write_text(json.dumps(document, indent=2) + "\n")
    chart(runs, out / "img" / "job-priority.png")
    print(f"wrote {out / 'job-priority.json'} and {out / 'img' / 'job-priority.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
