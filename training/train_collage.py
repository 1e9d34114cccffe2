"""Train a small class-conditional SNGAN-projection generator on procedural cartoon species faces
and export it as the `collage` family's demo checkpoint.

    python -m training.train_collage --out checkpoints/collage-faces --minutes 50

Data: ``training.data.faces.render_species_faces`` draws a fresh labelled batch every step (an
endless data set); the classes are the renderer's :data:`SPECIES`, which differ in head, eye and
mouth shape, so Neural Collage's spatial class-conditional BN has local class differences to
edit (e.g. one species' eyes on another's face). Generator: the served
``deployments/collage/sngan.py`` module (categorical conditional BN) at 32 px; discriminator:
``training/projection_discriminator.py`` (spectral norm, projection). Hinge loss, Adam with betas
(0, 0.9) and separate learning rates for G and D, ``--n-dis`` D steps per G step. An exponential
moving average of the generator's weights (``g_ema``) is what ships; its batch-norm running
statistics are recomputed at the end (and for every sample grid) as a cumulative average over
``--bn-batches`` batches run in train mode, then it is put in eval mode (deterministic).

Progress goes to stdout every ``--log-every`` steps (step, images seen by D, images/s, losses,
ETA); a sample grid (a row per species, the same z in a column) and a resumable snapshot
(``--work``/snapshot.pt) every ``--snapshot-every`` steps. At the end ``g_ema`` goes through
``deployments.collage.checkpoint.export`` into ``--out`` (model.json, weights.safetensors), with
``samples.png`` and a README.md model card.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
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

from deployments.collage.checkpoint import WEIGHTS_FILE, export
from deployments.collage.sngan import CategoricalConditionalBatchNorm, SNGANConfig, SNGANGenerator
from training.data.faces import SPECIES, render_species_faces
from training.model_card import arch_and_command
from training.model_card import hardware as model_card_hardware
from training.projection_discriminator import ProjectionDiscriminator

RESOLUTION = 32


def init_generator(g: SNGANGenerator) -> None:
    """The SNGAN initialisation: Xavier uniform, gain sqrt(2) for the blocks' 3x3 convs, 1 elsewhere."""
    for name, m in g.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            gain = math.sqrt(2) if (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and "block" in name) else 1.0
            nn.init.xavier_uniform_(m.weight, gain=gain)
            nn.init.zeros_(m.bias)


def _bn_layers(g: SNGANGenerator) -> list[nn.Module]:
    return [m for m in g.modules() if isinstance(m, (CategoricalConditionalBatchNorm, nn.BatchNorm2d))]


@torch.no_grad()
def recompute_bn_stats(g: SNGANGenerator, batches: int, batch: int, seed: int) -> None:
    """Set every BN's running mean/var to the population statistics of its input over ``batches``
    batches (uniform classes), the generator running in train mode (batch statistics, as in
    training); then eval mode. A cumulative average, not the training-time momentum average,
    which for an EMA generator would describe other weights."""
    rng = torch.Generator().manual_seed(seed)
    layers = _bn_layers(g)
    sums = {id(m): [0.0, 0.0, 0] for m in layers}

    def hook(module, inputs):
        x = inputs[0].double()
        acc = sums[id(module)]
        acc[0] = acc[0] + x.sum(dim=(0, 2, 3))
        acc[1] = acc[1] + x.square().sum(dim=(0, 2, 3))
        acc[2] += x.shape[0] * x.shape[2] * x.shape[3]

    handles = [m.register_forward_pre_hook(hook) for m in layers]
    g.train()
    try:
        for _ in range(batches):
            z = torch.randn(batch, g.z_dim, generator=rng)
            y = torch.randint(g.num_classes, (batch,), generator=rng)
            g(z, F.one_hot(y, g.num_classes).float())
    finally:
        for h in handles:
            h.remove()
    for m in layers:
        s, sq, count = sums[id(m)]
        mean = s / count
        var = (sq / count - mean.square()).clamp(min=0) * count / max(count - 1, 1)  # unbiased, as BN keeps
        if isinstance(m, CategoricalConditionalBatchNorm):
            m.avg_mean.copy_(mean.float()), m.avg_var.copy_(var.float())
        else:
            m.running_mean.copy_(mean.float()), m.running_var.copy_(var.float())
            m.num_batches_tracked.fill_(batches)
    g.eval()


@torch.no_grad()
def accumulate(ema: SNGANGenerator, model: SNGANGenerator, decay: float) -> None:
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1 - decay)


@torch.no_grad()
def sample_grid(g: SNGANGenerator, z: torch.Tensor, path: Path, scale: int = 2) -> None:
    """Rows = classes (species), columns = the fixed z's; ``g`` in eval mode."""
    k, columns = g.num_classes, len(z)
    zs = z.repeat(k, 1)
    y = torch.arange(k).repeat_interleave(columns)
    images = g(zs, F.one_hot(y, k).float())
    images = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    r, gap = images.shape[1], 2
    grid = np.full((k * (r + gap) + gap, columns * (r + gap) + gap, 3), 255, np.uint8)
    for i, image in enumerate(images):
        row, col = divmod(i, columns)
        top, left = gap + row * (r + gap), gap + col * (r + gap)
        grid[top : top + r, left : left + r] = image
    img = Image.fromarray(grid)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = torch.Generator().manual_seed(args.seed)
    k = len(SPECIES)
    config = SNGANConfig(z_dim=args.z_dim, n_classes=k, ch=args.ch, bottom_width=4, channel_multipliers=(8, 4, 2, 1))
    assert config.resolution == RESOLUTION
    g = SNGANGenerator(config)
    init_generator(g)
    d = ProjectionDiscriminator(k, ch=args.d_ch)
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    g_optim = torch.optim.Adam(g.parameters(), lr=args.lr_g, betas=(args.beta1, args.beta2))
    d_optim = torch.optim.Adam(d.parameters(), lr=args.lr_d, betas=(args.beta1, args.beta2))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    snapshot = work / "snapshot.pt"
    step, seen, spent = 0, 0, 0.0
    if args.resume and snapshot.exists():
        state = torch.load(snapshot, map_location="cpu", weights_only=True)
        g.load_state_dict(state["g"]), d.load_state_dict(state["d"]), g_ema.load_state_dict(state["g_ema"])
        g_optim.load_state_dict(state["g_optim"]), d_optim.load_state_dict(state["d_optim"])
        step, seen, spent = int(state["step"]), int(state["seen"]), float(state["seconds"])
        rng.set_state(state["rng"])
        print(f"resumed from {snapshot} at step {step} ({seen:,} images, {spent / 60:.1f} min)", flush=True)
    n_params = sum(p.numel() for p in g.parameters())
    print(
        f"G {n_params:,} params ({n_params * 4 / 1e6:.2f} MB float32), D {sum(p.numel() for p in d.parameters()):,} "
        f"params; classes {', '.join(SPECIES)}",
        flush=True,
    )
    fixed_z = torch.randn(8, config.z_dim, generator=torch.Generator().manual_seed(args.seed + 1))
    ema_decay = 0.5 ** (args.batch / (args.ema_kimg * 1000))
    budget_s = args.minutes * 60
    started = time.perf_counter() - spent
    log = {"d": 0.0, "g": 0.0, "real": 0.0, "fake": 0.0}
    window_started, window_seen = time.perf_counter(), 0

    def save_snapshot() -> None:
        state = {
            "g": g.state_dict(),
            "d": d.state_dict(),
            "g_ema": g_ema.state_dict(),
            "g_optim": g_optim.state_dict(),
            "d_optim": d_optim.state_dict(),
            "step": step,
            "seen": seen,
            "seconds": time.perf_counter() - started,
            "rng": rng.get_state(),
            "config": json.dumps(config.to_dict()),
        }
        torch.save(state, work / "snapshot.tmp")
        os.replace(work / "snapshot.tmp", snapshot)
        preview = copy.deepcopy(g_ema)
        recompute_bn_stats(preview, 8, args.batch, args.seed + 2)
        sample_grid(preview, fixed_z, work / f"samples-{step:06d}.png")

    def fake_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(n, config.z_dim, generator=rng)
        y = torch.randint(k, (n,), generator=rng)
        return g(z, F.one_hot(y, k).float()), y

    if args.export_only:
        if not (args.resume and step):
            raise SystemExit("--export-only needs --resume and an existing WORK/snapshot.pt")
        return {"g_ema": g_ema, "config": config, "step": step, "seen": seen, "seconds": spent, "fixed_z": fixed_z, "log": log}
    while step < args.steps and time.perf_counter() - started < budget_s:
        # Discriminator (hinge): real (with their species) up, fakes (with theirs) down.
        g.requires_grad_(False), d.requires_grad_(True)
        for _ in range(args.n_dis):
            real = render_species_faces(args.batch, RESOLUTION, generator=rng)
            with torch.no_grad():
                fake, y_fake = fake_batch(args.batch)
            real_logit, fake_logit = d(real.images, real.species), d(fake, y_fake)
            d_loss = F.relu(1 - real_logit).mean() + F.relu(1 + fake_logit).mean()
            d_optim.zero_grad(set_to_none=True)
            d_loss.backward()
            d_optim.step()
            seen += args.batch
            window_seen += args.batch

        # Generator: raise D's score of its fakes for their species.
        g.requires_grad_(True), d.requires_grad_(False)
        fake, y_fake = fake_batch(args.batch)
        g_loss = -d(fake, y_fake).mean()
        g_optim.zero_grad(set_to_none=True)
        g_loss.backward()
        g_optim.step()
        accumulate(g_ema, g, ema_decay)

        step += 1
        log.update(d=d_loss.item(), g=g_loss.item(), real=real_logit.mean().item(), fake=fake_logit.mean().item())
        if step % args.log_every == 0:
            elapsed = time.perf_counter() - started
            rate = window_seen / (time.perf_counter() - window_started)
            left = min(budget_s - elapsed, (args.steps - step) * args.batch * args.n_dis / max(rate, 1e-9))
            print(
                f"step {step:6d}  imgs {seen:8,d}  {rate:6.1f} img/s  D {log['d']:.3f}  G {log['g']:+.3f}  "
                f"D(real) {log['real']:+.2f}  D(fake) {log['fake']:+.2f}  "
                f"elapsed {elapsed / 60:5.1f} min  left {max(left, 0) / 60:5.1f} min",
                flush=True,
            )
            window_started, window_seen = time.perf_counter(), 0
        if step % args.snapshot_every == 0:
            save_snapshot()
    save_snapshot()
    return {
        "g_ema": g_ema,
        "config": config,
        "step": step,
        "seen": seen,
        "seconds": time.perf_counter() - started,
        "fixed_z": fixed_z,
        "log": log,
    }


def model_card(manifest: dict, out: Path, args: argparse.Namespace, run: dict, command: str, n_params: int) -> str:
    size = (out / WEIGHTS_FILE).stat().st_size
    hardware = model_card_hardware(args.threads)
    log = run["log"]
    rate = run["seen"] / max(run["seconds"], 1e-9)
    return f"""# {manifest["name"]} — SNGAN-projection trained on procedural cartoon species

A small class-conditional SNGAN-projection generator ({manifest["resolution"]} px, {len(SPECIES)}
classes) trained from scratch on the procedural faces of `training/data/faces.py`
(`render_species_faces`). The classes are cartoon species — {", ".join(f"`{s}`" for s in SPECIES)} —
that differ in head shape (round / wide with pointed ears / tall and tapered / very wide and flat),
eyes (small dots / narrow almond slits / huge lidless circles / bulging, thick-lidded, on top of
the head) and mouth (big grin / small / tiny beak / very wide thin line); skin, hair, colours and
background are random and shared by all species. It is the `collage` family's demo model: its
categorical conditional BN layers are what Neural Collage's spatial class-conditional BN (sCBN)
edits, e.g. a `cat`'s eyes on a `round` face. It has never seen a photograph.

![samples](samples.png)

`samples.png`: a row per class ({", ".join(SPECIES)}, top to bottom), a column per fixed z (seed
{args.seed + 1}; the same z across a column), `g_ema` in eval mode.

| | |
|---|---|
| data | `render_species_faces` at {RESOLUTION}x{RESOLUTION}, a fresh labelled batch of {args.batch} per D step (endless), species uniform |
| steps | {run["step"]:,} G steps, {args.n_dis} D step(s) each ({run["seen"]:,} real images shown to D) |
| wall time | {run["seconds"] / 60:.1f} min ({rate:.0f} real images/s on average) |
| hardware | {hardware} |
| seed | {args.seed} |
| losses | hinge; at the end D {log["d"]:.3f}, G {log["g"]:+.3f}, D(real) {log["real"]:+.2f}, D(fake) {log["fake"]:+.2f} (last step) |
| optimiser | Adam lr G {args.lr_g}, D {args.lr_d}, betas ({args.beta1}, {args.beta2}); g_ema half-life {args.ema_kimg} kimg |
| discriminator | ResNet, spectral norm, global sum pooling, linear + projection (class embedding), width {args.d_ch}x(2,2,2,2) (not shipped) |
| BN statistics | recomputed for `g_ema`: cumulative average over {args.bn_batches} batches of {args.batch} in train mode |
| parameters | {n_params:,} (generator, float32) |
| `{WEIGHTS_FILE}` | {size:,} bytes ({size / 1e6:.2f} MB) |

{arch_and_command(manifest["arch"], command)}

## Limitations

- 32 px and a short CPU training run: samples are blurry and sometimes malformed; small features
  (the cat's slit pupils, the owl's beak) are only hinted at.
- Only the four procedural species; no real faces or animals. Class interpolation and spatial class
  maps are outside the training distribution (one class per image), as for any Neural Collage model.
- Hair, colours and background are not controllable except through z.
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output checkpoint directory (model.json, weights, card)")
    parser.add_argument("--name", default="collage-faces", help="model name")
    parser.add_argument("--work", default=None, help="snapshots and sample grids (default: OUT/../.train-NAME)")
    parser.add_argument("--resume", action="store_true", help="continue from WORK/snapshot.pt if it exists")
    parser.add_argument("--export-only", action="store_true", help="with --resume: export the snapshot's g_ema, no training")
    parser.add_argument("--ch", type=int, default=48, help="generator base width (widths ch x (8, 4, 2, 1))")
    parser.add_argument("--d-ch", type=int, default=32, help="discriminator base width (widths d_ch x (2, 2, 2, 2))")
    parser.add_argument("--z-dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--n-dis", type=int, default=1, help="D steps per G step")
    parser.add_argument("--steps", type=int, default=1_000_000, help="stop after this many G steps ...")
    parser.add_argument("--minutes", type=float, default=50.0, help="... or after this much wall time")
    parser.add_argument("--lr-g", type=float, default=2e-4)
    parser.add_argument("--lr-d", type=float, default=4e-4)
    parser.add_argument("--beta1", type=float, default=0.0)
    parser.add_argument("--beta2", type=float, default=0.9)
    parser.add_argument("--ema-kimg", type=float, default=10.0, help="g_ema half-life in thousands of images")
    parser.add_argument("--bn-batches", type=int, default=100, help="batches for g_ema's BN statistics at export")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--snapshot-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.work = args.work or str(args.out.parent / f".train-{args.name}")

    run = train(args)
    g_ema: SNGANGenerator = run["g_ema"]
    recompute_bn_stats(g_ema, args.bn_batches, args.batch, args.seed + 3)
    manifest = export(
        g_ema,
        args.out,
        name=args.name,
        classes=list(SPECIES),
        description=(
            f"SNGAN-projection {RESOLUTION}px, {len(SPECIES)} procedural cartoon species ({', '.join(SPECIES)}), "
            f"{run['step']:,} steps, {run['seconds'] / 60:.0f} min on CPU; Neural Collage demo model"
        ),
    )
    sample_grid(g_ema, run["fixed_z"], args.out / "samples.png")
    command = "python -m training.train_collage " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    n_params = sum(p.numel() for p in g_ema.parameters())
    (args.out / "README.md").write_text(model_card(manifest, args.out, args, run, command, n_params))
    print(
        f"wrote {args.out}/ ({(args.out / WEIGHTS_FILE).stat().st_size:,} bytes, {run['step']} steps, {run['seen']:,} images)", flush=True
    )
    return manifest


if __name__ == "__main__":
    main()
