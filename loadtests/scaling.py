"""Edits/s and latency vs the number of family replicas, each on a worker node of its own, on this machine.

    python -m loadtests.scaling [--op style.sample] [--replicas 1,2,4] [--concurrency 16]
                                [--requests 96] [--out docs/perf/scaling] [--quick]

A local multi-node Ray cluster (service/runtime.py: ``LocalCluster``): a head node with the ingress and the job
runner (they reserve ``ingress_resources`` / ``jobs_resources``, which only the head offers), and one worker node per
replica of the largest count, each offering one unit of the custom resource every family replica reserves
(``family_resources``), so no two replicas share a node: the chart's placement on worker groups. Only the op's
family is deployed. For each replica count the app is redeployed with that many replicas of the family
(``family_overrides``), and once they all run, ``--requests`` distinct edits are sent at each concurrency by
:func:`loadtests.bench.served` (after a warm-up). Nodes here are processes on one machine: every replica shares its
cores, so the curve shows what the serving path does with more replicas, not what more machines would give.
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


def cluster_env(family: str, replicas: int) -> dict[str, str]:
    """The settings of a run with ``replicas`` replicas of ``family``, placed as described above."""
    return {
        "COLLAGE_AUTOSCALING_ENABLED": "false",
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
        "| family replicas | worker nodes used | "
        + " | ".join(f"edits/s c={c} | p50 ms c={c} | p99 ms c={c}" for c in levels)
        + f" | mean batch c={levels[-1]} |",
        "|---:|---:|" + "---:|---:|---:|" * len(levels) + "---:|",
    ]
    for count, run in results["runs"].items():
        cells = [
            f"{run['served'][str(c)]['images_per_s']:.1f} | {run['served'][str(c)]['p50_ms']:.0f} | {run['served'][str(c)]['p99_ms']:.0f}"
            for c in levels
        ]
        lines.append(f"| {count} | {run['nodes']} | " + " | ".join(cells) + f" | {run['served'][str(levels[-1])]['mean_batch']:.1f} |")
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [int(c) for c in results["runs"]]
    fig, (rate, latency) = plt.subplots(1, 2, figsize=(8, 3.4))
    for k, level in enumerate(results["concurrency"]):
        figures = [results["runs"][str(c)]["served"][str(level)] for c in counts]
        rate.plot(counts, [f["images_per_s"] for f in figures], "o-", color=f"C{k}", label=f"c={level}")
        latency.plot(counts, [f["p50_ms"] for f in figures], "o-", color=f"C{k}", label=f"p50 c={level}")
    if counts:
        first = results["runs"][str(counts[0])]["served"][str(results["concurrency"][-1])]["images_per_s"]
        rate.plot(counts, [first * c / counts[0] for c in counts], ":", color="grey", label="linear")
    for ax, label in ((rate, "edits / s"), (latency, "p50 ms")):
        ax.set_xlabel("family replicas (one per worker node)")
        ax.set_ylabel(label)
        ax.set_xticks(counts)
        ax.legend(fontsize=7)
        ax.set_ylim(bottom=0)
    fig.suptitle(f"{results['op']} vs family replicas — {results['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--op", default="style.sample", help="a family.op of loadtests.bench (BENCH_OPS)")
    parser.add_argument("--replicas", default="1,2,4", help="family replica counts, one worker node each")
    parser.add_argument("--concurrency", default="16", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=96, help="edits per point")
    parser.add_argument("--worker-cpus", type=float, default=1, help="Ray CPUs of each worker node (scheduling only)")
    parser.add_argument("--quick", action="store_true", help="replicas 1,2 and 16 edits per point (a smoke run)")
    parser.add_argument("--out", default="scaling-out")
    args = parser.parse_args(argv)
    if args.quick:
        args.replicas, args.requests = "1,2", 16

    by_name = {b.name: b for b in BENCH_OPS}
    if args.op not in by_name:
        parser.error(f"unknown op {args.op}; known: {sorted(by_name)}")
    bench = by_name[args.op]
    counts = [int(c) for c in args.replicas.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[str, Any] = {
        "device": f"CPU {platform.machine()} ({os.cpu_count()} cores)",
        "op": bench.name,
        "requests": args.requests,
        "concurrency": levels,
        "runs": {},
        "command": "python -m loadtests.scaling " + " ".join(argv if argv is not None else sys.argv[1:]),
    }

    from service.app import load_family
    from service.config import get_settings
    from service.runtime import LocalCluster

    deployment = load_family(bench.family).name
    os.environ.update(cluster_env(bench.family, counts[0]))
    head = {"num_cpus": 2, "resources": HEAD_RESOURCES}
    workers = [{"num_cpus": args.worker_cpus, "resources": {FAMILY_RESOURCE: 1}} for _ in range(max(counts))]
    print(f"starting a cluster: head + {len(workers)} worker nodes …", flush=True)
    service = LocalCluster(head, workers, families=bench.family)
    try:
        service.start()
        assets = upload_assets(service.url)
        base = random.Random(time.time_ns()).randrange(10**8)
        for count in counts:
            os.environ.update(cluster_env(bench.family, count))
            get_settings.cache_clear()
            service.deploy(get_settings(), proxy_location="HeadOnly")  # the same app with `count` replicas
            placed = wait_for_replicas(service, deployment, count)
            print(f"{count} replicas on {len({r['node_id'] for r in placed})} nodes …", flush=True)
            run = {
                "nodes": len({r["node_id"] for r in placed}),
                "served": measure_levels(service.url, bench, assets, levels, args.requests, base),
            }
            base += 10_000
            results["runs"][str(count)] = run
            print("  " + ", ".join(f"c={c}: {f['images_per_s']:.1f} edits/s" for c, f in run["served"].items()), flush=True)
    finally:
        service.stop()
    write_report(args.out, "scaling", results, markdown(results), chart)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
