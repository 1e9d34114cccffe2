"""What compiling the generators costs and buys in the served path: start time, first edits, steady state.

    python -m loadtests.warmup [--ops style.sample,collage.sample] [--requests 64] [--out docs/perf/warmup]

For each configuration it starts a local service (the ops' families only), then per op:

1. the first edits: bursts of 1, 2, 3, 5 and 8 concurrent distinct edits, one burst after the other
   (group sizes a fresh replica meets first); the slowest edit of each burst;
2. steady state: ``--requests`` edits at concurrency 1 (p50) and 8 (images/s, p50/p99).

Configurations: ``eager`` (no compile), ``compile without warm-up`` (``COLLAGE_ACCEL_COMPILE=true``,
``COLLAGE_ACCEL_WARMUP_MODELS=``: each new group size compiles inside some edit's latency) and
``compile + warm-up`` (the default warm-up: every batch bucket compiled while the replica starts,
before it takes traffic). Each configuration gets an empty inductor cache (``TORCHINDUCTOR_CACHE_DIR``),
so compile times are those of a fresh pod, not of graphs an earlier run left on disk. Writes
warmup.json, warmup.md and warmup.png to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from loadtests.bench import BENCH_OPS, bench_assets, served, write_report
from service.auth import client_headers

CONFIGURATIONS = {
    "eager": {"COLLAGE_ACCEL_COMPILE": "false"},
    "compile without warm-up": {"COLLAGE_ACCEL_COMPILE": "true", "COLLAGE_ACCEL_WARMUP_MODELS": ""},
    "compile + warm-up": {"COLLAGE_ACCEL_COMPILE": "true", "COLLAGE_ACCEL_WARMUP_MODELS": "*"},
}
BURSTS = (1, 2, 3, 5, 8)


def measure_op(url: str, bench, assets: dict[str, str], requests: int, base: int) -> dict[str, Any]:
    first = []
    for size in BURSTS:
        burst = asyncio.run(served(url, bench, assets, size, [base + n for n in range(size)]))
        first.append({"edits": size, "slowest_ms": burst["max_ms"]})
        base += size
    steady_1 = asyncio.run(served(url, bench, assets, 1, [base + n for n in range(requests // 2)]))
    base += requests
    steady_8 = asyncio.run(served(url, bench, assets, 8, [base + n for n in range(requests)]))
    return {
        "first_bursts": first,
        "first_edits_total_ms": sum(b["slowest_ms"] for b in first),
        "c1_p50_ms": steady_1["p50_ms"],
        "c8_images_per_s": steady_8["images_per_s"],
        "c8_p50_ms": steady_8["p50_ms"],
        "c8_p99_ms": steady_8["p99_ms"],
        "c8_mean_batch": steady_8["mean_batch"],
    }


def markdown(results: dict) -> str:
    lines = [
        f"device: {results['device']} · `{results['command']}`",
        "",
        "| configuration | op | service start s | warm-up s (replica) | slowest edit per first burst of 1/2/3/5/8, ms "
        "| p50 ms c=1 | img/s c=8 | p50 / p99 ms c=8 |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, run in results["runs"].items():
        for op, r in run["ops"].items():
            bursts = " / ".join(f"{b['slowest_ms']:.0f}" for b in r["first_bursts"])
            lines.append(
                f"| {name} | `{op}` | {run['start_s']:.1f} | {run['warmup_s'].get(op.split('.')[0], 0.0):.1f} | {bursts} "
                f"| {r['c1_p50_ms']:.0f} | {r['c8_images_per_s']:.1f} | {r['c8_p50_ms']:.0f} / {r['c8_p99_ms']:.0f} |"
            )
    return "\n".join(lines)


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    ops = list(next(iter(runs.values()))["ops"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(runs)
    for k, (name, run) in enumerate(runs.items()):
        xs = [i + k * width for i in range(len(ops))]
        axes[0].bar(xs, [run["ops"][op]["first_edits_total_ms"] / 1e3 for op in ops], width * 0.95, label=name, color=f"C{k}")
        axes[1].bar(xs, [run["ops"][op]["c8_images_per_s"] for op in ops], width * 0.95, label=name, color=f"C{k}")
    for ax, title in zip(axes, ("first 19 edits: sum of the slowest per burst (s)", "steady state at concurrency 8 (images/s)")):
        ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(ops))], ops, fontsize=8)
        ax.set_title(title, fontsize=9)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"torch.compile in the served path — {results['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default="style.sample,collage.sample", help="comma-separated family.op names (bench.BENCH_OPS)")
    parser.add_argument("--requests", type=int, default=64, help="edits at concurrency 8 (half as many at concurrency 1)")
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS), help="subset of: " + ", ".join(CONFIGURATIONS))
    parser.add_argument("--out", default="warmup-out")
    args = parser.parse_args(argv)

    import torch

    from service.config import patched_environ
    from service.runtime import LocalService

    wanted = [b for b in BENCH_OPS if b.name in args.ops.split(",")]
    configurations = [c.strip() for c in args.configurations.split(",")]
    if len(wanted) != len(args.ops.split(",")) or set(configurations) - set(CONFIGURATIONS):
        parser.error(f"known ops: {[b.name for b in BENCH_OPS]}; known configurations: {list(CONFIGURATIONS)}")
    families = ",".join(sorted({b.family for b in wanted}))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU {platform.machine()} ({os.cpu_count()} cores)"
    results: dict[str, Any] = {
        "device": device,
        "runs": {},
        "command": "python -m loadtests.warmup " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    asset_bytes = bench_assets(64)
    base = random.Random(time.time_ns()).randrange(10**8)
    for name in configurations:
        fresh_cache = {"TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(prefix="collage-inductor-")}
        with patched_environ({**CONFIGURATIONS[name], **fresh_cache}):
            print(f"[{name}] starting a local service ({families}) …", flush=True)
            started = time.perf_counter()
            service = LocalService(families=families).start()
            run: dict[str, Any] = {"start_s": time.perf_counter() - started, "ops": {}}
            try:
                from loadtests.bench import replica_memory

                memory = replica_memory()
                run["warmup_s"] = {family: sum(m.get("warmup_s", {}).values()) for family, m in memory.items()}
                with httpx.Client(base_url=service.url, timeout=120, headers=client_headers()) as client:
                    assets = {
                        n: client.post("/v1/assets", files={"file": (f"{n}.png", d, "image/png")}).json()["asset_id"]
                        for n, d in asset_bytes.items()
                    }
                for bench in wanted:
                    run["ops"][bench.name] = measure_op(service.url, bench, assets, args.requests, base)
                    base += 10 * args.requests
                    r = run["ops"][bench.name]
                    print(
                        f"  {bench.name}: first bursts {[round(b['slowest_ms']) for b in r['first_bursts']]} ms, "
                        f"c=8 {r['c8_images_per_s']:.1f} img/s",
                        flush=True,
                    )
            finally:
                service.stop()
            results["runs"][name] = run
    write_report(args.out, "warmup", results, markdown(results), chart)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
