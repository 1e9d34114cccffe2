"""InGAN training speed: iterations/s of ``deployments.ingan.ops.fit`` per configuration and device.

    python -m loadtests.ingan_fit_speed --threads 1 --out docs/perf/ingan-fit

One iteration is one discriminator and one generator update at a drawn output size (the training
loop of ``fit`` jobs and ``training/train_ingan.py``). The curriculum is off here, so every
iteration draws from the whole scale range (0.5-2 x per side) and the figure is the steady state a
long run settles to; the first ``--warmup`` iterations are not timed. Configurations: ``demo``
(the shipped ingan-rocket model: 24 base channels, 3 downscales, 4 residual blocks, 96x64 image)
and ``paper`` (the paper's generator: 64 base channels, 3 downscales, 6 residual blocks, 64 D
channels, here on a 128x128 image). CUDA is measured when torch sees a GPU. Prints a Markdown table
and writes ``ingan_fit_speed.json`` and ``ingan_fit_speed.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deployments.ingan.ingan import InGANConfig
from deployments.ingan.ops import FitSettings, FitStopped, fit

CONFIGS: dict[str, dict[str, Any]] = {
    "demo": {"config": InGANConfig(24, 3, 4), "d_channels": 32, "image": (64, 96)},
    "paper": {"config": InGANConfig(64, 3, 6), "d_channels": 64, "image": (128, 128)},
}


def measure(name: str, device: str, iterations: int, warmup: int, seed: int = 0) -> dict[str, Any]:
    spec = CONFIGS[name]
    height, width = spec["image"]
    rng = np.random.default_rng(seed)
    image = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    stamps: dict[int, float] = {}

    def on_progress(progress: dict[str, Any]) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        stamps[progress["iteration"]] = time.perf_counter()
        if progress["iteration"] >= warmup + iterations:
            raise FitStopped

    settings = FitSettings(
        iterations=warmup + iterations, scale_min=0.5, scale_max=2.0, curriculum=0.0, d_channels=spec["d_channels"], seed=seed
    )
    fit(image, spec["config"], settings, on_progress=on_progress, progress_every=1, device=device)
    seconds = stamps[warmup + iterations] - stamps[warmup]
    return {
        "config": name,
        "device": device,
        "arch": spec["config"].to_dict(),
        "d_channels": spec["d_channels"],
        "image": [height, width],
        "timed_iterations": iterations,
        "seconds": round(seconds, 2),
        "it_per_s": round(iterations / seconds, 2),
    }


def device_name(device: str, threads: int) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU {platform.machine()} ({threads} torch thread{'s' if threads > 1 else ''})"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="demo,paper", help=f"comma-separated, of {sorted(CONFIGS)}")
    parser.add_argument("--iterations", type=int, default=60, help="timed iterations per configuration (CUDA: x10)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="write ingan_fit_speed.json and .md here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for name in args.configs.split(","):
            row = measure(name, device, args.iterations * (10 if device == "cuda" else 1), args.warmup)
            row["device_name"] = device_name(device, args.threads)
            rows.append(row)
            print(json.dumps(row), flush=True)
    command = "python -m loadtests.ingan_fit_speed " + " ".join(argv if argv is not None else __import__("sys").argv[1:])
    table = ["| config | generator (base, downscales, resblocks) | D channels | image | device | it/s |", "|---|---|---:|---|---|---:|"]
    for row in rows:
        arch = row["arch"]
        table.append(
            f"| `{row['config']}` | {arch['base_channels']}, {arch['n_downscales']}, {arch['n_resblocks']} | {row['d_channels']} "
            f"| {row['image'][1]}x{row['image'][0]} | {row['device_name']} | {row['it_per_s']:.2f} |"
        )
    markdown = "\n".join(table) + f"\n\n`{command.strip()}`\n"
    print(markdown)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ingan_fit_speed.json").write_text(json.dumps(rows, indent=2) + "\n")
        (args.out / "ingan_fit_speed.md").write_text(markdown)
    return rows


if __name__ == "__main__":
    main()
