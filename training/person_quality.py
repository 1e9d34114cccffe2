"""Disentanglement of the person family on held-out procedural people, measured against the renderer.

    python -m training.person_quality --models checkpoints/person-persons --n 500 --out docs/person-quality.json

For held-out people A and B (training.train_person's HELDOUT_SEED onward, never drawn in training),
A in pose 1 and B in pose 2, every op runs as the service runs it (deployments/person/ops.py):

- reconstruction: A's image from its own three factors; SSIM (skimage, RGB, data range 1) and L1;
- background swap: A's foreground, B's background, A's pose. Truth: the renderer's A with B's
  background. Reported: SSIM to the truth; L1 inside A's person (its parsing) to A's own image
  (should stay as small as the reconstruction's); and how much of the background gap it closes,
  1 - L1(out, truth) / L1(A, truth) over the background pixels (1 = B's background exactly, 0 = A's kept);
- foreground swap: B's foreground, A's background, A's pose. Truth: B's person drawn at A's keypoints
  in front of A's background; the share of the person-region gap closed likewise, and L1 of the
  background pixels to A's image;
- pose swap: A's foreground and background, the keypoints of A in a third pose. Truth: A rendered in
  that pose; SSIM against the truth next to the SSIM of A's unchanged image (the baseline).

L1 is the mean absolute difference in [0, 1]. A picture of the first rows goes beside the JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

from deployments.person import ops as person_ops
from deployments.person.checkpoint import load_model
from training.data import persons
from training.model_card import command_line, write_figures
from training.train_person import heldout_people, with_appearance, with_background


def _people(batch: persons.PersonBatch) -> person_ops.People:
    return person_ops.People(batch.images * 2 - 1, batch.keypoints, batch.visible)


def _unit(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] (n, 3, H, W) -> [0, 1] (n, H, W, 3)."""
    return ((images + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _region_l1(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Per image mean |a - b| over the pixels of ``region`` (n, H, W)."""
    error = np.abs(a - b).mean(-1)
    return (error * region).sum((1, 2)) / np.maximum(region.sum((1, 2)), 1)


def _ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([structural_similarity(x, y, channel_axis=2, data_range=1.0) for x, y in zip(a, b)])


def evaluate_batch(model, n: int, start: int) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """People start .. start + 2n: A = first n, B = next n -> per-pair figures and picture columns."""
    h, w = model.config.height, model.config.width
    people, poses = heldout_people(2 * n, h, w, start=start)
    a, b = persons.rows(people, slice(0, n)), persons.rows(people, slice(n, 2 * n))
    a_image = persons.render_people(a, persons.rows(poses[0], slice(0, n)), h, w)
    b_image = persons.render_people(b, persons.rows(poses[1], slice(n, 2 * n)), h, w)
    a_third = persons.render_people(a, persons.rows(poses[2], slice(0, n)), h, w)
    truth_bg = persons.render_keypoints(with_background(a, b), a_image.keypoints, h, w)
    truth_fg = persons.render_keypoints(with_appearance(a, b), a_image.keypoints, h, w)
    pa, pb = _people(a_image), _people(b_image)
    recon = person_ops.reconstruct(model, pa).images
    bg_swap = person_ops.recompose(model, pa, pb, pa.keypoints, pa.visible).images
    fg_swap = person_ops.recompose(model, pb, pa, pa.keypoints, pa.visible).images
    pose_swap = person_ops.recompose(model, pa, pa, a_third.keypoints, a_third.visible).images
    x, out = _unit(pa.images), {k: _unit(v) for k, v in dict(recon=recon, bg=bg_swap, fg=fg_swap, pose=pose_swap).items()}
    t_bg, t_fg, t_pose = (_unit(t.images * 2 - 1) for t in (truth_bg, truth_fg, a_third))
    person_a = (a_image.parsing > 0).numpy()
    background_a = ~person_a
    person_b_at_a = (truth_fg.parsing > 0).numpy()
    figures = {
        "recon_ssim": _ssim(out["recon"], x),
        "recon_l1": _region_l1(out["recon"], x, np.ones_like(person_a)),
        "recon_person_l1": _region_l1(out["recon"], x, person_a),
        "bg_swap_ssim": _ssim(out["bg"], t_bg),
        "bg_swap_person_l1": _region_l1(out["bg"], x, person_a),
        "bg_swap_background_l1": _region_l1(out["bg"], t_bg, background_a),
        "bg_gap_l1": _region_l1(x, t_bg, background_a),
        "fg_swap_ssim": _ssim(out["fg"], t_fg),
        "fg_swap_person_l1": _region_l1(out["fg"], t_fg, person_b_at_a),
        "fg_gap_l1": _region_l1(x, t_fg, person_b_at_a),
        "fg_swap_background_l1": _region_l1(out["fg"], x, background_a & ~person_b_at_a),
        "pose_swap_ssim": _ssim(out["pose"], t_pose),
        "pose_baseline_ssim": _ssim(x, t_pose),
    }
    columns = [x, _unit(pb.images), out["recon"], out["bg"], t_bg, out["fg"], t_fg, out["pose"], t_pose]
    return figures, columns


def evaluate(model_dir: Path, n: int, batch_size: int = 50, picture: Path | None = None) -> dict:
    manifest = json.loads((model_dir / "model.json").read_text())
    model = load_model((model_dir / "weights.safetensors").read_bytes(), manifest)
    collected: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        figures, columns = evaluate_batch(model, size, 2 * start)
        for key, values in figures.items():
            collected.setdefault(key, []).append(values)
        if start == 0 and picture is not None:
            save_picture(columns, picture, rows=min(8, size))
    mean = {key: float(np.concatenate(values).mean()) for key, values in collected.items()}
    mean["bg_gap_closed"] = 1 - mean["bg_swap_background_l1"] / mean["bg_gap_l1"]
    mean["fg_gap_closed"] = 1 - mean["fg_swap_person_l1"] / mean["fg_gap_l1"]
    return {"model": model_dir.name, "pairs": n, **mean, "description": manifest.get("description", "")}


def save_picture(columns: list[np.ndarray], path: Path, rows: int) -> None:
    """Rows of A | B | reconstruction | bg swap | truth | fg swap | truth | A in a third pose | truth, 3x nearest."""
    from PIL import Image

    h, w = columns[0].shape[1:3]
    sheet = np.ones((rows * (h + 2) + 2, len(columns) * (w + 2) + 2, 3))
    for r in range(rows):
        for c, images in enumerate(columns):
            sheet[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + c * (w + 2) : 2 + c * (w + 2) + w] = images[r]
    image = Image.fromarray((sheet * 255).round().astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.resize((image.width * 3, image.height * 3), Image.NEAREST).save(path)


def markdown(results: list[dict], command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        "| model | recon SSIM ↑ | recon L1 ↓ | bg swap: SSIM to truth ↑ | bg swap: person L1 to A ↓ | bg gap closed ↑ | "
        "fg swap: SSIM to truth ↑ | fg gap closed ↑ | fg swap: background L1 to A ↓ | pose swap SSIM ↑ (unchanged A) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| `{r['model']}` | {r['recon_ssim']:.4f} | {r['recon_l1']:.4f} | {r['bg_swap_ssim']:.4f} | "
            f"{r['bg_swap_person_l1']:.4f} | {r['bg_gap_closed']:.3f} | {r['fg_swap_ssim']:.4f} | {r['fg_gap_closed']:.3f} | "
            f"{r['fg_swap_background_l1']:.4f} | {r['pose_swap_ssim']:.4f} ({r['pose_baseline_ssim']:.4f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, help="comma-separated checkpoint directories")
    parser.add_argument("--n", type=int, default=500, help="held-out pairs")
    parser.add_argument("--out", type=Path, help="JSON file for the figures (a .md table and a PNG per model are written beside it)")
    args = parser.parse_args(argv)
    results = []
    for directory in args.models.split(","):
        picture = args.out.with_name(f"{args.out.stem}-{Path(directory).name}.png") if args.out else None
        results.append(evaluate(Path(directory), args.n, picture=picture))
    command = command_line("training.person_quality", argv)
    table = markdown(results, command)
    print(table)
    if args.out:
        write_figures(args.out, command, results, table)
    return results


if __name__ == "__main__":
    main()
