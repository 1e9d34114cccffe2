"""Train a small StyleGAN2 on procedural cartoon faces and export it as a `style` demo checkpoint.

    python -m training.train_stylegan2 --out checkpoints/style-faces --minutes 80

Data: ``training.data.faces.render_faces`` draws a fresh batch every step (an endless data set, so
no augmentation is needed and the discriminator cannot memorise). Losses: non-saturating logistic
GAN loss, lazy R1 penalty on real images every ``--r1-every`` steps, style mixing regularisation;
Adam (0, 0.99) as in StyleGAN2; an exponential moving average of the generator (``g_ema``) is what
ships. Path-length regularisation is left out: it doubles the generator step cost on a CPU and
the demo does not need its smoother W.

Progress goes to stdout every ``--log-every`` steps (step, images seen, images/s, losses, ETA); a
sample grid and a resumable snapshot (``--work``/snapshot.pt, port layout: g, d, g_ema, optimisers,
latent_avg) are written every ``--snapshot-every`` steps. At the end ``g_ema`` is written in the
port's ``.pt`` format and converted by ``deployments.style.checkpoint.convert_rosinality`` into
``--out`` (model.json, weights.safetensors), with ``samples.png`` and a README.md model card.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from deployments.style.checkpoint import WEIGHTS_FILE, convert_rosinality, save_rosinality
from deployments.style.ops import to_uint8_images
from deployments.style.stylegan2 import Generator, StyleGAN2Config
from training.data.faces import render_faces
from training.discriminator import Discriminator
from training.model_card import arch_and_command
from training.model_card import hardware as model_card_hardware


def sample_ws(generator: Generator, batch: int, mixing_prob: float, rng: torch.Generator) -> torch.Tensor:
    """W+ latents (batch, n_latent, style_dim); with prob ``mixing_prob`` two w's split at a random layer.

    Mixing stops adjacent layers from assuming they share one w, which keeps each layer's styles
    about its own scale: the locality Editing-in-Style relies on.
    """
    z = torch.randn(2, batch, generator.style_dim, generator=rng)
    w1, w2 = generator.mapping(z[0]), generator.mapping(z[1])
    n_latent = generator.n_latent
    if torch.rand((), generator=rng).item() < mixing_prob:
        cut = int(torch.randint(1, n_latent, (), generator=rng))
    else:
        cut = n_latent
    layer = torch.arange(n_latent).view(1, -1, 1)
    return torch.where(layer < cut, w1.unsqueeze(1), w2.unsqueeze(1))


def d_r1_penalty(discriminator: Discriminator, real: torch.Tensor) -> torch.Tensor:
    """Mean over images of ||grad_x D(x)||^2 at real images (the R1 regulariser)."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


@torch.no_grad()
def accumulate(ema: Generator, model: Generator, decay: float) -> None:
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1 - decay)


@torch.no_grad()
def sample_grid(generator: Generator, z: torch.Tensor, path: Path, columns: int = 8) -> None:
    images = to_uint8_images(generator.synthesis(generator.broadcast_w(generator.mapping(z)), noise_mode="const"))
    n, h, w, _ = images.shape
    rows = math.ceil(n / columns)
    grid = np.full((rows * h, columns * w, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
    Image.fromarray(grid).save(path)


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = torch.Generator().manual_seed(args.seed)
    config = StyleGAN2Config(
        resolution=args.resolution, style_dim=args.style_dim, n_mlp=args.n_mlp, channel_multiplier=2, channel_max=args.channel_max
    )
    g = Generator(config).set_fused_modconv(False)  # same maths, much faster backward on CPU
    d = Discriminator(config)
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    # Lazy regularisation rescales Adam's step and momentum for the steps R1 runs on (StyleGAN2 appendix B).
    d_ratio = args.r1_every / (args.r1_every + 1)
    g_optim = torch.optim.Adam(g.parameters(), lr=args.lr, betas=(0.0, 0.99))
    d_optim = torch.optim.Adam(d.parameters(), lr=args.lr * d_ratio, betas=(0.0, 0.99**d_ratio))
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
    fixed_z = torch.randn(32, config.style_dim, generator=torch.Generator().manual_seed(args.seed + 1))
    ema_decay = 0.5 ** (args.batch / (args.ema_kimg * 1000))
    budget_s = args.minutes * 60
    started = time.perf_counter() - spent
    log = {"d": 0.0, "g": 0.0, "r1": 0.0, "real": 0.0, "fake": 0.0}
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
        sample_grid(g_ema, fixed_z, work / f"samples-{step:06d}.png")

    if args.export_only:  # export the snapshot as it is (e.g. while a run still trains into it)
        if not (args.resume and step):
            raise SystemExit("--export-only needs --resume and an existing WORK/snapshot.pt")
        return {"g_ema": g_ema, "config": config, "step": step, "seen": seen, "seconds": spent, "fixed_z": fixed_z}
    while step < args.steps and time.perf_counter() - started < budget_s:
        real = render_faces(args.batch, config.resolution, generator=rng).images

        # Discriminator: real up, fake down.
        g.requires_grad_(False), d.requires_grad_(True)
        with torch.no_grad():
            fake = g.synthesis(sample_ws(g, args.batch, args.mixing, rng), noise_mode="random")
        real_logit, fake_logit = d(real), d(fake)
        d_loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
        d_optim.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optim.step()
        if step % args.r1_every == 0:
            r1 = d_r1_penalty(d, real[: max(4, args.batch // 2)])
            d_optim.zero_grad(set_to_none=True)
            (args.r1_gamma / 2 * r1 * args.r1_every).backward()
            d_optim.step()
            log["r1"] = r1.item()

        # Generator: make D call fakes real.
        g.requires_grad_(True), d.requires_grad_(False)
        fake = g.synthesis(sample_ws(g, args.batch, args.mixing, rng), noise_mode="random")
        g_loss = F.softplus(-d(fake)).mean()
        g_optim.zero_grad(set_to_none=True)
        g_loss.backward()
        g_optim.step()
        accumulate(g_ema, g, ema_decay)

        step += 1
        seen += args.batch
        window_seen += args.batch
        log.update(d=d_loss.item(), g=g_loss.item(), real=real_logit.mean().item(), fake=fake_logit.mean().item())
        if step % args.log_every == 0:
            elapsed = time.perf_counter() - started
            rate = window_seen / (time.perf_counter() - window_started)
            left = min(budget_s - elapsed, (args.steps - step) * args.batch / max(rate, 1e-9))
            print(
                f"step {step:6d}  imgs {seen:8,d}  {rate:6.1f} img/s  D {log['d']:.3f}  G {log['g']:.3f}  "
                f"R1 {log['r1']:.3f}  D(real) {log['real']:+.2f}  D(fake) {log['fake']:+.2f}  "
                f"elapsed {elapsed / 60:5.1f} min  left {max(left, 0) / 60:5.1f} min",
                flush=True,
            )
            window_started, window_seen = time.perf_counter(), 0
        if step % args.snapshot_every == 0:
            save_snapshot()
    save_snapshot()
    return {"g_ema": g_ema, "config": config, "step": step, "seen": seen, "seconds": time.perf_counter() - started, "fixed_z": fixed_z}


def model_card(manifest: dict, out: Path, args: argparse.Namespace, run: dict, command: str, n_params: int) -> str:
    size = (out / WEIGHTS_FILE).stat().st_size
    hardware = model_card_hardware(args.threads)
    return f"""# {manifest["name"]} — StyleGAN2 trained on procedural cartoon faces

A small StyleGAN2 ({manifest["resolution"]} px) trained from scratch on the procedural faces of
`training/data/faces.py` (random skin, hair, eyes, nose, mouth and background shapes and colours).
It is the `style` family's demo model: its samples are cartoon faces whose parts Editing-in-Style
can find (`catalog`) and swap (`local_transfer`). It has never seen a photograph: real photos
project onto it only roughly.

![samples](samples.png)

| | |
|---|---|
| data | `render_faces` at {args.resolution}x{args.resolution}, a fresh batch of {args.batch} per step (endless) |
| steps | {run["step"]:,} ({run["seen"]:,} images shown to D) |
| wall time | {run["seconds"] / 60:.1f} min |
| hardware | {hardware} |
| seed | {args.seed} |
| losses | non-saturating logistic, lazy R1 (gamma {args.r1_gamma}, every {args.r1_every} steps), style mixing p={args.mixing} |
| optimiser | Adam lr {args.lr}, betas (0, 0.99); g_ema half-life {args.ema_kimg} kimg |
| parameters | {n_params:,} (generator, float32) |
| `{WEIGHTS_FILE}` | {size:,} bytes ({size / 1e6:.2f} MB) |

{arch_and_command(manifest["arch"], command)}

`samples.png`: `g_ema` on 32 fixed z's (seed {args.seed + 1}), no truncation, constant noise.
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output checkpoint directory (model.json, weights, card)")
    parser.add_argument("--name", default=None, help="model name (default: the out directory's name)")
    parser.add_argument("--work", default=None, help="snapshots and sample grids (default: OUT/../.train-NAME)")
    parser.add_argument("--resume", action="store_true", help="continue from WORK/snapshot.pt if it exists")
    parser.add_argument("--export-only", action="store_true", help="with --resume: export the snapshot's g_ema, no training")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--style-dim", type=int, default=128, help="length of z and w")
    parser.add_argument("--n-mlp", type=int, default=4, help="mapping network depth")
    parser.add_argument("--channel-max", type=int, default=64, help="cap on channels per resolution")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1_000_000, help="stop after this many steps ...")
    parser.add_argument("--minutes", type=float, default=60.0, help="... or after this much wall time")
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--r1-gamma", type=float, default=0.05)
    parser.add_argument("--r1-every", type=int, default=16)
    parser.add_argument("--mixing", type=float, default=0.9, help="style mixing probability")
    parser.add_argument("--ema-kimg", type=float, default=5.0, help="g_ema half-life in thousands of images")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--snapshot-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    name = args.name or args.out.name
    args.work = args.work or str(args.out.parent / f".train-{name}")

    run = train(args)
    g_ema: Generator = run["g_ema"]
    latent_avg = g_ema.mean_latent(4096, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "g_ema.pt"
        save_rosinality(g_ema, src, latent_avg=latent_avg)
        manifest = convert_rosinality(
            src,
            args.out,
            name,
            description=(
                f"StyleGAN2 {args.resolution}px trained on procedural cartoon faces "
                f"({run['step']:,} steps, {run['seconds'] / 60:.0f} min); Editing-in-Style demo model"
            ),
        )
    sample_grid(g_ema, run["fixed_z"], args.out / "samples.png")
    command = "python -m training.train_stylegan2 " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    n_params = sum(p.numel() for p in g_ema.parameters())
    (args.out / "README.md").write_text(model_card(manifest, args.out, args, run, command, n_params))
    print(f"wrote {args.out}/ ({(args.out / WEIGHTS_FILE).stat().st_size:,} bytes, {run['step']} steps)", flush=True)
    return manifest


if __name__ == "__main__":
    main()
