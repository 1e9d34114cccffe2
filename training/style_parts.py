"""Name a demo model's catalog clusters and measure how local its part transfers are.

Both use faces whose parts are known: procedural faces (``training.data.faces``) projected into
the model (W+ optimisation, ``deployments.style.ops.project``), so each projected image comes with
the renderer's ground-truth part masks.

    python -m training.style_parts label --dir checkpoints/style-faces
        clusters the projections' part maps and names every cluster after the ground-truth part it
        overlaps best (intersection over union); writes the labels into DIR/catalog.json.

    python -m training.style_parts locality --dir checkpoints/style-faces --pairs 100
        for "eyes" and "mouth": transfers the part from reference R onto target S for N pairs
        with the simple and the sequential query and reports the share of the pixel change
        (squared L2 per pixel) that falls inside the target's ground-truth part mask; also the
        mask's share of the image, i.e. what a change spread evenly would score. Writes a JSON,
        a bar chart and an example grid (docs/img/ by default).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from deployments.style import editing, ops
from deployments.style.catalog import Catalog, cluster_maps, colorize, save_meta, upsample_labels
from deployments.style.checkpoint import load_generator
from deployments.style.stylegan2 import Generator
from schemas.style import SEQUENTIAL_EPSILON, SEQUENTIAL_RHO
from training.data.faces import PARTS, render_faces


def load(directory: Path) -> tuple[Generator, torch.Tensor, Catalog]:
    manifest = json.loads((directory / "model.json").read_text())
    generator, latent_avg = load_generator(directory / "weights.safetensors", manifest["arch"])
    meta = json.loads((directory / "catalog.json").read_text())
    catalog = Catalog.from_bytes((directory / "catalog.safetensors").read_bytes(), meta)
    mean_w = latent_avg if latent_avg is not None else generator.mean_latent()
    return generator, mean_w, catalog


def projected_faces(generator: Generator, mean_w: torch.Tensor, n: int, seed: int, steps: int, batch: int = 50):
    """(W+ latents (n, n_latent, D), part masks (n, P, R, R) bool, fit MSE (n,)) of n rendered faces."""
    faces = render_faces(n, generator.resolution, seed=seed)
    ws, errors = [], []
    for start in range(0, n, batch):
        w, _, mse = ops.project(
            generator, faces.images[start : start + batch], mean_w=mean_w, steps=steps, learning_rate=0.05, latent_space="w+"
        )
        ws.append(w)
        errors.append(mse)
    return torch.cat(ws), faces.masks, torch.cat(errors)


SMALL_PARTS = ("eyes", "mouth", "nose")  # the parts worth a cluster of their own, even when they lose on IoU


def name_clusters(labels: torch.Tensor, masks: torch.Tensor, k: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """labels (N, R, R) cluster maps, masks (N, P, R, R) -> (a part name per cluster, IoU (K, P), lift (K, P)).

    Each cluster first takes the part it overlaps best (IoU). Small parts hardly ever win on IoU at
    a coarse cluster grid, so then each small part still without a cluster takes the cluster with
    its best IoU, if that cluster is at least twice as dense in the part as the image is
    (lift = P(part | cluster) / P(part) >= 2) and its old name is kept by another cluster.
    """
    iou, lift = np.zeros((k, len(PARTS))), np.zeros((k, len(PARTS)))
    for c in range(k):
        in_cluster = labels == c
        for p in range(len(PARTS)):
            inter = (in_cluster & masks[:, p]).sum().item()
            union = (in_cluster | masks[:, p]).sum().item()
            iou[c, p] = inter / union if union else 0.0
            lift[c, p] = (inter / max(in_cluster.sum().item(), 1)) / max(masks[:, p].float().mean().item(), 1e-9)
    names = [PARTS[int(np.argmax(row))] for row in iou]
    for part in SMALL_PARTS:
        p = PARTS.index(part)
        if part in names:
            continue
        c = int(np.argmax(iou[:, p]))
        if lift[c, p] >= 2.0 and names.count(names[c]) > 1:
            names[c] = part
    return names, iou, lift


def cmd_label(args: argparse.Namespace) -> None:
    generator, mean_w, catalog = load(args.dir)
    ws, masks, mse = projected_faces(generator, mean_w, args.faces, args.seed, args.steps)
    with torch.inference_mode():
        _, labels = cluster_maps(generator, catalog, generator.styles_from_ws(ws))
    names, iou, lift = name_clusters(upsample_labels(labels, generator.resolution), masks, catalog.k)
    print(f"projected {args.faces} faces (mean fit MSE {mse.mean():.4f}); IoU (lift) of each cluster with each part:")
    print("cluster  " + "  ".join(f"{p:>14s}" for p in PARTS) + "  -> name")
    for c in range(catalog.k):
        cells = "  ".join(f"{iou[c, p]:7.3f} ({lift[c, p]:4.1f})" for p in range(len(PARTS)))
        print(f"{c:7d}  {cells}  -> {names[c]}")
    path = args.dir / "catalog.json"
    meta = json.loads(path.read_text())
    meta["labels"] = names
    meta["labelled_by"] = (
        f"training.style_parts label: best IoU with the ground-truth parts of {args.faces} projected "
        f"procedural faces (seed {args.seed}, {args.steps} steps)"
    )
    path.write_bytes(save_meta(meta))
    print(f"wrote labels to {path}")


def transfer(
    generator: Generator, catalog: Catalog, ws_s: torch.Tensor, ws_r: torch.Tensor, part: str, rule: str, strength: float
) -> torch.Tensor:
    """Images (N, 3, R, R) of S with R's ``part`` by the given query rule."""
    weights = torch.zeros(catalog.k)
    weights[catalog.clusters_of(part)] = 1.0
    queries = []
    for layer in generator.style_layers:
        queries.append(editing.part_query(catalog.contributions[layer.name], weights, rule, strength=strength))
    with torch.inference_mode():
        styles = editing.interpolate_styles(generator.styles_from_ws(ws_s), generator.styles_from_ws(ws_r), queries)
        return generator.synthesis_from_styles(styles, noise_mode="const")


def cmd_locality(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    generator, mean_w, catalog = load(args.dir)
    ws, masks, mse = projected_faces(generator, mean_w, 2 * args.pairs, args.seed, args.steps)
    ws_s, ws_r, masks_s = ws[: args.pairs], ws[args.pairs :], masks[: args.pairs]
    with torch.inference_mode():
        base = generator.synthesis(ws_s, noise_mode="const")
    results, examples = {}, {}
    for part in args.parts:
        mask = masks_s[:, PARTS.index(part)]  # (N, R, R) ground truth of the target
        # The part grown by 2 px: a transfer may rightly touch the part's outline (lids, lips, shading).
        near = torch.nn.functional.max_pool2d(mask[:, None].float(), 5, stride=1, padding=2)[:, 0] > 0
        row = {"mask_area_share": float(mask.float().mean()), "near_area_share": float(near.float().mean())}
        for rule in ("simple", "sequential"):
            edited = transfer(generator, catalog, ws_s, ws_r, part, rule, args.strength)
            change = (edited - base).pow(2).sum(1)  # (N, R, R) squared L2 per pixel
            inside = (change * mask).sum((1, 2)) / change.sum((1, 2)).clamp_min(1e-12)
            near_share = (change * near).sum((1, 2)) / change.sum((1, 2)).clamp_min(1e-12)
            row[rule] = {
                "inside_share_mean": float(inside.mean()),
                "inside_share_std": float(inside.std()),
                "near_share_mean": float(near_share.mean()),
                "mean_change": float(change.mean()),
            }
            examples[(part, rule)] = edited[:6]
        results[part] = row
    report = {
        "model": args.dir.name,
        "pairs": args.pairs,
        "projection_steps": args.steps,
        "fit_mse": float(mse.mean()),
        "simple_strength": args.strength,
        "sequential": {"rho": SEQUENTIAL_RHO, "epsilon": SEQUENTIAL_EPSILON},
        "catalog": {"k": catalog.k, "labels": catalog.labels, "cluster_layer": catalog.cluster_layer},
        "parts": results,
        "seconds": round(time.perf_counter() - started, 1),
        "command": f"python -m training.style_parts locality --dir {args.dir} --pairs {args.pairs} --seed {args.seed}",
    }
    print("share of the pixel change inside the target's part mask (and within 2 px of it)")
    print(f"{'part':8s} {'mask area':>16s} {'simple':>16s} {'sequential':>16s}")
    for part, row in results.items():
        cells = [f"{row['mask_area_share']:.3f} ({row['near_area_share']:.3f})"]
        cells += [f"{row[r]['inside_share_mean']:.3f} ({row[r]['near_share_mean']:.3f})" for r in ("simple", "sequential")]
        print(f"{part:8s} " + " ".join(f"{c:>16s}" for c in cells))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "locality.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(results, args.out / "locality.png")
    _example_grid(generator, catalog, ws_s[:6], ws_r[:6], base[:6], examples, args.parts, args.out / "locality-examples.png")
    print(f"wrote {args.out}/locality.json, locality.png, locality-examples.png")


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = list(results)
    x = np.arange(len(parts))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, (area_key, share_key, title) in zip(
        axes,
        (("mask_area_share", "inside_share_mean", "inside the part"), ("near_area_share", "near_share_mean", "within 2 px of the part")),
    ):
        bars = ((-0.27, None, "even spread (area share)"), (0.0, "simple", "simple query"), (0.27, "sequential", "sequential query"))
        for offset, rule, label in bars:
            values = [results[p][area_key] if rule is None else results[p][rule][share_key] for p in parts]
            ax.bar(x + offset, values, width=0.26, label=label)
        ax.set_xticks(x, parts)
        ax.set_ylim(0, 1)
        ax.set_title(f"share of the pixel change {title}", fontsize=9)
    axes[0].set_ylabel("share (higher = more local)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _example_grid(generator, catalog, ws_s, ws_r, base, examples, parts, path: Path, scale: int = 3) -> None:
    """Rows: pairs; columns: S, R, S's part map, then one column per (part, rule)."""
    with torch.inference_mode():
        reference = generator.synthesis(ws_r, noise_mode="const")
        _, labels = cluster_maps(generator, catalog, generator.styles_from_ws(ws_s))
    columns = [ops.to_uint8_images(base), ops.to_uint8_images(reference), colorize(upsample_labels(labels, generator.resolution))]
    columns += [ops.to_uint8_images(examples[(part, rule)]) for part in parts for rule in ("simple", "sequential")]
    grid = np.concatenate([np.concatenate(list(column), 0) for column in columns], 1)
    body = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    titles = ["S", "R", "parts of S"] + [f"{part} {rule}" for part in parts for rule in ("simple", "seq.")]
    cell = body.width // len(titles)
    image = Image.new("RGB", (body.width, body.height + 16), "white")
    image.paste(body, (0, 16))
    draw = ImageDraw.Draw(image)
    for i, title in enumerate(titles):
        draw.text((i * cell + 3, 2), title, fill="black")
    image.save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    label = sub.add_parser("label", help="name catalog clusters after ground-truth parts")
    label.add_argument("--dir", type=Path, required=True, help="checkpoint directory with catalog.json")
    label.add_argument("--faces", type=int, default=64)
    label.add_argument("--steps", type=int, default=200, help="projection steps")
    label.add_argument("--seed", type=int, default=1000)
    label.set_defaults(func=cmd_label)
    loc = sub.add_parser("locality", help="measure how local eyes/mouth transfers are")
    loc.add_argument("--dir", type=Path, required=True)
    loc.add_argument("--pairs", type=int, default=100)
    loc.add_argument("--steps", type=int, default=200, help="projection steps")
    loc.add_argument("--seed", type=int, default=2000)
    loc.add_argument("--strength", type=float, default=3.0, help="lambda of the simple query")
    loc.add_argument("--parts", nargs="+", default=["eyes", "mouth"])
    loc.add_argument("--out", type=Path, default=Path("docs/img"))
    loc.set_defaults(func=cmd_locality)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    args.func(args)


if __name__ == "__main__":
    main()
