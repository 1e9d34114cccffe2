"""How local is Neural Collage's label collage on the demo model? Region masks and the measurement.

    python -m training.collage_locality --model-dir checkpoints/collage-faces --write-masks \\
        --json docs/collage-locality.json --figure docs/img/collage-locality.png

Region masks: the generator draws faces roughly where the renderer puts them, so "the eyes" of an
image of the model are where the renderer's eyes usually are: the mean ground-truth part mask over
many rendered species faces, kept where at least ``--mask-threshold`` of them have the part. With
``--write-masks`` they are written as ``<model-dir>/masks/<part>.png`` (the demo uploads them).

Measurement, for every base seed and every (base species, target species) pair with different
species, and for several block sets (all blocks, each block alone): the label collage that turns
the eyes region into the target species (ops.label_collage, the same function the service runs),
then

* ``inside`` = share of the total pixel change (sum over RGB of |edited - base|) inside the mask
  (the mask's area share is what a change spread evenly would give);
* ``near`` = the same share inside the mask dilated by 2 px (3x3 convolutions after the last CBN
  smear the boundary by a pixel or two);
* ``toward_target`` = inside the mask, distance(edited, target image) / distance(base, target
  image), where the target image is the same z drawn entirely as the target species: below 1 means
  the region moved toward the target species.

With ``--project N`` it also projects N held-out rendered faces (a seed range training never draws)
with every species as a candidate and reports how often the chosen class is the rendered species,
and the mean reconstruction error (ops.project, the service's `project` op).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from deployments.collage import ops
from deployments.collage.checkpoint import MANIFEST_FILE, WEIGHTS_FILE, load_generator
from training.data.faces import PARTS, render_species_faces

DEFAULT_BLOCK_SETS = {"all": None, "block0": [0], "block1": [1], "block2": [2]}


def region_masks(resolution: int, parts=("eyes", "mouth"), n: int = 2048, threshold: float = 0.1, seed: int = 0) -> dict[str, np.ndarray]:
    """Per part, a uint8 mask (0/255) of where the renderer puts that part in at least ``threshold`` of faces."""
    batch = render_species_faces(n, resolution, seed=seed)
    out = {}
    for part in parts:
        frequency = batch.masks[:, PARTS.index(part)].float().mean(0)
        out[part] = ((frequency >= threshold).numpy() * 255).astype(np.uint8)
    return out


def measure(
    generator: torch.nn.Module, mask: torch.Tensor, seeds: list[int], blocks: list[int] | None, truncation: float = 1.0
) -> dict[str, float]:
    """Locality figures of label collages of ``mask`` over all species pairs and seeds (see module doc)."""
    n_classes = generator.num_classes
    pairs = [(a, b) for a, b in itertools.permutations(range(n_classes), 2)]
    z = ops.truncated_latents(seeds, generator.z_dim, truncation)
    near_mask = F.max_pool2d(mask[None, None], 5, stride=1, padding=2)[0, 0] > 0
    inside, near, toward = [], [], []
    uses = torch.zeros(1, generator.n_blocks, dtype=torch.bool)
    uses[0, blocks if blocks is not None else slice(None)] = True
    with torch.inference_mode():
        for base_class, target_class in pairs:
            base = F.one_hot(torch.full((len(seeds),), base_class), n_classes).float()
            target = F.one_hot(torch.full((len(seeds),), target_class), n_classes).float()
            masks = [mask[None]] * len(seeds)
            mixture = ops.spatial_class_weights(base, masks, [target[:1]] * len(seeds), [torch.ones(1)] * len(seeds))
            edited = ops.label_collage(generator, z, base, mixture, uses.expand(len(seeds), -1), truncation)
            plain = generator(z, base, truncation)
            whole_target = generator(z, target, truncation)
            change = (edited - plain).abs().sum(1)  # (N, R, R)
            total = change.flatten(1).sum(1).clamp(min=1e-8)
            inside += (change[:, mask > 0.5].sum(1) / total).tolist()
            near += (change[:, near_mask].sum(1) / total).tolist()
            region = mask > 0.5
            d_edit = (edited - whole_target).abs().sum(1)[:, region].mean(1)
            d_base = (plain - whole_target).abs().sum(1)[:, region].mean(1).clamp(min=1e-8)
            toward += (d_edit / d_base).tolist()
    return {
        "inside": float(np.mean(inside)),
        "near": float(np.mean(near)),
        "toward_target": float(np.median(toward)),
        "mask_area": float((mask > 0.5).float().mean()),
        "edits": len(inside),
    }


def projection_accuracy(generator: torch.nn.Module, n: int, steps: int, seed: int = 10**6) -> dict[str, float]:
    """Project n held-out rendered faces with all classes as candidates; share whose class is right."""
    faces = render_species_faces(n, generator.resolution, seed=seed)
    candidates = [list(range(generator.num_classes))] * n
    fit = ops.project(generator, faces.images, candidates, steps=steps)
    correct = (fit["class_index"] == faces.species).float()
    return {
        "faces": n,
        "steps": steps,
        "class_accuracy": float(correct.mean()),
        "mean_error": float(fit["error"].mean()),
        "chance": 1 / generator.num_classes,
    }


def figure(generator: torch.nn.Module, mask: torch.Tensor, path: Path, seeds: list[int], classes: list[str], scale: int = 4) -> None:
    """Rows = seeds (base species = seed mod K); per other species: the collage (all blocks) and its
    change map (|edited - base| summed over RGB, normalised per map; the region outlined in magenta)."""
    from PIL import ImageDraw

    n_classes = generator.num_classes
    outline = ((F.max_pool2d(mask[None, None], 3, 1, 1)[0] - mask[None]) > 0).expand(3, -1, -1).clone()
    outline[1] = False  # magenta: red + blue
    rows, labels = [], []
    with torch.inference_mode():
        for seed in seeds:
            z = ops.truncated_latents([seed], generator.z_dim)
            base_class = seed % n_classes
            base = F.one_hot(torch.tensor([base_class]), n_classes).float()
            plain = generator(z, base)
            row, label = [plain[0]], [f"{classes[base_class]} (base)"]
            for target_class in range(n_classes):
                if target_class == base_class:
                    continue
                target = F.one_hot(torch.tensor([target_class]), n_classes).float()
                mixture = ops.spatial_class_weights(base, [mask[None]], [target], [torch.ones(1)])
                edited = ops.label_collage(generator, z, base, mixture, torch.ones(1, generator.n_blocks, dtype=torch.bool))
                change = (edited - plain).abs().sum(1, keepdim=True)[0]
                heat = ((change / change.max().clamp(min=1e-8)) * 2 - 1).expand(3, -1, -1).masked_fill(outline, 1.0)
                row += [edited[0], heat]
                label += [f"-> {classes[target_class]}", "change"]
            rows.append(torch.cat(row, 2))
            labels.append(label)
    tile, strip = generator.resolution * scale, 14
    canvas = Image.new("RGB", (len(labels[0]) * tile, len(rows) * (tile + strip)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (row, label) in enumerate(zip(rows, labels)):
        pixels = ((row.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        image = Image.fromarray(pixels)
        canvas.paste(image.resize((image.width * scale, image.height * scale), Image.NEAREST), (0, r * (tile + strip) + strip))
        for c, text in enumerate(label):
            draw.text((c * tile + 3, r * (tile + strip) + 1), text, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("checkpoints/collage-faces"))
    parser.add_argument("--part", default="eyes", choices=[p for p in PARTS if p != "background"])
    parser.add_argument("--seeds", type=int, default=32, help="base seeds per species pair")
    parser.add_argument(
        "--mask-threshold",
        type=float,
        default=0.1,
        help="a pixel is in a part's region when at least this share of rendered faces has the part there",
    )
    parser.add_argument("--write-masks", action="store_true", help="write <model-dir>/masks/{eyes,mouth}.png")
    parser.add_argument("--project", type=int, default=0, metavar="N", help="also measure class recovery by projecting N held-out faces")
    parser.add_argument("--project-steps", type=int, default=150)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--figure", type=Path, help="write an example grid PNG here")
    args = parser.parse_args(argv)

    manifest = json.loads((args.model_dir / MANIFEST_FILE).read_text())
    generator = load_generator((args.model_dir / WEIGHTS_FILE).read_bytes(), manifest)
    resolution = generator.resolution
    masks = region_masks(resolution, threshold=args.mask_threshold)
    if args.part not in masks:
        masks.update(region_masks(resolution, parts=(args.part,), threshold=args.mask_threshold))
    if args.write_masks:
        (args.model_dir / "masks").mkdir(exist_ok=True)
        for part, mask in masks.items():
            Image.fromarray(mask).save(args.model_dir / "masks" / f"{part}.png")
        print(f"wrote {', '.join(sorted(masks))} masks to {args.model_dir / 'masks'}")
    mask = torch.from_numpy(masks[args.part]).float() / 255
    seeds = list(range(1000, 1000 + args.seeds))
    results = {}
    print(
        f"label_collage of the {args.part} region ({100 * float(mask.mean()):.1f}% of the image) on {manifest['name']}, "
        f"{args.seeds} seeds x {generator.num_classes * (generator.num_classes - 1)} species pairs"
    )
    print(f"{'blocks':8s} {'inside':>8s} {'near':>8s} {'toward':>8s}")
    for name, blocks in DEFAULT_BLOCK_SETS.items():
        if blocks is not None and max(blocks) >= generator.n_blocks:
            continue
        results[name] = measure(generator, mask, seeds, blocks)
        r = results[name]
        print(f"{name:8s} {r['inside']:8.3f} {r['near']:8.3f} {r['toward_target']:8.3f}")
    projection = None
    if args.project:
        projection = projection_accuracy(generator, args.project, args.project_steps)
        print(
            f"projection of {args.project} held-out faces ({args.project_steps} steps, all classes as candidates): "
            f"class right {100 * projection['class_accuracy']:.0f}% (chance {100 * projection['chance']:.0f}%), "
            f"mean error {projection['mean_error']:.4f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "model": manifest["name"],
                    "part": args.part,
                    "seeds": args.seeds,
                    "classes": manifest.get("classes"),
                    "results": results,
                    "projection": projection,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.json}")
    if args.figure:
        figure(generator, mask, args.figure, seeds=list(range(4)), classes=list(manifest["classes"]))
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
