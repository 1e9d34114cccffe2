"""Per family op: raw generator throughput vs served throughput through HTTP, latency, memory.

    python -m loadtests.bench [--url URL] [--ops collage.sample,inpaint.inpaint] [--requests 64]
                              [--concurrency 1,8,32,64] [--out bench-out]

For every op in BENCH_OPS, one run prints:
  (a) raw, batch 1 in a loop — how the papers' code runs: the family's own ``run_group`` (the op's
      tensor work and uint8 conversion, no serving) on one edit at a time;
  (b) raw at the best batch size (1 … 32);
  (c) served throughput through ``POST /v1/edits`` at each concurrency (every request distinct,
      so nothing comes from the result cache);
  (d) served / raw-best ratio;
  (e) p50 / p99 latency, and the serving path's added latency at concurrency 1 (latency minus the
      edit's share of its group's compute time).
Plus the peak RSS of each family replica (and its GPU memory on CUDA). Raw runs load the same
checkpoint in this process, on the same device as the replicas (CUDA when there is one).

Without --url the service is started locally (embedded S3, Ray, Serve) and stopped afterwards; raw
runs happen while it is up and idle, because ops such as ``inpaint`` store assets. Writes
``bench.json``, ``bench.md`` and ``bench.png`` to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np

from service.auth import client_headers
from service.config import REPO_ROOT


@dataclasses.dataclass
class BenchOp:
    family: str
    op: str
    model: str
    params: Callable[[int], dict]  # request number -> params
    inputs: Callable[[int, dict[str, str]], dict]  # request number, asset ids by name -> inputs
    variant: str = ""  # tells apart two entries of one op (another model): the name gets "@variant"

    @property
    def name(self) -> str:
        return f"{self.family}.{self.op}" + (f"@{self.variant}" if self.variant else "")

    def body(self, i: int, assets: dict[str, str]) -> dict:
        return {
            "model": self.model,
            "op": self.op,
            "params": self.params(i),
            "inputs": self.inputs(i, assets),
            "output": {"presign": False},
        }


# Requests differ by seed (or, for inpaint, by a sigma step too small to change the work), so no
# two are the same edit. `project` and `catalog` are long optimisations/clusterings (jobs, really),
# where the serving path is noise; they are left out.
BENCH_OPS = [
    BenchOp("style", "sample", "style-demo-random", lambda i: {}, lambda i, a: {"seed": i}),
    BenchOp(
        "style",
        "local_transfer",
        "style-faces",
        lambda i: {"parts": ["eyes"]},
        lambda i, a: {"target": {"seed": i}, "reference": {"seed": i + 1}},
    ),
    BenchOp("collage", "sample", "collage-faces", lambda i: {}, lambda i, a: {"seed": i, "class_id": i % 4}),
    BenchOp(
        "collage",
        "label_collage",
        "collage-faces",
        lambda i: {},
        lambda i, a: {"base": {"seed": i, "class_id": 0}, "regions": [{"mask": a["eyes_mask"], "class_id": "owl"}]},
    ),
    BenchOp(
        "collage",
        "feature_collage",
        "collage-faces",
        lambda i: {},
        lambda i, a: {"base": {"seed": i, "class_id": 1}, "references": [{"seed": i + 1, "class_id": 2, "mask": a["eyes_mask"]}]},
    ),
    BenchOp(
        "inpaint",
        "inpaint",
        "edgeconnect-demo",
        lambda i: {"sigma": 2.0 + (i % 10**6) * 1e-6},
        lambda i, a: {"image": a["photo"], "mask": a["hole"]},
    ),
]


def bench_assets(inpaint_size: int) -> dict[str, bytes]:
    """PNG bytes of the images the ops read: the collage demo's eye mask, a photo crop and a hole."""
    from PIL import Image
    from skimage import data

    def png(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue()

    photo = np.asarray(Image.fromarray(data.astronaut()).resize((inpaint_size, inpaint_size), Image.BICUBIC))
    hole = np.zeros((inpaint_size, inpaint_size), np.uint8)
    hole[inpaint_size // 4 : inpaint_size // 2, inpaint_size // 3 : 2 * inpaint_size // 3] = 255
    eyes = (REPO_ROOT / "checkpoints" / "collage-faces" / "masks" / "eyes.png").read_bytes()
    return {"eyes_mask": eyes, "photo": png(photo), "hole": png(hole)}


def write_report(out: str | Path, stem: str, results: dict, table: str, draw: Callable[[dict, Path], None]) -> None:
    """Print the Markdown table; write ``<stem>.json`` (results), ``<stem>.md`` and the chart ``<stem>.png``."""
    print("\n" + table)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{stem}.md").write_text(table + "\n")
    draw(results, out / f"{stem}.png")
    print(f"wrote {out}/{stem}.json, {stem}.md, {stem}.png")


def percentile(values: list[float], q: float) -> float:
    """The q-quantile by rank (no interpolation); NaN for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# ---- raw: the family's run_group in this process ---------------------------------------------
class RawRunner:
    """One op's tasks built exactly as the ingress builds them (schemas, prepare, fit_images), run by
    an in-process instance of the family deployment class, without Ray or HTTP."""

    def __init__(self, bench: BenchOp, asset_bytes: dict[str, bytes], asset_ids: dict[str, str], acceleration=None) -> None:
        from service.app import load_family
        from service.config import get_settings
        from service.registry import ModelRegistry
        from service.storage import AssetStore

        self.bench, self.asset_ids = bench, asset_ids
        self.bytes_by_id = {asset_ids[name]: data for name, data in asset_bytes.items()}
        self.settings = get_settings()
        registry = ModelRegistry(AssetStore(self.settings))
        self.manifest = registry.get_manifest(bench.model)
        self.family = load_family(bench.family).func_or_class()
        if acceleration is not None:  # instead of the COLLAGE_ACCEL_* settings
            acceleration.check_device(self.family.device)
            self.family.acceleration = acceleration
        self.model = self.family.acceleration.prepare(self.family.load_model(self.manifest, registry.load_weights(bench.model)))

    def run(self, tasks: list) -> list:
        """The group's outputs, as a family replica computes them (configured autocast included)."""
        return self.family.run_group_accelerated(self.model, self.bench.op, tasks)

    def tasks(self, numbers: list[int]) -> list:
        from service.edits import build_task

        return [
            build_task(
                self.bench.model,
                self.manifest,
                self.bench.op,
                self.bench.params(i),
                self.bench.inputs(i, self.asset_ids),
                self.bytes_by_id.__getitem__,
                self.settings.limits(),
                seed=i,
            )
            for i in numbers
        ]

    def throughput(self, batch: int, seconds: float) -> float:
        import torch

        tasks = self.tasks(list(range(batch)))
        self.run(tasks)  # warm-up (and, with compile, the compilation for this batch size)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            self.run(tasks)
            done += batch
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return done / (time.perf_counter() - started)


# ---- served: POST /v1/edits -------------------------------------------------------------------
async def served(url: str, bench: BenchOp, assets: dict[str, str], concurrency: int, numbers: list[int]) -> dict[str, float]:
    pending = list(numbers)
    latencies, batch_sizes, added, cached = [], [], [], 0

    async with httpx.AsyncClient(
        base_url=url, timeout=300, headers=client_headers(), limits=httpx.Limits(max_connections=concurrency + 4)
    ) as client:

        async def worker() -> None:
            nonlocal cached
            while pending:
                body = bench.body(pending.pop(), assets)
                started = time.perf_counter()
                response = await client.post("/v1/edits", json=body)
                latency = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"{bench.name}: HTTP {response.status_code}: {response.text[:300]}")
                result = response.json()
                cached += result["cached"]
                timings = result["timings"]
                latencies.append(latency)
                batch_sizes.append(timings["batch_size"] or 0)
                added.append(1e3 * latency - (timings["compute_ms"] or 0.0) / max(1, timings["group_size"] or 1))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "images_per_s": len(numbers) / elapsed,
        "p50_ms": 1e3 * percentile(latencies, 0.5),
        "p99_ms": 1e3 * percentile(latencies, 0.99),
        "max_ms": 1e3 * max(latencies),
        "mean_batch": statistics.mean(batch_sizes),
        "added_ms_p50": sorted(added)[len(added) // 2],
        "cached": cached,
    }


def replica_memory() -> dict[str, dict]:
    """Peak memory of each family replica, asked through its deployment handle (this process runs the service)."""
    from ray import serve

    from service.app import load_family
    from service.families import family_names
    from service.runtime import APP_NAME

    report = {}
    for family in family_names():
        try:
            handle = serve.get_deployment_handle(load_family(family).name, app_name=APP_NAME)
            report[family] = handle.resources.remote().result(timeout_s=30)
        except Exception as exc:  # family not deployed
            report[family] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    return report


# ---- report -----------------------------------------------------------------------------------
def markdown(results: dict) -> str:
    levels = results["concurrency"]
    lines = [
        f"device: {results['device']} · {results['requests']} requests per level · `{results['command']}`",
        "",
        "| op | raw b=1 img/s | raw best img/s (batch) | "
        + " | ".join(f"served c={c} img/s" for c in levels)
        + " | served/raw best | p50 / p99 ms at c=1 | p50 / p99 ms at c="
        + str(levels[-1])
        + " | added ms p50 at c=1 | mean batch at c="
        + str(levels[-1])
        + " |",
        "|---|---:|---:|" + "---:|" * len(levels) + "---:|---:|---:|---:|---:|",
    ]
    for name, r in results["ops"].items():
        served_rates = [r["served"][str(c)]["images_per_s"] for c in levels]
        first, last = r["served"][str(levels[0])], r["served"][str(levels[-1])]
        lines.append(
            f"| `{name}` | {r['raw'][1]:.1f} | {r['raw_best']:.1f} ({r['raw_best_batch']}) | "
            + " | ".join(f"{v:.1f}" for v in served_rates)
            + f" | {max(served_rates) / r['raw_best']:.2f} | {first['p50_ms']:.0f} / {first['p99_ms']:.0f} | "
            f"{last['p50_ms']:.0f} / {last['p99_ms']:.0f} | {first['added_ms_p50']:.1f} | {last['mean_batch']:.1f} |"
        )
    if results.get("memory"):
        lines += ["", "| family replica | peak RSS MB | GPU peak allocated MB |", "|---|---:|---:|"]
        for family, m in results["memory"].items():
            if "peak_rss_mb" in m:
                lines.append(f"| {family} | {m['peak_rss_mb']:.0f} | {m.get('gpu_peak_allocated_mb', float('nan')):.0f} |")
    return "\n".join(lines)


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["ops"])
    series = [("raw b=1", lambda r: r["raw"][1]), ("raw best batch", lambda r: r["raw_best"])]
    series += [(f"served c={c}", lambda r, c=c: r["served"][str(c)]["images_per_s"]) for c in results["concurrency"]]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(names)), 3.8))
    for k, (label, value) in enumerate(series):
        ax.bar(
            [i + k * width for i in range(len(names))],
            [value(results["ops"][n]) for n in names],
            width * 0.95,
            label=label,
            color=("C0" if k == 0 else "C9" if k == 1 else f"C{k + 1}"),
        )
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(names))], names, fontsize=8)
    ax.set_ylabel("images / s")
    ax.set_yscale("log")
    ax.legend(fontsize=7, ncols=3)
    ax.set_title(f"raw vs served per op — {results['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    import sys

    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="running service (raw runs then need its S3 in the environment; no replica memory)")
    parser.add_argument("--ops", default=",".join(b.name for b in BENCH_OPS), help="comma-separated family.op names")
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--batches", default="1,2,4,8,16,32", help="raw batch sizes")
    parser.add_argument("--raw-seconds", type=float, default=2.0, help="time per raw batch size")
    parser.add_argument("--inpaint-size", type=int, default=64, help="side of the inpaint photo (64 on CPU, 256 on GPU)")
    parser.add_argument("--out", default="bench-out")
    args = parser.parse_args(argv)

    wanted = [b for b in BENCH_OPS if b.name in args.ops.split(",")]
    unknown = set(args.ops.split(",")) - {b.name for b in BENCH_OPS}
    if unknown or not wanted:
        parser.error(f"unknown ops {sorted(unknown)}; known: {[b.name for b in BENCH_OPS]}")
    levels = [int(c) for c in args.concurrency.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    device = (
        torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU {platform.machine()} ({__import__('os').cpu_count()} cores)"
    )
    results: dict[str, Any] = {
        "device": device,
        "requests": args.requests,
        "concurrency": levels,
        "ops": {},
        "command": "python -m loadtests.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    service, url = None, args.url
    if url is None:
        from service.runtime import LocalService

        print("starting a local service …", flush=True)
        service = LocalService().start()
        url = service.url
    try:
        asset_bytes = bench_assets(args.inpaint_size)
        with httpx.Client(base_url=url, timeout=120, headers=client_headers()) as client:
            assets = {}
            for name, data in asset_bytes.items():
                response = client.post("/v1/assets", files={"file": (f"{name}.png", data, "image/png")})
                response.raise_for_status()
                assets[name] = response.json()["asset_id"]
        base = random.Random(time.time_ns()).randrange(10**8)
        for bench in wanted:
            print(f"{bench.name}: served …", flush=True)
            entry: dict[str, Any] = {"model": bench.model, "served": {}}
            for level in levels:
                asyncio.run(served(url, bench, assets, level, [base + n for n in range(min(level, 8))]))  # warm-up, batches formed
                base += 10
                entry["served"][str(level)] = asyncio.run(served(url, bench, assets, level, [base + n for n in range(args.requests)]))
                base += args.requests
                print(f"  c={level}: {entry['served'][str(level)]['images_per_s']:.1f} img/s", flush=True)
            print(f"{bench.name}: raw …", flush=True)
            runner = RawRunner(bench, asset_bytes, assets)
            entry["raw"] = {b: runner.throughput(b, args.raw_seconds) for b in batches}
            entry["raw_best_batch"] = max(entry["raw"], key=entry["raw"].get)
            entry["raw_best"] = entry["raw"][entry["raw_best_batch"]]
            print(f"  raw b=1 {entry['raw'][1]:.1f}, best {entry['raw_best']:.1f} img/s (batch {entry['raw_best_batch']})", flush=True)
            results["ops"][bench.name] = entry
            del runner
        if service is not None:
            results["memory"] = replica_memory()
    finally:
        if service is not None:
            service.stop()
    results["torch_threads"] = torch.get_num_threads()
    write_report(args.out, "bench", results, markdown(results), chart)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
