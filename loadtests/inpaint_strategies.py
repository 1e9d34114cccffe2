"""Time and fill of each ``inpaint`` strategy on a phone-sized photo (issue 28).

    python -m loadtests.inpaint_strategies [--size 4000x3000] [--hole 300x400] [--out docs/perf/inpaint-strategies]

A synthetic photo (smooth sky and ground gradients, a textured wall, stripes and sensor noise) of
--size (width x height), sent as a JPEG as a phone would, with one --hole (width x height) in the
middle. For each strategy (``original``, ``crop``, ``resize``) the edit runs as a family replica runs
it, in this process (no Ray, no S3): decode, ``fit_inpaint_images``, the plan, Canny, both
generators, the paste into the full-resolution photo, and the PNG encode of the result, on the
shipped demo checkpoint (checkpoints/edgeconnect-demo). Prints and writes the median seconds of
--repeats runs (compute and encode apart), the pixels the generators ran on, and the PSNR inside the
hole of each fill against the ``original`` strategy's fill (``original`` against itself: inf).
Outside the hole every result is checked to be the input, byte for byte. ``original`` runs here
over the service's default pixel budget (max_model_pixels); the service answers such an edit 413.
Writes ``inpaint-strategies.json``, ``.md`` and ``.png`` to --out.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.encode_formats import psnr

STRATEGIES = ("original", "crop", "resize")  # original first: the reference fill
CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "edgeconnect-demo"


def synthetic_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """uint8 (H, W, 3): sky gradient over a ground gradient, a brick-like wall, stripes, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = 0.45 * height
    sky = np.stack([120 + 60 * y / horizon, 160 + 40 * y / horizon, np.full_like(y, 235)], axis=-1)
    ground = np.stack([90 + 50 * x / width, 110 + 30 * (y - horizon) / height, 60 + 0 * x], axis=-1)
    image = np.where((y < horizon)[..., None], sky, ground)
    wall = (x > 0.55 * width) & (y > 0.25 * height) & (y < 0.8 * height)
    bricks = ((np.floor(y / 40) % 2 == 0) ^ (np.floor(x / 90) % 2 == 0)).astype(np.float32)
    image[wall] = np.stack([150 + 40 * bricks, 80 + 20 * bricks, 60 + 10 * bricks], axis=-1)[wall]
    stripes = (np.sin(x / 13.0 + y / 29.0) > 0.6) & (y > 0.85 * height)
    image[stripes] *= 0.6
    image += rng.normal(0, 6, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _edit(model: Any, photo_jpeg: bytes, mask_png: bytes, strategy: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """One edit as a replica runs it: (seconds by step, the result, the fitted hole)."""
    import torch

    from deployments.inpaint.deployment import inpaint_batch
    from schemas.inpaint import InpaintParams, fit_inpaint_images
    from service.images import decode_image, encode_png
    from service.tasks import EditTask

    params = InpaintParams(strategy=strategy, edge_map="composited")  # the demo model's own default
    started = time.perf_counter()
    images = {"image": decode_image(photo_jpeg, 10**9, mode="RGB"), "mask": decode_image(mask_png, 10**9, mode="L")}
    fitted = fit_inpaint_images(images, params, {})
    task = EditTask("edgeconnect-demo", "inpaint", params.model_dump(mode="json"), {}, fitted, time.time())
    decoded = time.perf_counter()
    (merged, _edges, plan), *_ = inpaint_batch(model, [task], torch.device("cpu"))
    computed = time.perf_counter()
    encode_png(merged)
    encoded = time.perf_counter()
    times = {"decode_s": decoded - started, "compute_s": computed - decoded, "encode_s": encoded - computed, "total_s": encoded - started}
    return {**times, **plan.extras()}, merged, fitted


def measure(width: int, height: int, hole_width: int, hole_height: int, repeats: int) -> dict[str, Any]:
    from PIL import Image

    from deployments.inpaint.checkpoint import load_model

    model = load_model((CHECKPOINT / "weights.safetensors").read_bytes(), json.loads((CHECKPOINT / "model.json").read_text()))
    photo = synthetic_photo(width, height)
    jpeg = io.BytesIO()
    Image.fromarray(photo).save(jpeg, "JPEG", quality=90)
    mask = np.zeros((height, width), np.uint8)
    top, left = (height - hole_height) // 2, (width - hole_width) // 2
    mask[top : top + hole_height, left : left + hole_width] = 255
    png = io.BytesIO()
    Image.fromarray(mask).save(png, "PNG")
    rows: dict[str, Any] = {}
    reference = None
    for strategy in STRATEGIES:
        runs = [_edit(model, jpeg.getvalue(), png.getvalue(), strategy) for _ in range(repeats)]
        figures, merged, fitted = runs[-1]
        hole = fitted["mask"]
        if not np.array_equal(merged[~hole], fitted["image"][~hole]):
            raise AssertionError(f"strategy {strategy!r} changed pixels outside the hole")
        reference = merged if reference is None else reference
        row = {k: v for k, v in figures.items() if not k.endswith("_s")}
        for step in ("decode_s", "compute_s", "encode_s", "total_s"):
            row[step] = statistics.median(r[0][step] for r in runs)
        row["psnr_hole_db"] = psnr(merged[hole], reference[hole])
        rows[strategy] = row
        print(f"{strategy}: {row['total_s']:.2f} s (compute {row['compute_s']:.2f} s), {row['model_pixels']} model pixels", flush=True)
    return {
        "size": [width, height],
        "hole": [hole_width, hole_height],
        "repeats": repeats,
        "jpeg_bytes": len(jpeg.getvalue()),
        "strategies": rows,
    }


def markdown(results: dict[str, Any], command: str) -> str:
    (width, height), (hole_w, hole_h) = results["size"], results["hole"]
    lines = [
        f"`{command}` · {width}×{height} JPEG ({results['jpeg_bytes'] / 1e6:.1f} MB), one {hole_w}×{hole_h} hole, demo checkpoint, "
        f"median of {results['repeats']} · PSNR inside the hole against the `original` strategy's fill",
        "",
        "| strategy | what ran | model pixels | decode s | compute s | PNG encode s | total s | PSNR in hole dB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["strategies"].items():
        if name == "crop":
            ran = "crops " + ", ".join(f"{w}×{h} at ({x}, {y})" for x, y, w, h in r["crop_boxes"])
        elif name == "resize":
            ran = f"scaled ×{r['scale']:.3f} to {r['model_size'][0]}×{r['model_size'][1]}"
        else:
            ran = "the whole image"
        fidelity = "reference" if r["psnr_hole_db"] == float("inf") else f"{r['psnr_hole_db']:.1f}"
        lines.append(
            f"| `{name}` | {ran} | {r['model_pixels']:,} | {r['decode_s']:.2f} | {r['compute_s']:.2f} | {r['encode_s']:.2f} | "
            f"{r['total_s']:.2f} | {fidelity} |"
        )
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["strategies"])
    rows = [results["strategies"][n] for n in names]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    left = np.zeros(len(names))
    for step, colour in (("decode_s", "C0"), ("compute_s", "C1"), ("encode_s", "C2")):
        values = np.array([r[step] for r in rows])
        ax.barh(names, values, left=left, color=colour, label=step[:-2])
        left += values
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log)")
    ax.legend(fontsize=7)
    width, height = results["size"]
    ax.set_title(f"inpaint strategies on a {width}×{height} photo", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _pair(text: str) -> tuple[int, int]:
    first, _, second = text.partition("x")
    return int(first), int(second)


def main(argv: list[str] | None = None) -> int:
    from loadtests.bench import write_report

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="4000x3000", help="photo width x height")
    parser.add_argument("--hole", default="300x400", help="hole width x height, centred")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default="bench-out/inpaint-strategies")
    args = parser.parse_args(argv)
    command = "python -m loadtests.inpaint_strategies " + " ".join(argv if argv is not None else sys.argv[1:])
    import torch

    with torch.no_grad():  # scoped: main() also runs inside the test process, whose other tests train
        results = measure(*_pair(args.size), *_pair(args.hole), args.repeats)
    results["command"] = command
    write_report(args.out, "inpaint-strategies", results, markdown(results, command), chart)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
