"""Edits/s and latency vs the number of family replicas, each on a worker node of its own, on this machine.

    python -m loadtests.scaling [--op style.sample] [--replicas 1,2,4] [--concurrency 16]
                                [--requests 96] [--variants default,spread] [--out docs/perf/scaling] [--quick]

A local multi-node Ray cluster (service/runtime.py: ``LocalCluster``): a head node with the ingress and the job
runner (they reserve ``ingress_resources`` / ``jobs_resources``, which only the head offers), and one worker node per
replica of the largest count, each offering one unit of the custom resource every family replica reserves
(``family_resources``), so no two replicas share a node: the chart's placement on worker groups. Only the op's
family is deployed. For each replica count the app is redeployed with that many replicas of the family
(``family_overrides``), and once they all run, ``--requests`` distinct edits are sent at each concurrency by
:func:`loadtests.bench.served` (after a warm-up). Nodes here are processes on one machine: every replica shares its
cores, so the curve shows what the serving path does with more replicas, not what more machines would give.

Variants (a cluster of their own each): ``default``, the settings as shipped. Every edit names its model, Serve's
multiplexed model id, and Serve's router keeps a model's requests on the replica that loaded it until that replica
is at ``max_ongoing_requests`` (64 by default, and a call from the ingress carries a coalesced group of edits): one
model's edits then stay on one replica however many there are. ``spread``: ``batch_max_size=1`` and
``family_max_ongoing_requests=2``, so a replica is full at two edits and the router spills the rest over the others.
Writes scaling.json, scaling.md and scaling.png to --out. ``--quick``: replicas 1,2, 16 requests (a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from loadtests.bench import BENCH_OPS, bench_assets, served, write_report
from service.auth import client_headers

HEAD_RESOURCES = {"collage_ingress": 1, "collage_jobs": 1}
FAMILY_RESOURCE = "collage_family"
VARIANTS = {"default": {}, "spread": {"COLLAGE_BATCH_MAX_SIZE": "1", "COLLAGE_FAMILY_MAX_ONGOING_REQUESTS": "2"}}


def cluster_env(family: str, replicas: int) -> dict[str, str]:
    """The settings of a run with ``replicas`` replicas of ``family``, placed as described above."""
    return {
        "COLLAGE_AUTOSCALING_ENABLED": "false",
        # throughput at a fixed concurrency: admission's 1 s bound on the expected wait would refuse edits to one replica
        "COLLAGE_MAX_QUEUE_WAIT_S": "60",
        "COLLAGE_FAMILY_OVERRIDES": json.dumps({family: {"replicas": replicas}}),
        "COLLAGE_FAMILY_RESOURCES": json.dumps({FAMILY_RESOURCE: 1}),
        "COLLAGE_INGRESS_RESOURCES": json.dumps({"collage_ingress": 1}),
        "COLLAGE_JOBS_RESOURCES": json.dumps({"collage_jobs": 1}),
    }


def wait_for_replicas(service: Any, deployment: str, count: int, timeout_s: float = 300) -> list[dict[str, Any]]:
    """The deployment's replicas once exactly ``count`` of them run and the app answers /readyz."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        placed = [r for r in service.replicas() if r["deployment"] == deployment]
        if len(placed) == count:
            service.wait_ready(max(1.0, deadline - time.monotonic()))
            return placed
        time.sleep(1)
    raise RuntimeError(f"{deployment}: not {count} replicas after {timeout_s:.0f} s")


def measure_levels(url: str, bench: Any, assets: dict[str, str], levels: list[int], requests: int, base: int) -> dict[str, dict]:
    """Per concurrency: a warm-up (batches formed at that level), then ``requests`` distinct edits."""
    figures = {}
    for level in levels:
        asyncio.run(served(url, bench, assets, level, [base + n for n in range(min(level, 8))]))
        base += 10
        figures[str(level)] = asyncio.run(served(url, bench, assets, level, [base + n for n in range(requests)]))
        base += requests
    return figures


def upload_assets(url: str, inpaint_size: int = 64) -> dict[str, str]:
    with httpx.Client(base_url=url, timeout=120, headers=client_headers()) as client:
        assets = {}
        for name, data in bench_assets(inpaint_size).items():
            response = client.post("/v1/assets", files={"file": (f"{name}.png", data, "image/png")})
            response.raise_for_status()
            assets[name] = response.json()["asset_id"]
    return assets


def markdown(results: dict[str, Any]) -> str:
    levels = results["concurrency"]
    lines = [
        f"device: {results['device']} · op `{results['op']}` · {results['requests']} edits per point · `{results['command']}`",
        "",
        "| variant | family replicas | worker nodes used | replicas that served | "
        + " | ".join(f"edits/s c={c} | p50 ms c={c} | p99 ms c={c}" for c in levels)
        + f" | mean batch c={levels[-1]} |",
        "|---|---:|---:|---:|" + "---:|---:|---:|" * len(levels) + "---:|",
    ]
    for variant, runs in results["variants"].items():
        for count, run in runs.items():
            cells = [
                f"{run['served'][str(c)]['images_per_s']:.1f} | {run['served'][str(c)]['p50_ms']:.0f} | {run['served'][str(c)]['p99_ms']:.0f}"
                for c in levels
            ]
            lines.append(
                f"| {variant} | {count} | {run['nodes']} | {run.get('serving', '?')} | "
                + " | ".join(cells)
                + f" | {run['served'][str(levels[-1])]['mean_batch']:.1f} |"
            )
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate, latency) = plt.subplots(1, 2, figsize=(8.5, 3.4))
    level = results["concurrency"][-1]
    for k, (variant, runs) in enumerate(results["variants"].items()):
        counts = [int(c) for c in runs]
        figures = [runs[str(c)]["served"][str(level)] for c in counts]
        rate.plot(counts, [f["images_per_s"] for f in figures], "o-", color=f"C{k}", label=f"{variant} c={level}")
        latency.plot(counts, [f["p50_ms"] for f in figures], "o-", color=f"C{k}", label=f"{variant} c={level}")
        if counts:
            rate.plot(counts, [figures[0]["images_per_s"] * c / counts[0] for c in counts], ":", color=f"C{k}", alpha=0.5)
    for ax, label in ((rate, "edits / s (dotted: linear)"), (latency, "p50 ms")):
        ax.set_xlabel("family replicas (one per worker node)")
        ax.set_ylabel(label)
        ax.set_xticks(sorted({int(c) for runs in results["variants"].values() for c in runs}))
        ax.legend(fontsize=7)
        ax.set_ylim(bottom=0)
    fig.suptitle(f"{results['op']} vs family replicas — {results['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def served_by_replica(service: Any, deployment: str) -> dict[str, float]:
    """Calls each replica of ``deployment`` took so far, from Serve's request counter on every node's metrics port."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, float] = {}
    for port in service.metrics_ports:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        except httpx.HTTPError:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "ray_serve_deployment_request_counter_total" and sample.labels.get("deployment") == deployment:
                    counts[sample.labels["replica"]] = counts.get(sample.labels["replica"], 0) + sample.value
    return counts


def settled_counts(service: Any, deployment: str, export_s: float = 12.0, timeout_s: float = 60.0) -> dict[str, float]:
    """``served_by_replica`` once every replica's counter has been exported after the load: Ray's metrics
    agents export on an interval (up to about 10 s), so a reading taken sooner can miss a replica
    that served (a short, fast run then counted 0 of 4). Waits at least ``export_s``, then until two
    readings 2 s apart agree."""
    started, previous = time.monotonic(), None
    while True:
        time.sleep(2)
        reading = served_by_replica(service, deployment)
        elapsed = time.monotonic() - started
        if (elapsed >= export_s and reading == previous) or elapsed >= timeout_s:
            return reading
        previous = reading


def measure_variant(bench: Any, variant: str, counts: list[int], levels: list[int], requests: int, worker_cpus: float) -> dict[str, Any]:
    """A cluster with a worker node per replica of the largest count; the app redeployed with each count."""
    from service.app import load_family
    from service.config import get_settings
    from service.runtime import LocalCluster
    from service.s3server import _free_ports

    deployment = load_family(bench.family).name
    os.environ.update({**cluster_env(bench.family, counts[0]), **VARIANTS[variant]})
    ports = _free_ports("127.0.0.1", max(counts), set())
    workers = [{"num_cpus": worker_cpus, "resources": {FAMILY_RESOURCE: 1}, "metrics_export_port": port} for port in ports]
    print(f"{variant}: starting a cluster, head + {len(workers)} worker nodes …", flush=True)
    service = LocalCluster({"num_cpus": 2, "resources": HEAD_RESOURCES}, workers, families=bench.family)
    service.metrics_ports = ports
    runs: dict[str, Any] = {}
    try:
        service.start()
        assets = upload_assets(service.url)
        base = random.Random(time.time_ns()).randrange(10**8)
        for count in counts:
            os.environ.update(cluster_env(bench.family, count))
            get_settings.cache_clear()
            service.deploy(get_settings())  # the same app with `count` replicas
            placed = wait_for_replicas(service, deployment, count)
            before = settled_counts(service, deployment)  # a replica kept from the last count may not have exported yet
            served_figures = measure_levels(service.url, bench, assets, levels, requests, base)
            after = settled_counts(service, deployment)
            serving = sum(1 for r in placed if after.get(r["replica"], 0) - before.get(r["replica"], 0) > 0)
            runs[str(count)] = {"nodes": len({r["node_id"] for r in placed}), "serving": serving, "served": served_figures}
            base += 10_000
            print(
                f"  {count} replicas ({serving} served): "
                + ", ".join(f"c={c} {f['images_per_s']:.1f} edits/s" for c, f in served_figures.items()),
                flush=True,
            )
    finally:
        service.stop()
        for name in VARIANTS[variant]:
            os.environ.pop(name, None)
        get_settings.cache_clear()
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--op", default="style.sample", help="a family.op of loadtests.bench (BENCH_OPS)")
    parser.add_argument("--replicas", default="1,2,4", help="family replica counts, one worker node each")
    parser.add_argument("--concurrency", default="16", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=96, help="edits per point")
    parser.add_argument("--worker-cpus", type=float, default=1, help="Ray CPUs of each worker node (scheduling only)")
    parser.add_argument("--variants", default="default,spread", help=f"comma-separated, of {sorted(VARIANTS)}")
    parser.add_argument("--quick", action="store_true", help="replicas 1,2 and 16 edits per point (a smoke run)")
    parser.add_argument("--out", default="scaling-out")
    args = parser.parse_args(argv)
    if args.quick:
        args.replicas, args.requests = "1,2", 16

    by_name = {b.name: b for b in BENCH_OPS}
    if args.op not in by_name:
        parser.error(f"unknown op {args.op}; known: {sorted(by_name)}")
    bench = by_name[args.op]
    if set(args.variants.split(",")) - set(VARIANTS):
        parser.error(f"unknown variants; known: {sorted(VARIANTS)}")
    counts = [int(c) for c in args.replicas.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[str, Any] = {
        "device": f"CPU {platform.machine()} ({os.cpu_count()} cores)",
        "op": bench.name,
        "requests": args.requests,
        "concurrency": levels,
        "variants": {},
        "command": "python -m loadtests.scaling " + " ".join(argv if argv is not None else sys.argv[1:]),
    }

    for variant in args.variants.split(","):
        results["variants"][variant] = measure_variant(bench, variant, counts, levels, args.requests, args.worker_cpus)
    write_report(args.out, "scaling", results, markdown(results), chart)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
