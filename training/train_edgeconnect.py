"""Train a small EdgeConnect (edge generator + inpainting generator) on CPU and export it as the
`inpaint` family's demo checkpoint.

    python -m training.train_edgeconnect --out checkpoints/edgeconnect-demo --work /work/train-edgeconnect --minutes 30

Data: ``training.data.inpaint_data`` draws a fresh batch every step (an endless data set): procedural
cartoon faces and random crops of the offline ``skimage.data`` photos (``TRAIN_PHOTOS``; the
held-out photos and face seeds are never drawn), free-form / rectangle hole masks, and Canny
(sigma 2) edges of the whole image as the ground-truth edges, as the official training does.

Both generators (the served ``deployments/inpaint/edgeconnect.py`` modules) train in one loop,
each against its own PatchGAN discriminator (spectral norm, 70x70-style, narrower):

    edge G     input (gray with the hole white, GT edges outside the hole, mask); its completed edges
               (prediction inside the hole, GT outside) go to D_edge with the gray image (the
               official EdgeModel gives D its whole raw output instead); losses: non-saturating GAN
               + ``--fm-weight`` x feature matching (L1 between D_edge's features of real and
               completed pairs) + ``--edge-bce`` x a class-balanced BCE to the GT edges inside the
               hole (not in the paper; speeds up the short CPU run). So no loss reaches its output
               outside the hole: serve its models with ``params.edge_map = "composited"``
    inpaint G  input (image with the hole white, edges): the GT Canny edges (official stage 2) or,
               with probability ``--p-pred-edges``, the edge generator's detached completed edges
               (the joint stage), so it also learns from the edges it is served; losses: L1 with the
               hole weighted ``--hole-weight`` + ``--adv-weight`` x non-saturating GAN on the merged
               image (D_image). The official perceptual and style (VGG-19) losses are left out: no
               pretrained VGG weights can be fetched here.

Adam betas (``--beta1``, 0.9), D learning rate = ``--d2g-lr`` x G's as in the official config.
Progress every ``--log-every`` steps (images/s, losses, ETA); a resumable snapshot and a sample grid
on held-out images (rows: masked input, completed edges, output, ground truth; run through
``deployments.inpaint.ops.complete`` with ``edge_map="composited"``, the path trained here, as the
service runs it for that param) every ``--snapshot-every`` steps.
At the end ``deployments.inpaint.checkpoint.export`` writes ``--out`` (model.json,
weights.safetensors), with ``samples.png`` and a README.md model card.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils import spectral_norm

from deployments.inpaint.checkpoint import WEIGHTS_FILE, export
from deployments.inpaint.edgeconnect import EdgeConnect, EdgeConnectConfig
from deployments.inpaint.ops import complete, edge_inputs, image_inputs, to_gray
from training.data.inpaint_data import (
    EDGE_SIGMA,
    HELDOUT_FACE_SEED,
    HELDOUT_PHOTOS,
    MAX_HOLE,
    MIN_HOLE,
    TRAIN_PHOTOS,
    heldout_set,
    random_masks,
    service_edges,
    train_edges,
    training_images,
)
from training.model_card import arch_and_command
from training.model_card import hardware as model_card_hardware
from training.progress import LossWindow, seconds_left


class PatchDiscriminator(nn.Module):
    """The official EdgeConnect discriminator, narrower: five 4x4 convs (stride 2, 2, 2, 1, 1), widths
    d, 2d, 4d, 8d, 1, LeakyReLU 0.2, spectral norm on every conv. Returns (patch logits, features)."""

    def __init__(self, in_channels: int, width: int = 32) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width, 8 * width)
        layers, c = [], in_channels
        for i, w in enumerate(widths):
            layers.append(
                nn.Sequential(spectral_norm(nn.Conv2d(c, w, 4, stride=2 if i < 3 else 1, padding=1, bias=False)), nn.LeakyReLU(0.2, True))
            )
            c = w
        layers.append(nn.Sequential(spectral_norm(nn.Conv2d(c, 1, 4, stride=1, padding=1, bias=False))))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return x, features[:-1]


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """The official init: normal(0, 0.02) conv weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def nsgan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


def balanced_bce(prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """BCE over the pixels where ``weight`` is 1, edge and non-edge pixels weighted to equal totals."""
    pos = (target * weight).sum().clamp(min=1.0)
    neg = ((1 - target) * weight).sum().clamp(min=1.0)
    per_pixel = F.binary_cross_entropy(prob.clamp(1e-6, 1 - 1e-6), target, reduction="none")
    return ((per_pixel * target * weight).sum() / pos + (per_pixel * (1 - target) * weight).sum() / neg) / 2


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def sample_grid(model: EdgeConnect, images: torch.Tensor, masks: torch.Tensor, path: Path, scale: int = 2) -> None:
    """Columns = held-out images; rows = masked input, completed edges (hole red-tinted), output,
    ground truth. Runs ``ops.complete`` with Canny outside the hole and ``edge_map="composited"`` (the
    path this trainer trains), as the service runs it for that param."""
    was_training = model.training
    model.eval()
    edges = service_edges(images, masks)
    merged, completed = complete(model, images, masks, edges, edge_map="composited")
    model.train(was_training)
    masked = images * (1 - masks) + masks
    edge_rgb = (1 - completed).repeat(1, 3, 1, 1)
    edge_rgb = edge_rgb * (1 - 0.25 * masks * torch.tensor([0.0, 1.0, 1.0]).view(1, 3, 1, 1))
    rows = [to_uint8(x) for x in (masked, edge_rgb, merged, images)]
    n, r, gap = len(images), images.shape[-1], 2
    grid = np.full((len(rows) * (r + gap) + gap, n * (r + gap) + gap, 3), 255, np.uint8)
    for row, tiles in enumerate(rows):
        for col, tile in enumerate(tiles):
            top, left = gap + row * (r + gap), gap + col * (r + gap)
            grid[top : top + r, left : left + r] = tile
    img = Image.fromarray(grid)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def train(args: argparse.Namespace) -> dict:
    if not 0 <= args.seed < HELDOUT_FACE_SEED:
        raise SystemExit(f"--seed must be in [0, {HELDOUT_FACE_SEED}) (held-out face seeds start there)")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = torch.Generator().manual_seed(args.seed)
    config = EdgeConnectConfig(channels=args.channels, residual_blocks=args.blocks)
    model = EdgeConnect(config)
    init_weights(model)
    d_edge, d_image = PatchDiscriminator(2, args.d_width), PatchDiscriminator(3, args.d_width)
    init_weights(d_edge), init_weights(d_image)
    betas = (args.beta1, 0.9)
    opt_e = torch.optim.Adam(model.edge.parameters(), lr=args.lr, betas=betas)
    opt_i = torch.optim.Adam(model.inpaint.parameters(), lr=args.lr, betas=betas)
    opt_de = torch.optim.Adam(d_edge.parameters(), lr=args.lr * args.d2g_lr, betas=betas)
    opt_di = torch.optim.Adam(d_image.parameters(), lr=args.lr * args.d2g_lr, betas=betas)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    snapshot = work / "snapshot.pt"
    step, seen, spent = 0, 0, 0.0
    if args.resume and snapshot.exists():
        state = torch.load(snapshot, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"]), d_edge.load_state_dict(state["d_edge"]), d_image.load_state_dict(state["d_image"])
        for opt, key in ((opt_e, "opt_e"), (opt_i, "opt_i"), (opt_de, "opt_de"), (opt_di, "opt_di")):
            opt.load_state_dict(state[key])
        step, seen, spent = int(state["step"]), int(state["seen"]), float(state["seconds"])
        rng.set_state(state["rng"])
        print(f"resumed from {snapshot} at step {step} ({seen:,} images, {spent / 60:.1f} min)", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"EdgeConnect C={config.channels} blocks={config.residual_blocks}: {n_params:,} params "
        f"({n_params * 4 / 1e6:.2f} MB float32; edge {sum(p.numel() for p in model.edge.parameters()):,}, "
        f"inpaint {sum(p.numel() for p in model.inpaint.parameters()):,}); D {sum(p.numel() for p in d_edge.parameters()):,} "
        f"+ {sum(p.numel() for p in d_image.parameters()):,} params; {args.size} px, batch {args.batch}",
        flush=True,
    )
    preview = heldout_set(args.preview, args.size, seed=0)
    budget_s = args.minutes * 60
    started = time.perf_counter() - spent
    log = {k: 0.0 for k in ("de", "ge_adv", "ge_fm", "ge_bce", "di", "gi_adv", "gi_l1_hole", "gi_l1_valid", "edge_f1")}
    window = LossWindow()

    def save_snapshot() -> None:
        state = {
            "model": model.state_dict(),
            "d_edge": d_edge.state_dict(),
            "d_image": d_image.state_dict(),
            "opt_e": opt_e.state_dict(),
            "opt_i": opt_i.state_dict(),
            "opt_de": opt_de.state_dict(),
            "opt_di": opt_di.state_dict(),
            "step": step,
            "seen": seen,
            "seconds": time.perf_counter() - started,
            "rng": rng.get_state(),
            "config": json.dumps(config.to_dict()),
        }
        torch.save(state, work / "snapshot.tmp")
        os.replace(work / "snapshot.tmp", snapshot)
        sample_grid(model, preview.images, preview.masks, work / f"samples-{step:06d}.png")

    if args.export_only:
        if not (args.resume and step):
            raise SystemExit("--export-only needs --resume and an existing WORK/snapshot.pt")
        return {"model": model.eval(), "config": config, "step": step, "seen": seen, "seconds": spent, "log": log, "preview": preview}
    model.train()
    while step < args.steps and time.perf_counter() - started < budget_s:
        images = training_images(args.batch, args.size, rng, face_fraction=args.face_fraction)
        masks = random_masks(args.batch, args.size, rng)
        edges = train_edges(images, EDGE_SIGMA)
        gray = to_gray(images)
        use_pred = torch.rand(args.batch, 1, 1, 1, generator=rng) < args.p_pred_edges

        # --- edge generator and its discriminator ---
        edge_prob = model.edge(edge_inputs(gray, edges, masks))
        completed = edge_prob * masks + edges * (1 - masks)
        real_pair, fake_pair = torch.cat([gray, edges], 1), torch.cat([gray, completed], 1)
        d_edge.requires_grad_(True)
        real_logit, _ = d_edge(real_pair)
        fake_logit, _ = d_edge(fake_pair.detach())
        de_loss = (nsgan(real_logit, True) + nsgan(fake_logit, False)) / 2
        opt_de.zero_grad(set_to_none=True)
        de_loss.backward()
        opt_de.step()
        d_edge.requires_grad_(False)
        fake_logit, fake_feats = d_edge(fake_pair)
        with torch.no_grad():
            _, real_feats = d_edge(real_pair)
        ge_adv = nsgan(fake_logit, True)
        ge_fm = sum(F.l1_loss(f, r) for f, r in zip(fake_feats, real_feats))
        ge_bce = balanced_bce(edge_prob, edges, masks)
        ge_loss = args.edge_adv_weight * ge_adv + args.fm_weight * ge_fm + args.edge_bce * ge_bce
        opt_e.zero_grad(set_to_none=True)
        ge_loss.backward()
        opt_e.step()

        # --- inpainting generator and its discriminator ---
        edge_in = torch.where(use_pred, completed.detach(), edges)
        output = model.inpaint(image_inputs(images, edge_in, masks))
        merged = output * masks + images * (1 - masks)
        d_image.requires_grad_(True)
        real_logit_i, _ = d_image(images)
        fake_logit_i, _ = d_image(merged.detach())
        di_loss = (nsgan(real_logit_i, True) + nsgan(fake_logit_i, False)) / 2
        opt_di.zero_grad(set_to_none=True)
        di_loss.backward()
        opt_di.step()
        d_image.requires_grad_(False)
        fake_logit_i, _ = d_image(merged)
        gi_adv = nsgan(fake_logit_i, True)
        diff = (output - images).abs().mean(1, keepdim=True)
        gi_l1_hole = (diff * masks).sum() / masks.sum().clamp(min=1)
        gi_l1_valid = (diff * (1 - masks)).sum() / (1 - masks).sum().clamp(min=1)
        gi_loss = args.hole_weight * gi_l1_hole + gi_l1_valid + args.adv_weight * gi_adv
        opt_i.zero_grad(set_to_none=True)
        gi_loss.backward()
        opt_i.step()

        step += 1
        seen += args.batch
        with torch.no_grad():
            pred = (edge_prob > 0.5).float() * masks
            tp = (pred * edges).sum()
            f1 = float(2 * tp / (pred.sum() + (edges * masks).sum()).clamp(min=1))
        values = dict(
            de=de_loss.item(),
            ge_adv=ge_adv.item(),
            ge_fm=ge_fm.item(),
            ge_bce=ge_bce.item(),
            di=di_loss.item(),
            gi_adv=gi_adv.item(),
            gi_l1_hole=gi_l1_hole.item(),
            gi_l1_valid=gi_l1_valid.item(),
            edge_f1=f1,
        )
        window.add(values, args.batch)
        if step % args.log_every == 0:
            log, rate = window.report()
            elapsed = time.perf_counter() - started
            left = seconds_left(budget_s, elapsed, args.steps - step, args.batch, rate)
            print(
                f"step {step:6d}  imgs {seen:8,d}  {rate:5.1f} img/s  "
                f"edge: D {log['de']:.3f} G {log['ge_adv']:.3f} FM {log['ge_fm']:.3f} BCE {log['ge_bce']:.3f} "
                f"F1(hole) {log['edge_f1']:.3f}  image: D {log['di']:.3f} G {log['gi_adv']:.3f} "
                f"L1 hole {log['gi_l1_hole']:.4f} valid {log['gi_l1_valid']:.4f}  "
                f"elapsed {elapsed / 60:5.1f} min  left {left / 60:5.1f} min",
                flush=True,
            )
        if step % args.snapshot_every == 0:
            save_snapshot()
    save_snapshot()
    return {
        "model": model.eval(),
        "config": config,
        "step": step,
        "seen": seen,
        "seconds": time.perf_counter() - started,
        "log": log,
        "preview": preview,
    }


def model_card(manifest: dict, out: Path, args: argparse.Namespace, run: dict, command: str, n_params: int) -> str:
    size = (out / WEIGHTS_FILE).stat().st_size
    hardware = model_card_hardware(args.threads)
    log = run["log"]
    rate = run["seen"] / max(run["seconds"], 1e-9)
    return f"""# {manifest["name"]} — a small EdgeConnect trained on CPU

EdgeConnect (Nazeri et al. 2019) — an edge generator that completes the Canny edge map inside the
hole, then an inpainting generator that fills the hole following those edges — in the official
layout (`deployments/inpaint/edgeconnect.py`), much narrower than the official models
(C = {manifest["arch"]["channels"]} instead of 64, {manifest["arch"]["residual_blocks"]} residual blocks
instead of 8) and trained from scratch for {run["seconds"] / 60:.0f} minutes on a CPU at
{args.size}x{args.size}. It is the `inpaint` family's demo model: it exercises the loader, the
`inpaint` op and user-drawn edges end to end, and fills small holes plausibly on cartoon faces and
simple textures. It is not a substitute for the official Places2 / CelebA / Paris weights.

![samples](samples.png)

`samples.png`: held-out images (faces with seeds from {HELDOUT_FACE_SEED}, crops of
{", ".join(f"`{p}`" for p in HELDOUT_PHOTOS)}), never seen in training. Rows: masked input (hole
white), completed edges (black on white; the hole tinted red), output (the service's
`ops.complete`, Canny sigma {EDGE_SIGMA:g} outside the hole, `edge_map` "composited"), ground truth.

Trained on composited edges: its edge generator's output counts only inside the hole (outside,
the inpainting generator got Canny, and no loss reached the edge generator), unlike the official
models, whose edge generator learns the whole map. Its `model.json` therefore sets
`"param_defaults": {{"inpaint": {{"edge_map": "composited"}}}}`: it is served on the path it was trained
and measured on unless a request asks for `"generated"` (the official inference), which hands the
inpainting generator this model's untrained edges outside the hole.

| | |
|---|---|
| data | a fresh batch of {args.batch} per step at {args.size} px: ~{args.face_fraction:.0%} procedural faces (`render_faces` / `render_species_faces`), the rest random crops (scale 0.5-1.5, h-flip) of the offline `skimage.data` photos {", ".join(f"`{p}`" for p in TRAIN_PHOTOS)} |
| held out | photos {", ".join(f"`{p}`" for p in HELDOUT_PHOTOS)} (and `cat`, a copy of `chelsea`); face seeds >= {HELDOUT_FACE_SEED} (`training/data/inpaint_data.py`) |
| masks | free-form brush strokes and/or rectangles, hole {MIN_HOLE:.0%}-{MAX_HOLE:.0%} of the image |
| edges | Canny sigma {EDGE_SIGMA:g} of the whole image as ground truth (official training) |
| steps | {run["step"]:,} steps of both generators ({run["seen"]:,} images) |
| wall time | {run["seconds"] / 60:.1f} min ({rate:.1f} images/s on average) |
| hardware | {hardware} |
| seed | {args.seed} |
| edge G losses | nsgan x {args.edge_adv_weight:g} + feature matching x {args.fm_weight:g} + balanced BCE in the hole x {args.edge_bce:g}; at the end (mean of the last {args.log_every} steps) D {log["de"]:.3f}, G adv {log["ge_adv"]:.3f}, FM {log["ge_fm"]:.3f}, BCE {log["ge_bce"]:.3f}, edge F1 in the hole {log["edge_f1"]:.3f} |
| inpaint G losses | L1 (hole x {args.hole_weight:g}, valid x 1) + nsgan x {args.adv_weight:g} on the merged image; edges in: GT Canny, or (p = {args.p_pred_edges:g}) the edge G's completed edges; at the end L1 hole {log["gi_l1_hole"]:.4f}, valid {log["gi_l1_valid"]:.4f}, G adv {log["gi_adv"]:.3f}, D {log["di"]:.3f} |
| optimiser | Adam lr {args.lr:g} (D x {args.d2g_lr:g}), betas ({args.beta1}, 0.9) |
| discriminators | PatchGAN (5 convs 4x4, spectral norm), width {args.d_width}; edge D on (gray, edges), image D on RGB (not shipped) |
| parameters | {n_params:,} (both generators, float32) |
| `{WEIGHTS_FILE}` | {size:,} bytes ({size / 1e6:.2f} MB) |

{arch_and_command(manifest["arch"], command)}

Quality on held-out images (PSNR / SSIM inside the hole, against `skimage.restoration.inpaint_biharmonic`):
`python -m training.inpaint_quality --model-dir {out} --edge-map composited` (see `training/README.md`).

## Limitations

- {args.size} px training and a {run["seconds"] / 60:.0f}-minute CPU run: fills are blurry, large holes
  come out smeared, and fine texture (fur, gravel) is not reproduced. Larger images work (the ops
  pad to multiples of 4) but holes much larger than ~20 px are outside what it learned.
- No perceptual / style (VGG-19) losses, which the official models use: no pretrained VGG weights
  were available offline. Expect smoother, less textured fills than the paper.
- The edge generator was trained without spectral norm on its own weights (the official one uses
  it); the discriminators have it.
- Training data: procedural cartoon faces and {len(TRAIN_PHOTOS)} sample photos (crops); no real
  faces, scenes or objects beyond those.
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output checkpoint directory (model.json, weights, card)")
    parser.add_argument("--name", default="edgeconnect-demo", help="model name")
    parser.add_argument("--work", default=None, help="snapshots and sample grids (default: OUT/../.train-NAME)")
    parser.add_argument("--resume", action="store_true", help="continue from WORK/snapshot.pt if it exists")
    parser.add_argument("--export-only", action="store_true", help="with --resume: export the snapshot, no training")
    parser.add_argument("--channels", type=int, default=24, help="generator width C (2C, 4C deeper)")
    parser.add_argument("--blocks", type=int, default=6, help="residual blocks per generator")
    parser.add_argument("--d-width", type=int, default=32, help="discriminator base width")
    parser.add_argument("--size", type=int, default=64, help="training image side (multiple of 4)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--face-fraction", type=float, default=0.5, help="share of procedural faces in a batch")
    parser.add_argument("--steps", type=int, default=10_000_000, help="stop after this many steps ...")
    parser.add_argument("--minutes", type=float, default=30.0, help="... or after this much wall time")
    parser.add_argument("--lr", type=float, default=2e-4, help="generators' Adam learning rate")
    parser.add_argument("--d2g-lr", type=float, default=0.1, help="discriminator / generator learning-rate ratio")
    parser.add_argument("--beta1", type=float, default=0.5)
    parser.add_argument("--fm-weight", type=float, default=10.0, help="edge G feature-matching weight")
    parser.add_argument("--edge-adv-weight", type=float, default=1.0, help="edge G adversarial weight")
    parser.add_argument("--edge-bce", type=float, default=1.0, help="edge G balanced-BCE weight (0 = off)")
    parser.add_argument("--hole-weight", type=float, default=6.0, help="L1 weight inside the hole")
    parser.add_argument("--adv-weight", type=float, default=0.1, help="inpaint G adversarial weight")
    parser.add_argument(
        "--p-pred-edges", type=float, default=0.5, help="probability that the inpaint G gets the edge G's completed edges instead of GT"
    )
    parser.add_argument("--preview", type=int, default=12, help="held-out images in the sample grids")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--snapshot-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.size % 4:
        parser.error("--size must be a multiple of 4")
    args.work = args.work or str(args.out.parent / f".train-{args.name}")

    run = train(args)
    model: EdgeConnect = run["model"]
    manifest = export(
        model,
        args.out,
        name=args.name,
        description=(
            f"EdgeConnect C={run['config'].channels}, {run['config'].residual_blocks} blocks, trained {run['seconds'] / 60:.0f} min "
            f"on CPU at {args.size}px ({run['seen']:,} images: procedural faces + skimage sample-photo crops); inpaint demo model"
        ),
        # trained on composited edge maps (as the official training is): served that way unless a request says otherwise
        param_defaults={"inpaint": {"edge_map": "composited"}},
    )
    sample_grid(model, run["preview"].images, run["preview"].masks, args.out / "samples.png")
    command = "python -m training.train_edgeconnect " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    n_params = sum(p.numel() for p in model.parameters())
    (args.out / "README.md").write_text(model_card(manifest, args.out, args, run, command, n_params))
    print(
        f"wrote {args.out}/ ({(args.out / WEIGHTS_FILE).stat().st_size:,} bytes, {run['step']} steps, {run['seen']:,} images)", flush=True
    )
    return manifest


if __name__ == "__main__":
    main()
