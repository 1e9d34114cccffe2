"""Train an InGAN generator on one image on CPU and export it as an ``ingan`` checkpoint (the demo model).

    python -m training.train_ingan --image rocket --size 96 --iterations 6000 --minutes 20 --out checkpoints/ingan-rocket

The image is an offline ``skimage.data`` sample (``--image rocket``, ``brick``, ...) or a path. It
is resized so its longer side is ``--size`` and both sides are multiples of the generator's
``2 ** downscales``. Training is ``deployments.ingan.ops.fit``, the same loop the service's ``fit``
jobs run: per iteration an output size drawn within the curriculum's scale range, one LSGAN
update of the multi-scale patch discriminator, one generator update (adversarial + ``--rec-weight``
x L1 reconstruction at the identity + ``--cycle-weight`` x L1 of the output mapped back to the
input's size). Progress every ``--log-every`` iterations (losses, it/s,
ETA); every ``--snapshot-every`` iterations the model is exported to ``--work`` with a retargeting
strip, so a stopped run leaves a usable checkpoint. It stops at ``--iterations`` or after
``--minutes``. At the end ``--out`` gets model.json, weights.safetensors, strip.png and a README.md
model card; ``--figure`` copies the strip elsewhere (docs/img/).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from deployments.ingan.checkpoint import WEIGHTS_FILE, export
from deployments.ingan.ingan import Generator, InGANConfig
from deployments.ingan.ops import (
    FitSettings,
    FitStopped,
    Target,
    fit,
    identity_psnr,
    resize_image,
    retarget,
    snap_size,
    strip,
    to_tensor,
    training_size,
)
from training.model_card import arch_and_command
from training.model_card import hardware as model_card_hardware

# The strip: (height scale, width scale, top-left shift, top-right shift) of the input's size.
STRIP_TARGETS = (
    (1.0, 1.0, 0.0, 0.0),
    (1.0, 0.5, 0.0, 0.0),
    (1.0, 1.5, 0.0, 0.0),
    (1.0, 2.0, 0.0, 0.0),
    (0.5, 1.0, 0.0, 0.0),
    (1.5, 1.0, 0.0, 0.0),
    (1.0, 1.0, 0.2, -0.2),
    (1.0, 1.5, -0.15, 0.15),
)


def load_image(name_or_path: str) -> np.ndarray:
    """An ``skimage.data`` sample by name, or an image file; uint8 (H, W, 3)."""
    path = Path(name_or_path)
    if path.is_file():
        return np.asarray(Image.open(path).convert("RGB"))
    from skimage import data

    loader = getattr(data, name_or_path, None)
    if loader is None:
        raise SystemExit(f"--image {name_or_path!r} is neither a file nor an skimage.data sample")
    image = np.asarray(loader())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def strip_targets(image_size: tuple[int, int], multiple: int) -> list[Target]:
    height, width = image_size
    return [Target(*snap_size(round(height * sh), round(width * sw), multiple), tl, tr) for sh, sw, tl, tr in STRIP_TARGETS]


def retarget_strip(generator: Generator, image: np.ndarray) -> np.ndarray:
    """The input, then the generator's outputs at ``STRIP_TARGETS``, side by side."""
    outputs = retarget(
        generator, to_tensor(image, next(generator.parameters()).device), strip_targets(image.shape[:2], generator.config.size_multiple)
    )
    return strip([image] + outputs)[0]


# Retargeted sizes the patch statistics are measured at: (height, width) scale of the input.
QUALITY_SCALES = ((1.0, 1.0), (1.0, 0.5), (1.0, 2.0), (0.5, 1.0), (1.5, 1.0))


def patch_distance(output: np.ndarray, image: np.ndarray, patch: int = 7, stride: int = 2) -> float:
    """Mean over the output's patches (``patch`` px, every ``stride`` px) of the RMS distance, in uint8
    levels, to the nearest patch of ``image``: low when the output is made of the image's own patches,
    the property InGAN trains for."""

    def patches(array: np.ndarray, step: int) -> torch.Tensor:
        tensor = torch.from_numpy(np.array(array, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
        return torch.nn.functional.unfold(tensor, patch, stride=step)[0].T  # (n, 3 * patch * patch)

    distances = torch.cdist(patches(output, stride), patches(image, 1)).min(dim=1).values
    return float((distances / (3 * patch * patch) ** 0.5).mean())


def retarget_quality(generator: Generator, image: np.ndarray) -> list[dict[str, Any]]:
    """Per QUALITY_SCALES size: patch distance of the InGAN output and of a plain bilinear resize."""
    height, width = image.shape[:2]
    rows = []
    for sh, sw in QUALITY_SCALES:
        target = Target(*snap_size(round(height * sh), round(width * sw), generator.config.size_multiple))
        (output,) = retarget(generator, to_tensor(image, next(generator.parameters()).device), [target])
        resized = np.asarray(Image.fromarray(image).resize((target.width, target.height), Image.BILINEAR))
        rows.append(
            {
                "scale": [sh, sw],
                "size": [target.height, target.width],
                "ingan": round(patch_distance(output, image), 2),
                "resize": round(patch_distance(resized, image), 2),
            }
        )
    return rows


def quality_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| output (height x width scale) | size | InGAN | bilinear resize |", "|---|---|---:|---:|"]
    lines += [
        f"| {r['scale'][0]:g} x {r['scale'][1]:g} | {r['size'][1]}x{r['size'][0]} | {r['ingan']:.2f} | {r['resize']:.2f} |" for r in rows
    ]
    return "\n".join(lines)


def model_card(
    manifest: dict[str, Any],
    out: Path,
    args: argparse.Namespace,
    summary: dict[str, Any],
    psnr: float,
    command: str,
    n_params: int,
    original: tuple[int, int],
    quality: list[dict[str, Any]],
) -> str:
    size = (out / WEIGHTS_FILE).stat().st_size
    height, width = manifest["image_size"]
    shapes = ", ".join(f"{sh:g}x{sw:g}" + (f" + top corners {tl:+g}/{tr:+g}" if tl or tr else "") for sh, sw, tl, tr in STRIP_TARGETS)
    return f"""# {manifest["name"]} — InGAN trained on one image, on CPU

InGAN (Shocher et al., ICCV 2019; `deployments/ingan/ingan.py`) trained on the offline sample image
`{args.image}` ({original[1]}x{original[0]}, resized to {width}x{height}). It is the `ingan` family's
demo model: `retarget` turns it into any size or aspect (sides snap to multiples of
{manifest["size_multiple"]}) or a top-corner homography in one forward pass. A small network and a
short CPU run: outputs keep the image's colours, layout and coarse structures, with the blur and
repeated-patch artefacts to expect at {width}x{height}.

![retargeting strip](strip.png)

`strip.png`: the input, then the output at (height x width scale of the input) {shapes}.

| | |
|---|---|
| data | `skimage.data.{args.image}()` (or that file), resized (Lanczos) to {width}x{height} |
| iterations | {summary["iterations"]:,} (one D and one G update each){" — stopped by the time limit" if summary["stopped"] else ""} |
| wall time | {summary["seconds"] / 60:.1f} min ({summary["it_per_s"]:.2f} it/s) |
| hardware | {model_card_hardware(args.threads)} |
| seed | {args.seed} |
| output scales in training | height and width drawn independently in [{args.scale_min:g}, {args.scale_max:g}] x the input, range grown from 1 over the first {args.curriculum:.0%} of the iterations (curriculum) |
| losses | LSGAN on a multi-scale patch discriminator (factor 1.4, {args.d_channels} base channels) + {args.rec_weight:g} x L1 reconstruction at the identity transform + {args.cycle_weight:g} x L1 of G(G(x; T); back to x's size) against x (the paper code's reconstruction); at the end D {summary["losses"]["d"]:.3f}, G adv {summary["losses"]["g_adv"]:.3f}, rec L1 {summary["losses"]["rec_l1"]:.4f}, cycle L1 {summary["losses"].get("cycle_l1", float("nan")):.4f} |
| optimiser | Adam lr {args.lr:g}, betas ({args.beta1}, 0.999), both networks |
| identity PSNR | {psnr:.2f} dB (output at the input's size against the input) |
| parameters | {n_params:,} (generator, float32; the discriminator is not shipped) |
| `{WEIGHTS_FILE}` | {size:,} bytes ({size / 1e6:.2f} MB), generator + the {width}x{height} source image |

Patch statistics of retargeted outputs: the mean RMS distance (uint8 levels) from each 7x7 patch of
an output to its nearest patch of the input (lower: the output is made of the input's own patches),
for the InGAN output and for a plain bilinear resize to the same size. The 1 x 1 row is the
generator's floor (its blur at the identity):

{quality_table(quality)}

{arch_and_command(manifest["arch"], command)}

## Limitations

- Trained at {width}x{height} for {summary["seconds"] / 60:.0f} minutes on CPU; the paper trains at up to
  256 px for 75,000 iterations on a GPU with 64 base channels. Expect soft detail.
- Not trained on homographies (as the paper's default, `max_transform_magnitude` 0): warped outputs
  come from the geometric step on entry features alone.
- No spectral norm in the generator (the paper's code has it in G and D; D has it here), and equal
  weights for the discriminator's scales (the paper's code moves a Gaussian weighting across them).
"""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="rocket", help="skimage.data sample name or an image path")
    parser.add_argument("--out", type=Path, required=True, help="output checkpoint directory")
    parser.add_argument("--name", default=None, help="model name (default: the --out directory's name)")
    parser.add_argument("--work", type=Path, default=None, help="snapshots (default: OUT/../.train-NAME)")
    parser.add_argument("--figure", type=Path, default=None, help="also write the retargeting strip here")
    parser.add_argument("--size", type=int, default=96, help="longer side of the training image")
    parser.add_argument("--base-channels", type=int, default=24, help="generator entry channels")
    parser.add_argument("--downscales", type=int, default=3, help="generator downscaling blocks")
    parser.add_argument("--resblocks", type=int, default=4, help="generator bottleneck residual blocks")
    parser.add_argument("--d-channels", type=int, default=32, help="patch discriminator base channels")
    parser.add_argument("--iterations", type=int, default=6000, help="stop after this many iterations ...")
    parser.add_argument("--minutes", type=float, default=20.0, help="... or after this much wall time")
    parser.add_argument("--scale-min", type=float, default=0.5)
    parser.add_argument("--scale-max", type=float, default=2.0)
    parser.add_argument("--curriculum", type=float, default=0.3, help="share of the iterations growing the scale range")
    parser.add_argument("--rec-weight", type=float, default=0.1)
    parser.add_argument("--cycle-weight", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--beta1", type=float, default=0.5)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--snapshot-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    name = args.name or args.out.name
    work = args.work or args.out.parent / f".train-{name}"
    torch.set_num_threads(args.threads)

    config = InGANConfig(args.base_channels, args.downscales, args.resblocks)
    original = load_image(args.image)
    image = resize_image(original, training_size(*original.shape[:2], args.size, config.size_multiple))
    settings = FitSettings(
        iterations=args.iterations,
        scale_min=args.scale_min,
        scale_max=args.scale_max,
        curriculum=args.curriculum,
        rec_weight=args.rec_weight,
        cycle_weight=args.cycle_weight,
        lr=args.lr,
        beta1=args.beta1,
        d_channels=args.d_channels,
        seed=args.seed,
    )
    deadline = time.monotonic() + 60 * args.minutes
    print(
        f"InGAN {config} on {args.image} at {image.shape[1]}x{image.shape[0]}, {args.iterations} iterations "
        f"or {args.minutes:g} min, {args.threads} thread(s)",
        flush=True,
    )

    def progress(p: dict[str, Any]) -> None:
        if p["iteration"] % args.log_every == 0 or p["iteration"] == p["iterations"]:
            losses = p["losses"]
            print(
                f"it {p['iteration']:6d}/{p['iterations']}  {p['it_per_s']:5.2f} it/s  D {losses['d']:.3f}  "
                f"G adv {losses['g_adv']:.3f}  rec {losses['rec_l1']:.4f}  cycle {losses.get('cycle_l1', 0):.4f}  size {p['size'][0]}x{p['size'][1]}  "
                f"range {p['scale_range'][0]:.2f}-{p['scale_range'][1]:.2f}  ETA {p['eta_s'] or 0:5.0f} s",
                flush=True,
            )
        if time.monotonic() > deadline:
            print(f"time limit of {args.minutes:g} min reached at iteration {p['iteration']}", flush=True)
            raise FitStopped

    def snapshot(generator: Generator, iteration: int) -> None:
        export(generator, image, work, name=name, description=f"snapshot at iteration {iteration}")
        Image.fromarray(retarget_strip(generator, image)).save(work / f"strip-{iteration:06d}.png")

    generator, summary = fit(
        image,
        config,
        settings,
        on_progress=progress,
        progress_every=min(10, args.log_every),
        on_snapshot=snapshot,
        snapshot_every=args.snapshot_every,
    )
    psnr = identity_psnr(generator, image)
    quality = retarget_quality(generator, image)
    print("patch distance (levels) InGAN vs bilinear resize:", json.dumps(quality), flush=True)
    manifest = export(
        generator,
        image,
        args.out,
        name=name,
        training=summary,
        description=(
            f"InGAN trained {summary['iterations']:,} iterations ({summary['seconds'] / 60:.0f} min, CPU) on skimage "
            f"'{args.image}' at {image.shape[1]}x{image.shape[0]}; retarget demo model"
        ),
    )
    Image.fromarray(retarget_strip(generator, image)).save(args.out / "strip.png")
    if args.figure:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / "strip.png", args.figure)
    command = "python -m training.train_ingan " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    n_params = sum(p.numel() for p in generator.parameters())
    (args.out / "README.md").write_text(model_card(manifest, args.out, args, summary, psnr, command, n_params, original.shape[:2], quality))
    print(
        f"wrote {args.out}/ ({(args.out / WEIGHTS_FILE).stat().st_size:,} bytes, {summary['iterations']} iterations, "
        f"identity PSNR {psnr:.2f} dB)",
        flush=True,
    )
    return manifest


if __name__ == "__main__":
    main()
