"""What each generator speed option buys, and what it costs in output fidelity, per family op.

    python -m loadtests.accel [--ops style.sample,...] [--batch 8] [--seconds 3] [--compile] [--out docs]

For every op of ``loadtests.bench.BENCH_OPS`` and every configuration of
``service/acceleration.py`` that the device supports (CPU: fp32, channels_last, bf16 autocast,
both; CUDA adds fp16; ``--compile`` adds torch.compile variants), it runs the family's own
``run_group`` on one fixed batch (interleaved rounds, median) and prints throughput relative to fp32 and the output difference
vs fp32 in uint8 grey levels (max and mean over all pixels; 1 level = 1/255).

It needs only storage (the registered checkpoints), not Ray: without a configured S3 endpoint it
starts the embedded server. Writes ``accel.json``, ``accel.md`` and ``img/accel.png`` under --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from loadtests.bench import BENCH_OPS, RawRunner, bench_assets
from service.acceleration import Acceleration


def configurations(compile_too: bool) -> list[Acceleration]:
    configs = [
        Acceleration(),
        Acceleration(channels_last=True),
        Acceleration(precision="bf16"),
        Acceleration(precision="bf16", channels_last=True),
    ]
    if torch.cuda.is_available():
        configs += [Acceleration(precision="fp16"), Acceleration(precision="fp16", channels_last=True)]
    if compile_too:
        configs += [Acceleration(compile=True), Acceleration(precision="bf16", channels_last=True, compile=True)]
    return configs


def images_of(outputs) -> np.ndarray:
    return np.stack([np.atleast_3d(o.image) for o in outputs]).astype(np.int16)


def measure(ops: list, batch: int, seconds: float, rounds: int, compile_too: bool, asset_bytes: dict, asset_ids: dict) -> dict:
    """Per op: every configuration's model loaded side by side, timed in interleaved rounds (median),
    so a slow spell of a shared machine hits all configurations alike."""
    results: dict = {}
    for bench in ops:
        configs = configurations(compile_too)
        runners = [RawRunner(bench, asset_bytes, asset_ids, acceleration=config) for config in configs]
        tasks = runners[0].tasks(list(range(batch)))
        reference = images_of(runners[0].run(tasks))
        rates: dict[str, list[float]] = {config.describe(): [] for config in configs}
        for _ in range(rounds):
            for config, runner in zip(configs, runners):
                rates[config.describe()].append(runner.throughput(batch, seconds / rounds))
        for config, runner in zip(configs, runners):
            diff = np.abs(images_of(runner.run(tasks)) - reference)
            rate = float(np.median(rates[config.describe()]))
            results.setdefault(bench.name, {})[config.describe()] = {
                "images_per_s": rate,
                "rounds": rates[config.describe()],
                "max_diff": int(diff.max()),
                "mean_diff": float(diff.mean()),
            }
            base = results[bench.name]["fp32"]["images_per_s"]
            print(
                f"{bench.name:26} {config.describe():28} {rate:8.1f} img/s  x{rate / base:4.2f}  "
                f"max diff {int(diff.max()):3d}  mean {diff.mean():.3f}",
                flush=True,
            )
        del runners
    return results


def markdown(results: dict, header: str) -> str:
    configs = list(next(iter(results.values())))
    lines = [header, "", "| op | " + " | ".join(configs) + " |", "|---|" + "---:|" * len(configs)]
    for op, row in results.items():
        base = row["fp32"]["images_per_s"]
        cells = [
            f"{row[c]['images_per_s']:.1f} img/s (×{row[c]['images_per_s'] / base:.2f}; max Δ {row[c]['max_diff']}, mean Δ {row[c]['mean_diff']:.2f})"
            for c in configs
        ]
        lines.append(f"| `{op}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = list(results)
    configs = list(results[ops[0]])
    width = 0.8 / len(configs)
    fig, (speed, error) = plt.subplots(1, 2, figsize=(12, 3.8))
    for k, config in enumerate(configs):
        xs = [i + k * width for i in range(len(ops))]
        speed.bar(xs, [results[op][config]["images_per_s"] / results[op]["fp32"]["images_per_s"] for op in ops], width * 0.95, label=config)
        error.bar(xs, [results[op][config]["max_diff"] for op in ops], width * 0.95, label=config)
    for ax, label in ((speed, "throughput vs fp32"), (error, "max |Δ| vs fp32 (uint8 levels)")):
        ax.set_xticks([i + width * (len(configs) - 1) / 2 for i in range(len(ops))], ops, fontsize=7, rotation=15)
        ax.set_ylabel(label)
    speed.axhline(1.0, color="black", lw=0.8)
    speed.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default=",".join(b.name for b in BENCH_OPS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0, help="time per configuration, split over the rounds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; the median counts")
    parser.add_argument("--compile", action="store_true", help="also torch.compile variants (slow to compile on CPU)")
    parser.add_argument("--inpaint-size", type=int, default=64)
    parser.add_argument("--out", default="accel-out")
    args = parser.parse_args(argv)
    ops = [b for b in BENCH_OPS if b.name in args.ops.split(",")]

    from service.runtime import LocalService
    from service.storage import AssetStore

    local = LocalService()
    settings = local.start_storage()  # embedded S3 when none is configured; registers the shipped checkpoints
    try:
        store = AssetStore(settings)
        asset_bytes = bench_assets(args.inpaint_size)
        asset_ids = {}
        for name, data in asset_bytes.items():
            import hashlib

            asset_ids[name] = hashlib.sha256(data).hexdigest()
            store.put_if_absent(store.asset_key(asset_ids[name]), data, "image/png", {"kind": "image"})
        results = measure(ops, args.batch, args.seconds, args.rounds, args.compile, asset_bytes, asset_ids)
    finally:
        local.stop_storage()
    device = (
        torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU {platform.machine()}, {torch.get_num_threads()} torch threads"
    )
    command = "python -m loadtests.accel " + " ".join(argv if argv is not None else sys.argv[1:])
    header = f"device: {device} · batch {args.batch} · `{command}`"
    table = markdown(results, header)
    print("\n" + table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accel.json").write_text(
        json.dumps({"device": device, "batch": args.batch, "command": command, "ops": results}, indent=2) + "\n"
    )
    (out / "accel.md").write_text(table + "\n")
    chart(results, out / "img" / "accel.png", f"generator speed options vs fp32 — {device}, batch {args.batch}")
    print(f"wrote {out}/accel.json, accel.md, img/accel.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
