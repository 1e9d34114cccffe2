"""Pose-transfer quality on held-out procedural pairs: SSIM and L1 against the ground-truth rendering.

    python -m training.warp_quality --models checkpoints/warp-persons,checkpoints/warp-persons-nowarp --n 500 --out docs/warp-quality.json

Each model transfers the condition image to the target keypoints as the service does (its own
predicted target parsing, no ground truth); the same ``--n`` held-out pairs (training.train_warp's
HELDOUT_SEED onward, never drawn in training) for every model. SSIM is skimage's (RGB, data range 1),
L1 the mean absolute difference in [0, 1]; also the parsing accuracy of Stage I.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from skimage.metrics import structural_similarity

from deployments.warp.checkpoint import load_model
from training.model_card import command_line, write_figures
from training.train_warp import heldout_batch, transfer


def evaluate(model_dir: Path, n: int, batch_size: int = 50) -> dict[str, float]:
    manifest = json.loads((model_dir / "model.json").read_text())
    model = load_model((model_dir / "weights.safetensors").read_bytes(), manifest)
    height, width = manifest["image_size"]
    ssims, l1s, parse_hits, pixels = [], [], 0, 0
    for start in range(0, n, batch_size):
        batch = heldout_batch(min(batch_size, n - start), height, width, start=start)
        out = transfer(model, batch)
        produced = ((out["image"] + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        truth = ((batch.target_image + 1) / 2).permute(0, 2, 3, 1).numpy()
        for a, b in zip(produced, truth):
            ssims.append(structural_similarity(a, b, channel_axis=2, data_range=1.0))
            l1s.append(float(np.abs(a - b).mean()))
        parse_hits += int((out["target_parsing"].argmax(1) == batch.target_labels).sum())
        pixels += batch.target_labels.numel()
    return {
        "model": model_dir.name,
        "warping": bool(manifest["arch"].get("warping", True)),
        "pairs": n,
        "ssim": float(np.mean(ssims)),
        "l1": float(np.mean(l1s)),
        "parsing_accuracy": parse_hits / pixels,
        "description": manifest.get("description", ""),
    }


def markdown(results: list[dict], command: str) -> str:
    lines = [f"`{command}`", "", "| model | warping block | SSIM ↑ | L1 ↓ | Stage I parsing accuracy |", "|---|---|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| `{r['model']}` | {'yes' if r['warping'] else 'no (ablation)'} | {r['ssim']:.4f} | {r['l1']:.4f} | "
            f"{r['parsing_accuracy']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, help="comma-separated checkpoint directories")
    parser.add_argument("--n", type=int, default=500, help="held-out pairs")
    parser.add_argument("--out", type=Path, help="JSON file for the figures (a .md table is written beside it)")
    args = parser.parse_args(argv)
    results = [evaluate(Path(d), args.n) for d in args.models.split(",")]
    command = command_line("training.warp_quality", argv)
    table = markdown(results, command)
    print(table)
    if args.out:
        write_figures(args.out, command, results, table)
    return results


if __name__ == "__main__":
    main()
