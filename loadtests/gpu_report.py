"""Every GPU figure of docs/performance.md, in one call of under 8 minutes.

    python -m loadtests.gpu_report [--out gpu-report] [--resolution 256] [--quick]

Meant for the first session that has a GPU machine: run it once, read ``<out>/summary.md``. Steps,
each in its own try so that one failure keeps the others' figures:

1. device: ``nvidia-smi``, torch and CUDA versions (``device.txt``).
2. a full-width StyleGAN2 at ``--resolution`` (random init, 512-d styles, 8 mapping layers,
   channel_max 512: the architecture the papers' 256-px models have), registered beside the
   shipped checkpoints as ``style-<resolution>-random``.
3. raw vs served per op (``loadtests.bench``): ``style.sample@<resolution>``, the shipped
   style/collage ops and ``inpaint.inpaint`` at 256 px, at concurrency 1, 16, 64; raw at batch 1 to
   64; replica peak RSS and GPU memory. The GPU targets read off this table: served ≥ 85 % of raw
   best-batch throughput for StyleGAN2-256 at concurrency 64, ≤ 10 ms added latency at c=1.
4. speed options (``loadtests.accel``): fp32, channels_last, bf16, fp16 on every op; torch.compile
   on the StyleGAN2 op only (compiling everything does not fit the time).
5. serving cost (``loadtests.serving_cost``): CPU per edit of the path with a GPU generator.

``--quick`` shrinks every count (a smoke test on a CPU machine, not figures to report).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import traceback
from pathlib import Path


def run_step(name: str, summary: list[str], fn, budget_s: float) -> None:
    started = time.monotonic()
    print(f"=== {name} (budget {budget_s:.0f} s)", flush=True)
    try:
        fn()
        summary.append(f"- {name}: done in {time.monotonic() - started:.0f} s")
    except Exception as exc:  # keep going: the other steps' figures are worth having
        traceback.print_exc()
        summary.append(f"- {name}: FAILED after {time.monotonic() - started:.0f} s: {type(exc).__name__}: {str(exc)[:300]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu-report")
    parser.add_argument("--resolution", type=int, default=256, help="of the full-width StyleGAN2 benchmarked")
    parser.add_argument("--quick", action="store_true", help="tiny counts: check that the script runs, on any machine")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    summary: list[str] = [f"# GPU report ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", ""]
    q = args.quick

    def device() -> None:
        import torch

        lines = [f"torch {torch.__version__}, CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}"]
        if torch.cuda.is_available():
            lines.append(f"device: {torch.cuda.get_device_name()}")
        if shutil.which("nvidia-smi"):
            lines.append(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout)
        (out / "device.txt").write_text("\n".join(lines) + "\n")
        summary.append("```\n" + "\n".join(lines[:2]) + "\n```")

    run_step("device", summary, device, 30)

    # The shipped checkpoints plus the full-width StyleGAN2, in one directory the service registers.
    from service.config import REPO_ROOT

    checkpoints = Path(tempfile.mkdtemp(prefix="gpu-report-checkpoints-"))
    for shipped in (REPO_ROOT / "checkpoints").iterdir():
        if (shipped / "model.json").is_file():
            (checkpoints / shipped.name).symlink_to(shipped)
    model = f"style-{args.resolution}-random"

    def stylegan() -> None:
        from training.stylegan2_random_init import main as build

        sizes = f"--resolution {args.resolution} --style-dim 512 --n-mlp 8 --channel-max 512 --seed 0"
        build(["--out", str(checkpoints / model), *sizes.split()])

    run_step(f"build {model}", summary, stylegan, 60)
    os.environ["COLLAGE_CHECKPOINTS_DIR"] = str(checkpoints)
    os.environ["COLLAGE_DATA_DIR"] = str(out / "state")

    from loadtests import bench

    if (checkpoints / model / "model.json").is_file():
        bench.BENCH_OPS.append(
            bench.BenchOp("style", "sample", model, lambda i: {}, lambda i, a: {"seed": i}, variant=str(args.resolution))
        )
    big = f"style.sample@{args.resolution}"
    ops = ",".join([big, "style.sample", "style.local_transfer", "collage.sample", "collage.label_collage", "inpaint.inpaint"])
    fast = ",".join([big, "collage.sample", "inpaint.inpaint"])

    def raw_vs_served() -> None:
        sizes = "--requests 8 --concurrency 1,4 --batches 1,2 --raw-seconds 0.2 --inpaint-size 64"
        if not q:
            sizes = "--requests 128 --concurrency 1,16,64 --batches 1,8,32,64 --raw-seconds 1.0 --inpaint-size 256"
        bench.main(["--ops", fast if q else ops, *sizes.split(), "--out", str(out / "bench")])

    run_step("raw vs served (loadtests.bench)", summary, raw_vs_served, 240)

    def speed_options() -> None:
        from loadtests import accel

        sizes = "--batch 2 --seconds 0.3 --rounds 1 --inpaint-size 64" if q else "--batch 32 --seconds 2 --rounds 3 --inpaint-size 256"
        accel.main(["--ops", fast, *sizes.split(), "--out", str(out / "accel")])
        if not q:
            accel.main(["--ops", big, "--batch", "32", "--seconds", "2", "--rounds", "3", "--compile", "--out", str(out / "accel-compile")])

    run_step("speed options (loadtests.accel)", summary, speed_options, 150)

    def serving_cost() -> None:
        from loadtests import serving_cost as cost

        # --allow-busy: the previous steps' Ray may take a moment to exit; nothing else runs on this machine
        sizes = "--concurrency 4 --requests 16" if q else "--concurrency 16,64 --requests 300"
        if cost.main(["--auth", "on", *sizes.split(), "--allow-busy", "--out", str(out / "serving-cost")]) != 0:
            raise RuntimeError("loadtests.serving_cost failed")

    run_step("serving cost (loadtests.serving_cost)", summary, serving_cost, 90)

    for table in ("bench/bench.md", "accel/accel.md", "accel-compile/accel.md", "serving-cost/serving_cost.md"):
        if (out / table).is_file():
            summary += ["", f"## {table}", "", (out / table).read_text()]
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    shutil.rmtree(checkpoints, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
