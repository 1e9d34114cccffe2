"""Train the Soft-Gated Warping-GAN (deployments/warp/networks.py) on procedural persons.

    python -m training.train_warp --out checkpoints/warp-persons --minutes 30
    python -m training.train_warp --out checkpoints/warp-persons-nowarp --minutes 30 --no-warping   # the ablation

Every step renders a fresh batch of people, each in two poses (training/data/persons.py), so the
target image is known. Losses, summed into one generator step:

- parser: pixel-wise softmax cross-entropy of the target parsing (20 LIP classes);
- aligner: L1 between the condition parsing warped by the predicted grid and the true target
  parsing (the geometric matchers learn to align parsings);
- renderer, given the true target parsing and the aligner's grid (detached): L1 to the target image,
  LSGAN adversarial loss of a conditional patch discriminator (image + target pose + parsing), and
  feature matching on that discriminator's layers — the perceptual-style term, with no downloaded VGG.

Progress lines go to stdout; snapshots (WORK/snapshot.pt) allow ``--resume``; the output directory
gets model.json, weights.safetensors, samples.png and a model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from deployments.warp.checkpoint import Example
from deployments.warp.checkpoint import export as export_checkpoint
from deployments.warp.networks import NUM_PARSING_CLASSES, WarpConfig, WarpingGAN
from deployments.warp.pose import heatmap_sigma, pose_heatmaps
from training.data import persons
from training.model_card import arch_and_command, command_line, hardware
from training.progress import LossWindow, seconds_left

WEIGHTS_FILE = "weights.safetensors"
HELDOUT_SEED = 10**9  # evaluation pairs come from render_pose_pairs(seed=HELDOUT_SEED + i); training uses its own stream


@dataclasses.dataclass
class PoseTransferBatch:
    """Model-ready tensors of condition/target pairs: images in [-1, 1], parsings one-hot, poses as heatmaps."""

    image: torch.Tensor  # (n, 3, H, W)
    parsing: torch.Tensor  # (n, 20, H, W)
    pose: torch.Tensor  # (n, 18, H, W)
    target_pose: torch.Tensor  # (n, 18, H, W)
    target_labels: torch.Tensor  # (n, H, W) long
    target_parsing: torch.Tensor  # (n, 20, H, W)
    target_image: torch.Tensor  # (n, 3, H, W)


def to_batch(condition: persons.PersonBatch, target: persons.PersonBatch) -> PoseTransferBatch:
    height, width = condition.images.shape[-2:]
    sigma = heatmap_sigma(height)
    one_hot = lambda labels: F.one_hot(labels, NUM_PARSING_CLASSES).permute(0, 3, 1, 2).float()  # noqa: E731
    return PoseTransferBatch(
        image=condition.images * 2 - 1,
        parsing=one_hot(condition.parsing),
        pose=pose_heatmaps(condition.keypoints, condition.visible, height, width, sigma),
        target_pose=pose_heatmaps(target.keypoints, target.visible, height, width, sigma),
        target_labels=target.parsing,
        target_parsing=one_hot(target.parsing),
        target_image=target.images * 2 - 1,
    )


def training_batch(n: int, height: int, width: int, generator: torch.Generator) -> PoseTransferBatch:
    return to_batch(*persons.render_pose_pairs(n, height, width, generator=generator))


def heldout_batch(n: int, height: int, width: int, start: int = 0) -> PoseTransferBatch:
    """Pairs ``start`` .. ``start + n - 1`` of the held-out set, one seed each (the same at every batch size)."""
    pairs = [persons.render_pose_pairs(1, height, width, seed=HELDOUT_SEED + i) for i in range(start, start + n)]
    return to_batch(persons.concat([c for c, _ in pairs]), persons.concat([t for _, t in pairs]))


class ConditionalPatchDiscriminator(nn.Module):
    """(image, target pose, target parsing) -> patch logits and the features of each layer."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        widths = [3 + 18 + NUM_PARSING_CLASSES, width, width * 2, width * 4]
        self.layers = nn.ModuleList(
            [
                nn.Sequential(spectral_norm(nn.Conv2d(a, b, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, True))
                for a, b in zip(widths, widths[1:])
            ]
        )
        self.head = spectral_norm(nn.Conv2d(widths[-1], 1, 3, padding=1))

    def forward(self, image: torch.Tensor, pose: torch.Tensor, parsing: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x, features = torch.cat([image, pose, parsing], dim=1), []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return self.head(x), features


def generator_losses(
    model: WarpingGAN, discriminator: ConditionalPatchDiscriminator, batch: PoseTransferBatch, weights: argparse.Namespace
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """-> (total generator loss, its terms, the rendered image)."""
    logits = model.parser(batch.image, batch.parsing, batch.target_pose)
    parse_ce = F.cross_entropy(logits, batch.target_labels)
    grid, _, _ = model.aligner(batch.parsing, batch.target_parsing)
    aligned = F.grid_sample(batch.parsing, grid, align_corners=False)
    align_l1 = F.l1_loss(aligned, batch.target_parsing)
    rendered = model.renderer(
        batch.image, batch.parsing, batch.target_pose, batch.target_parsing, grid.detach(), batch.target_pose - batch.pose
    )
    fake_logits, fake_features = discriminator(rendered, batch.target_pose, batch.target_parsing)
    with torch.no_grad():
        _, real_features = discriminator(batch.target_image, batch.target_pose, batch.target_parsing)
    adversarial = ((fake_logits - 1) ** 2).mean()
    matching = sum(F.l1_loss(f, r) for f, r in zip(fake_features, real_features)) / len(fake_features)
    l1 = F.l1_loss(rendered, batch.target_image)
    total = parse_ce + weights.align_weight * align_l1 + weights.l1_weight * l1 + adversarial + weights.fm_weight * matching
    terms = {"parse_ce": parse_ce.item(), "align_l1": align_l1.item(), "l1": l1.item(), "g_adv": adversarial.item(), "fm": matching.item()}
    return total, terms, rendered


@torch.no_grad()
def transfer(model: WarpingGAN, batch: PoseTransferBatch) -> dict[str, torch.Tensor]:
    """Pose transfer as served: the parser's own target parsing, no ground truth."""
    return model(batch.image, batch.parsing, batch.pose, batch.target_pose)


def sample_sheet(model: WarpingGAN, batch: PoseTransferBatch, path: Path) -> None:
    """Rows of condition | target keypoints | predicted parsing | output | ground truth."""
    from PIL import Image

    out = transfer(model.eval(), batch)
    model.train()
    skeleton = (batch.target_pose.amax(1, keepdim=True) * 2 - 1).expand(-1, 3, -1, -1)
    columns = [batch.image, skeleton, persons.colour_parsing(out["target_parsing"].argmax(1)) * 2 - 1, out["image"], batch.target_image]
    n, _, h, w = batch.image.shape
    sheet = torch.ones(3, n * (h + 2) + 2, len(columns) * (w + 2) + 2)
    for row in range(n):
        for col, images in enumerate(columns):
            sheet[:, 2 + row * (h + 2) : 2 + row * (h + 2) + h, 2 + col * (w + 2) : 2 + col * (w + 2) + w] = (images[row] + 1) / 2
    pixels = (sheet.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    image = Image.fromarray(pixels)
    image.resize((image.width * 2, image.height * 2), Image.NEAREST).save(path)


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = torch.Generator().manual_seed(args.seed)
    config = WarpConfig(
        height=args.height,
        width=args.width,
        parser_channels=args.parser_channels,
        parser_blocks=args.parser_blocks,
        matcher_channels=args.matcher_channels,
        renderer_channels=args.renderer_channels,
        renderer_blocks=args.renderer_blocks,
        warping=not args.no_warping,
    )
    model, discriminator = WarpingGAN(config), ConditionalPatchDiscriminator(args.d_width)
    opt_g = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    work = Path(args.work or Path(args.out) / ".work")
    work.mkdir(parents=True, exist_ok=True)
    snapshot = work / "snapshot.pt"
    step, seen, spent = 0, 0, 0.0
    if args.resume and snapshot.exists():
        state = torch.load(snapshot, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"]), discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"]), opt_d.load_state_dict(state["opt_d"])
        step, seen, spent = int(state["step"]), int(state["seen"]), float(state["seconds"])
        rng.set_state(state["rng"])
        print(f"resumed from {snapshot} at step {step} ({seen:,} pairs, {spent / 60:.1f} min)", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"Warping-GAN {config.height}x{config.width} warping={config.warping}: {n_params:,} params "
        f"({n_params * 4 / 1e6:.2f} MB float32); batch {args.batch}",
        flush=True,
    )
    preview = heldout_batch(args.preview, args.height, args.width)
    if args.export_only:
        if not step:
            raise SystemExit("--export-only needs --resume and an existing snapshot")
        return {
            "model": model.eval(),
            "config": config,
            "step": step,
            "seen": seen,
            "seconds": spent,
            "log": dict(state.get("log", {})),
            "preview": preview,
            "n_params": n_params,
        }
    started = time.perf_counter() - spent
    budget_s = args.minutes * 60

    def save_snapshot() -> None:
        state = {
            "model": model.state_dict(),
            "discriminator": discriminator.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "step": step,
            "seen": seen,
            "seconds": time.perf_counter() - started,
            "rng": rng.get_state(),
            "log": log,
        }
        torch.save(state, work / "snapshot.tmp")
        os.replace(work / "snapshot.tmp", snapshot)
        sample_sheet(model, preview, work / f"samples-{step:06d}.png")

    window = LossWindow()
    log: dict[str, float] = {}
    model.train()
    while step < args.steps and time.perf_counter() - started < budget_s:
        batch = training_batch(args.batch, args.height, args.width, rng)
        total, terms, rendered = generator_losses(model, discriminator, batch, args)
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
        real_logits, _ = discriminator(batch.target_image, batch.target_pose, batch.target_parsing)
        fake_logits, _ = discriminator(rendered.detach(), batch.target_pose, batch.target_parsing)
        d_loss = ((real_logits - 1) ** 2).mean() / 2 + (fake_logits**2).mean() / 2
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        terms["d"] = d_loss.item()
        step, seen = step + 1, seen + args.batch
        window.add(terms, args.batch)
        if step % args.log_every == 0:
            log, rate = window.report()
            elapsed = time.perf_counter() - started
            left = seconds_left(budget_s, elapsed, args.steps - step, args.batch, rate)
            print(
                f"step {step:6d}  pairs {seen:8,d}  {rate:5.1f} pairs/s  "
                + "  ".join(f"{k} {v:.4f}" for k, v in log.items())
                + f"  elapsed {elapsed / 60:5.1f} min  left {left / 60:5.1f} min",
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
        "n_params": n_params,
    }


def examples_of(n: int, height: int, width: int) -> list[Example]:
    """The first ``n`` held-out pairs as shipped examples: condition image, parsing, keypoints, target keypoints."""

    def points(keypoints: torch.Tensor, visible: torch.Tensor) -> list:
        return [[round(float(x), 2), round(float(y), 2)] if seen else None for (x, y), seen in zip(keypoints.tolist(), visible.tolist())]

    examples = []
    for i in range(n):
        condition, target = persons.render_pose_pairs(1, height, width, seed=HELDOUT_SEED + i)
        image = (condition.images[0].permute(1, 2, 0) * 255).round().byte().numpy()
        examples.append(
            Example(
                image,
                condition.parsing[0].byte().numpy(),
                points(condition.keypoints[0], condition.visible[0]),
                points(target.keypoints[0], target.visible[0]),
            )
        )
    return examples


def export(run: dict, out: Path, name: str, command: str, threads: int, n_examples: int = 4) -> dict:
    """model.json + weights.safetensors + examples/ (deployments/warp/checkpoint.py) + samples.png + README.md (model card)."""
    config: WarpConfig = run["config"]
    description = (
        f"Soft-Gated Warping-GAN {config.height}x{config.width}{'' if config.warping else ' without the warping block (ablation)'}, "
        f"trained {run['seconds'] / 60:.0f} min on procedural persons ({run['seen']:,} pairs)"
    )
    manifest = export_checkpoint(run["model"], out, name, description, examples_of(n_examples, config.height, config.width))
    sample_sheet(run["model"], run["preview"], out / "samples.png")
    losses = ", ".join(f"{k} {v:.4f}" for k, v in run["log"].items()) or "see the training log"
    (out / "README.md").write_text(f"""# {name}

{description}.

- Data: `training/data/persons.py` people, each rendered in two random poses per step (fresh every
  step); the held-out pairs of the evaluation (`HELDOUT_SEED` onward) are never drawn in training.
- Steps: {run["step"]:,}; pairs seen: {run["seen"]:,}; wall time {run["seconds"] / 60:.1f} min on {hardware(threads)}.
- Last logged losses: {losses}.
- Parameters: {run["n_params"]:,} ({(out / WEIGHTS_FILE).stat().st_size / 1e6:.1f} MB safetensors).
- `examples/`: {n_examples} held-out condition images with their parsing; `model.json` lists their keypoints and a
  target pose each, so `pose_transfer` takes them without keypoints or parsing.

![held-out samples: condition | target pose | predicted parsing | output | ground truth](samples.png)

{arch_and_command(manifest["arch"], command)}
""")
    return manifest


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output checkpoint directory")
    parser.add_argument("--name", help="model name (default: the output directory's name)")
    parser.add_argument("--work", help="snapshots and sample sheets (default OUT/.work)")
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-time budget")
    parser.add_argument("--steps", type=int, default=10**9, help="step budget")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--parser-channels", type=int, default=16)
    parser.add_argument("--parser-blocks", type=int, default=4)
    parser.add_argument("--matcher-channels", type=int, default=16)
    parser.add_argument("--renderer-channels", type=int, default=24)
    parser.add_argument("--renderer-blocks", type=int, default=3)
    parser.add_argument("--d-width", type=int, default=32)
    parser.add_argument("--no-warping", action="store_true", help="the ablation: the renderer without the soft-gated warping block")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--align-weight", type=float, default=5.0)
    parser.add_argument("--l1-weight", type=float, default=10.0)
    parser.add_argument("--fm-weight", type=float, default=10.0)
    parser.add_argument("--preview", type=int, default=6, help="held-out pairs in the sample sheets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--snapshot-every", type=int, default=500)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--export-only", action="store_true", help="with --resume: write the checkpoint of the snapshot, no training")
    parser.add_argument("--trained-with", help="with --export-only: the command that trained the snapshot, for the model card")
    args = parser.parse_args(argv)
    run = train(args)
    command = command_line("training.train_warp", argv, args.trained_with)
    manifest = export(run, args.out, args.name or args.out.name, command, args.threads)
    print(f"wrote {args.out}/ ({(args.out / WEIGHTS_FILE).stat().st_size:,} bytes, {run['step']} steps)", flush=True)
    return {"manifest": manifest, **run}


if __name__ == "__main__":
    main()
