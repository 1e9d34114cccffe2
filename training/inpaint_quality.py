"""Inpainting quality of an EdgeConnect checkpoint on held-out images, against classical baselines.

    python -m training.inpaint_quality --model-dir checkpoints/edgeconnect-demo \\
        --json docs/inpaint-quality.json --figure docs/img/inpaint-quality.png

Images: ``training.data.inpaint_data.heldout_set`` (procedural faces from the held-out seed range,
alternating with crops of the held-out photos ``HELDOUT_PHOTOS``; masks from ``random_masks``),
all fixed by ``--seed``, so no image or photo the trainer sampled is scored.

Methods:
    model        ``deployments.inpaint.ops.complete`` with Canny (sigma 2) outside the hole: exactly
                 what the service runs, with the ``--edge-map`` the inpaint op's ``params.edge_map``
                 would name (default "generated", the service's default)
    biharmonic   ``skimage.restoration.inpaint_biharmonic`` (channel_axis=-1)
    telea        OpenCV ``cv2.inpaint(..., INPAINT_TELEA)`` radius 3, only if ``cv2`` is importable

Metrics, inside the hole only (outside it every method returns the input):
    PSNR  10 log10(1 / MSE), MSE over the hole's pixels and the 3 channels, per image
    SSIM  ``skimage.metrics.structural_similarity(full=True, channel_axis=-1, data_range=1)``; the
          SSIM map averaged over the hole's pixels (and channels), per image
Both are averaged over the images of a source (faces / photos) and over all images. Prints a
markdown table; ``--json`` writes the numbers, ``--figure`` a PNG (rows: masked input, each
baseline, the model, ground truth).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from deployments.inpaint.checkpoint import MANIFEST_FILE, WEIGHTS_FILE, load_model
from deployments.inpaint.ops import EDGE_MAPS, complete
from training.data.inpaint_data import EDGE_SIGMA, HELDOUT_PHOTOS, heldout_set, service_edges


def hole_psnr(pred: np.ndarray, target: np.ndarray, hole: np.ndarray) -> float:
    """pred / target (H, W, 3) in [0, 1]; hole (H, W) bool."""
    mse = float(np.mean((pred[hole] - target[hole]) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def hole_ssim(pred: np.ndarray, target: np.ndarray, hole: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    _, ssim_map = structural_similarity(target, pred, full=True, channel_axis=-1, data_range=1.0)
    return float(ssim_map[hole].mean())


def biharmonic(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    return np.clip(inpaint_biharmonic(image, hole, channel_axis=-1), 0, 1).astype(np.float32)


def telea_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def telea(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    import cv2

    u8 = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    out = cv2.inpaint(u8, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    return out.astype(np.float32) / 255


def load_checkpoint(model_dir: Path):
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    return load_model((model_dir / WEIGHTS_FILE).read_bytes(), manifest), manifest


@torch.no_grad()
def evaluate(model, n: int, size: int, seed: int, edge_map: str = EDGE_MAPS[0]) -> dict:
    data = heldout_set(n, size, seed)
    edges = service_edges(data.images, data.masks, EDGE_SIGMA)
    started = time.perf_counter()
    merged, _ = complete(model, data.images, data.masks, edges, edge_map=edge_map)
    model_seconds = time.perf_counter() - started
    targets = data.images.permute(0, 2, 3, 1).numpy()
    holes = data.masks[:, 0].numpy() > 0.5
    outputs: dict[str, list[np.ndarray]] = {"biharmonic": []}
    if telea_available():
        outputs["telea"] = []
    outputs["model"] = list(merged.permute(0, 2, 3, 1).numpy())
    seconds = {"model": model_seconds}
    for name, fn in (("biharmonic", biharmonic), ("telea", telea)):
        if name in outputs:
            started = time.perf_counter()
            outputs[name] = [fn(t * (1 - h[..., None]), h) for t, h in zip(targets, holes)]
            seconds[name] = time.perf_counter() - started
    per_image = {
        m: {
            "psnr": [hole_psnr(o, t, h) for o, t, h in zip(outs, targets, holes)],
            "ssim": [hole_ssim(o, t, h) for o, t, h in zip(outs, targets, holes)],
        }
        for m, outs in outputs.items()
    }
    groups = {
        "faces": [i for i, s in enumerate(data.sources) if s == "faces"],
        "photos": [i for i, s in enumerate(data.sources) if s == "photos"],
        "all": list(range(n)),
    }
    results = {
        m: {
            g: {"psnr": float(np.mean([v["psnr"][i] for i in idx])), "ssim": float(np.mean([v["ssim"][i] for i in idx])), "n": len(idx)}
            for g, idx in groups.items()
            if idx
        }
        for m, v in per_image.items()
    }
    return {
        "data": data,
        "targets": targets,
        "holes": holes,
        "outputs": outputs,
        "results": results,
        "per_image": per_image,
        "seconds": seconds,
        "hole_ratio": float(holes.mean()),
    }


def markdown_table(results: dict) -> str:
    groups = [g for g in ("faces", "photos", "all") if g in next(iter(results.values()))]
    header = "| method | " + " | ".join(f"{g} PSNR (dB) | {g} SSIM" for g in groups) + " |"
    sep = "|---|" + "---:|---:|" * len(groups)
    lines = [header, sep]
    for method, by_group in results.items():
        cells = " | ".join(f"{by_group[g]['psnr']:.2f} | {by_group[g]['ssim']:.3f}" for g in groups)
        lines.append(f"| {method} | {cells} |")
    return "\n".join(lines)


def figure(run: dict, path: Path, examples: int = 6, scale: int = 3) -> None:
    """Columns = examples (alternating faces / photos); rows = masked input, baselines, model, truth."""
    data, targets, holes = run["data"], run["targets"], run["holes"]
    faces = [i for i, s in enumerate(data.sources) if s == "faces"]
    photos = [i for i, s in enumerate(data.sources) if s == "photos"]
    picks = [x for pair in zip(faces, photos) for x in pair][:examples]
    rows = [("masked input", [np.where(holes[i][..., None], 1.0, targets[i]) for i in picks])]
    rows += [(name, [run["outputs"][name][i] for i in picks]) for name in run["outputs"] if name != "model"]
    rows += [("model (EdgeConnect)", [run["outputs"]["model"][i] for i in picks]), ("ground truth", [targets[i] for i in picks])]
    side = targets.shape[1] * scale
    label_w, head_h, gap = 150, 18, 4
    width = label_w + len(picks) * (side + gap)
    height = head_h + len(rows) * (side + gap)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for col, i in enumerate(picks):
        draw.text((label_w + col * (side + gap) + 2, 3), data.names[i], fill="black")
    for row, (label, tiles) in enumerate(rows):
        top = head_h + row * (side + gap)
        draw.text((4, top + side // 2 - 6), label, fill="black")
        for col, tile in enumerate(tiles):
            img = Image.fromarray((np.clip(tile, 0, 1) * 255).round().astype(np.uint8))
            canvas.paste(img.resize((side, side), Image.NEAREST), (label_w + col * (side + gap), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("checkpoints/edgeconnect-demo"))
    parser.add_argument("--n", type=int, default=64, help="held-out images (half faces, half photo crops)")
    parser.add_argument("--size", type=int, default=64, help="image side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--edge-map",
        choices=EDGE_MAPS,
        default=EDGE_MAPS[0],
        help="the edge map the inpainting generator gets (the inpaint op's params.edge_map)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    parser.add_argument("--figure", type=Path, default=None, help="write an example figure (PNG) here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, manifest = load_checkpoint(args.model_dir)
    started = time.perf_counter()
    run = evaluate(model, args.n, args.size, args.seed, args.edge_map)
    table = markdown_table(run["results"])
    print(
        f"{manifest['name']} ({args.model_dir}): {args.n} held-out {args.size}px images (faces from the held-out "
        f"seed range, crops of {', '.join(HELDOUT_PHOTOS)}), seed {args.seed}, mean hole {run['hole_ratio']:.1%}, "
        f"edge map {args.edge_map}; PSNR / SSIM inside the hole, mean over images\n"
    )
    print(table)
    if not telea_available():
        print("\n(OpenCV not installed: no Telea baseline)")
    report = {
        "model": manifest["name"],
        "model_dir": str(args.model_dir),
        "arch": manifest["arch"],
        "n": args.n,
        "size": args.size,
        "seed": args.seed,
        "edge_sigma": EDGE_SIGMA,
        "edge_map": args.edge_map,
        "heldout_photos": list(HELDOUT_PHOTOS),
        "mean_hole_ratio": run["hole_ratio"],
        "metrics": "PSNR and SSIM inside the hole, mean over images",
        "results": run["results"],
        "seconds": run["seconds"],
        "images": run["data"].names,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.figure:
        figure(run, args.figure)
    print(f"\n({time.perf_counter() - started:.1f} s)")
    return report


if __name__ == "__main__":
    main()
