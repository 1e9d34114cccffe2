"""Served vs raw throughput of StyleGAN2 ``sample``: does dynamic batching pay for the serving path?

    python -m loadtests.bench_batching [--url URL] [--model style-demo-random] [--requests 64]

Without --url it starts the service locally (embedded S3, Ray, Serve) and stops it afterwards.
Prints one table: raw generator at batch 1 in a loop and at the best batch size, then served
throughput through HTTP at concurrency 1/8/32, with the ratio served/raw-best and latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import time
from pathlib import Path

import httpx
import torch


def raw_throughput(model_dir: Path, batch_sizes: list[int], seconds: float) -> dict[int, float]:
    """Images/s of the bare generator (+ uint8 conversion) at each batch size, on this process's device."""
    from deployments.style import ops
    from deployments.style.checkpoint import load_generator

    manifest = json.loads((model_dir / "model.json").read_text())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator, latent_avg = load_generator((model_dir / "weights.safetensors").read_bytes(), manifest["arch"], device=device)
    style_dim = manifest["arch"]["style_dim"]
    results = {}
    for batch in batch_sizes:
        z = ops.latents_from_seeds(list(range(batch)), style_dim).to(device)
        ops.to_uint8_images(ops.sample(generator, z=z))  # warm-up
        images, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            ops.to_uint8_images(ops.sample(generator, z=z))
            images += batch
        if device == "cuda":
            torch.cuda.synchronize()
        results[batch] = images / (time.perf_counter() - started)
    return results


async def served_throughput(url: str, model: str, concurrency: int, n_requests: int) -> dict[str, float]:
    """Distinct random seeds (no cache hits) through POST /v1/edits with `concurrency` requests in flight."""
    seeds = random.Random(time.time_ns()).sample(range(2**31), n_requests)
    latencies: list[float] = []
    batch_sizes: list[int] = []
    serving_overhead: list[float] = []
    queue = asyncio.Queue()
    for seed in seeds:
        queue.put_nowait(seed)

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        async def worker() -> None:
            while not queue.empty():
                seed = queue.get_nowait()
                body = {"model": model, "op": "sample", "inputs": {"seed": seed}, "output": {"presign": False}}
                started = time.perf_counter()
                response = await client.post("/v1/edits", json=body)
                latency = time.perf_counter() - started
                response.raise_for_status()
                timings = response.json()["timings"]
                latencies.append(latency)
                batch_sizes.append(timings["batch_size"])
                serving_overhead.append(1e3 * latency - (timings["compute_ms"] or 0.0) / max(1, timings["group_size"] or 1))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "throughput": n_requests / elapsed,
        "p50_ms": 1e3 * latencies[len(latencies) // 2],
        "p99_ms": 1e3 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "mean_batch": statistics.mean(batch_sizes),
        "added_ms_p50": sorted(serving_overhead)[len(serving_overhead) // 2],
    }


def render_chart(figures: dict, path: Path) -> None:
    """Horizontal bars of images/s: raw at every batch size, served at every concurrency (PIL only)."""
    from PIL import Image, ImageDraw

    rows = [(f"raw batch {b}", float(v), (90, 120, 200)) for b, v in figures["raw"].items()]
    rows += [(f"served c={c}", float(v["throughput"]), (220, 120, 60)) for c, v in figures["served"].items()]
    width, bar_h, left, right = 720, 26, 130, 70
    image = Image.new("RGB", (width, 40 + bar_h * len(rows) + 10), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), f"style sample, images/s - {figures['device']}", fill="black")
    peak = max(value for _, value, _ in rows)
    for index, (label, value, colour) in enumerate(rows):
        top = 40 + index * bar_h
        draw.text((10, top + 7), label, fill="black")
        length = int((width - left - right) * value / peak)
        draw.rectangle([left, top + 3, left + length, top + bar_h - 3], fill=colour)
        draw.text((left + length + 6, top + 7), f"{value:.1f}", fill="black")
    image.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="running service; default: start one locally")
    parser.add_argument("--model", default="style-demo-random")
    parser.add_argument("--model-dir", default=None, help="checkpoint dir for the raw runs (default checkpoints/<model>)")
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--raw-seconds", type=float, default=3.0)
    parser.add_argument("--out", default="bench-out", help="folder for the figures (JSON, Markdown table, PNG chart)")
    parser.add_argument("--replot", help="only redraw the chart of a bench_batching.json written earlier")
    args = parser.parse_args()
    if args.replot:
        render_chart(json.loads(Path(args.replot).read_text()), Path(args.replot).with_suffix(".png"))
        return

    from service.config import REPO_ROOT

    model_dir = Path(args.model_dir or REPO_ROOT / "checkpoints" / args.model)
    levels = [int(c) for c in args.concurrency.split(",")]
    service = None
    if not args.url:
        from service.runtime import LocalService

        print("starting a local service …", flush=True)
        service = LocalService().start()
        args.url = service.url
    try:
        served = {}
        for level in levels:
            asyncio.run(served_throughput(args.url, args.model, level, min(8, args.requests)))  # warm-up
            served[level] = asyncio.run(served_throughput(args.url, args.model, level, args.requests))
            print(f"served c={level}: {served[level]['throughput']:.1f} img/s", flush=True)
    finally:
        if service is not None:
            service.stop()
    # Raw runs after the service stopped, so they do not compete with replicas for the cores.
    raw = raw_throughput(model_dir, [1, 2, 4, 8, 16, 32], args.raw_seconds)
    best_batch = max(raw, key=raw.get)

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()})"
    lines = [f"model {args.model} · device {device} · {args.requests} requests per level", "",
             "| path | images/s | ratio vs raw best | p50 ms | p99 ms | mean batch | added ms p50 |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| raw, batch 1 loop | {raw[1]:.1f} | {raw[1] / raw[best_batch]:.2f} | | | 1 | |",
             f"| raw, best batch ({best_batch}) | {raw[best_batch]:.1f} | 1.00 | | | {best_batch} | |"]
    for level, figures in served.items():
        lines.append(f"| served, concurrency {level} | {figures['throughput']:.1f} | {figures['throughput'] / raw[best_batch]:.2f} | "
                     f"{figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} | {figures['mean_batch']:.1f} | {figures['added_ms_p50']:.1f} |")
    print("\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {"device": device, "raw": raw, "served": served}
    (out / "bench_batching.json").write_text(json.dumps(figures, indent=2))
    render_chart(figures, out / "bench_batching.png")
    (out / "bench_batching.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
