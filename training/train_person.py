"""Train the disentangled person generator (deployments/person/networks.py) on procedural persons.

    python -m training.train_person --out checkpoints/person-persons --minutes 40

Stage I (multi-branch reconstruction), summed into one generator step:

- the paper's objective: reconstruct the image from its own foreground, background and pose
  (L1, plus L1 inside the coarse pose mask weighted ``--mask-weight``, as the paper weights the
  person), and an LSGAN patch discriminator conditioned on the pose heatmaps;
- ``--swap-weight`` (0 = the paper alone): the renderer knows what a recomposition must look like, so
  each step also draws the foreground of image X (person A, pose 1) with the background of image Y
  (person B, pose 3) in pose 2, against the rendering of A with B's background in pose 2. Real photos
  give no such target; the procedural data does, and it teaches the decoder to keep the factors apart;
- the pose autoencoder: the 54-dim keypoint vector back from its code (MSE on the visible joints'
  coordinates, cross-entropy on visibility).

Stage II: embeddings of fresh renders (``--mapping-samples``) are the real data of one WGAN-GP per
factor; each mapping Φ learns to turn Gaussian noise into embeddings of that factor.

Progress lines go to stdout; snapshots (WORK/snapshot.pt) allow ``--resume``; the output directory
gets model.json, weights.safetensors, examples/, samples.png and a model card.
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

from deployments.person.body import pose_mask, pose_vector
from deployments.person.checkpoint import Example
from deployments.person.checkpoint import export as export_checkpoint
from deployments.person.networks import FACTORS, DisentangledPersonGenerator, PersonConfig
from deployments.warp.pose import heatmap_sigma, pose_heatmaps
from training.data import persons
from training.model_card import arch_and_command, command_line, hardware
from training.progress import LossWindow, seconds_left

WEIGHTS_FILE = "weights.safetensors"
HELDOUT_SEED = 2 * 10**9  # evaluation sets come from seeds HELDOUT_SEED + i; training draws from its own generator


def with_background(people: persons.Identity, donor: persons.Identity) -> persons.Identity:
    """``people`` with the backgrounds of ``donor`` (same batch size): the renderer's ground truth of a background swap."""
    return dataclasses.replace(people, background=donor.background.clone(), background_kind=donor.background_kind.clone())


def with_appearance(people: persons.Identity, donor: persons.Identity) -> persons.Identity:
    """``donor``'s person (clothes, hair, skin, build) in front of ``people``'s backgrounds."""
    return with_background(donor, people)


@dataclasses.dataclass
class RecompositionBatch:
    """X = person A in pose 1, Y = person B in pose 3; swap_target = A with B's background in pose 2. Images in [-1, 1]."""

    image: torch.Tensor  # (n, 3, H, W) X
    keypoints: torch.Tensor  # (n, 18, 2) of X
    visible: torch.Tensor  # (n, 18)
    background_image: torch.Tensor  # (n, 3, H, W) Y
    background_keypoints: torch.Tensor
    background_visible: torch.Tensor
    target_keypoints: torch.Tensor  # (n, 18, 2) pose 2
    target_visible: torch.Tensor
    swap_target: torch.Tensor  # (n, 3, H, W)


def recomposition_batch(n: int, height: int, width: int, generator: torch.Generator) -> RecompositionBatch:
    people, donors = persons.sample_identities(n, generator), persons.sample_identities(n, generator)
    first, second, third = (persons.sample_poses(n, generator) for _ in range(3))
    x = persons.render_people(people, first, height, width)
    y = persons.render_people(donors, third, height, width)
    target = persons.render_people(with_background(people, donors), second, height, width)
    return RecompositionBatch(
        x.images * 2 - 1,
        x.keypoints,
        x.visible,
        y.images * 2 - 1,
        y.keypoints,
        y.visible,
        target.keypoints,
        target.visible,
        target.images * 2 - 1,
    )


def heldout_people(n: int, height: int, width: int, start: int = 0) -> tuple[persons.Identity, list[persons.Pose]]:
    """Held-out people ``start`` .. ``start + n - 1`` with three poses each, one seed per person (the same at every n)."""
    people, poses = [], [[], [], []]
    for i in range(start, start + n):
        generator = torch.Generator().manual_seed(HELDOUT_SEED + i)
        people.append(persons.sample_identities(1, generator))
        for k in range(3):
            poses[k].append(persons.sample_poses(1, generator))
    return persons.concat(people), [persons.concat(p) for p in poses]


class PatchDiscriminator(nn.Module):
    """(image, pose heatmaps) -> patch logits: is this a real rendering of a person in that pose?"""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        widths = [3 + 18, width, width * 2, width * 4]
        self.layers = nn.Sequential(
            *[
                nn.Sequential(spectral_norm(nn.Conv2d(a, b, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, True))
                for a, b in zip(widths, widths[1:])
            ]
        )
        self.head = spectral_norm(nn.Conv2d(widths[-1], 1, 3, padding=1))

    def forward(self, image: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(torch.cat([image, heatmaps], dim=1)))


def masked_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, mask_weight: float) -> torch.Tensor:
    """L1 over the image plus ``mask_weight`` x L1 inside the mask (the person)."""
    error = (output - target).abs()
    return error.mean() + mask_weight * (error * mask).sum() / (mask.sum() * 3).clamp_min(1)


def pose_autoencoder_loss(model: DisentangledPersonGenerator, keypoints: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """MSE of the visible joints' normalised coordinates + BCE of visibility, through the 54-dim autoencoder."""
    config = model.config
    vector = pose_vector(keypoints, visible, config.height, config.width).view(-1, 18, 3)
    logits = model.pose.decode_logits(model.pose.encode(vector.flatten(1))).view(-1, 18, 3)
    v = vector[..., 2]
    coordinates = ((torch.sigmoid(logits[..., :2]) - vector[..., :2]) ** 2 * v[..., None]).sum() / (v.sum() * 2).clamp_min(1)
    return 100 * coordinates + F.binary_cross_entropy_with_logits(logits[..., 2], v)


def stage1_losses(
    model: DisentangledPersonGenerator, discriminator: PatchDiscriminator, batch: RecompositionBatch, args: argparse.Namespace
) -> tuple[torch.Tensor, dict[str, float], list[tuple[torch.Tensor, torch.Tensor]]]:
    """-> (generator loss, its terms, [(fake image, its pose heatmaps)] for the discriminator step)."""
    h, w = model.config.height, model.config.width
    sigma = heatmap_sigma(h)
    embeddings = model.encode(batch.image, batch.keypoints, batch.visible)
    reconstruction = model.decode(embeddings.foreground, embeddings.background, batch.keypoints, batch.visible)
    mask = pose_mask(batch.keypoints, batch.visible, h, w)
    recon_l1 = masked_l1(reconstruction, batch.image, mask, args.mask_weight)
    heatmaps = pose_heatmaps(batch.keypoints, batch.visible, h, w, sigma)
    fakes = [(reconstruction, heatmaps)]
    total = args.l1_weight * recon_l1
    terms = {"recon_l1": recon_l1.item()}
    if args.swap_weight > 0:
        background = model.encode_background(batch.background_image, batch.background_keypoints, batch.background_visible)
        swapped = model.decode(embeddings.foreground, background, batch.target_keypoints, batch.target_visible)
        target_mask = pose_mask(batch.target_keypoints, batch.target_visible, h, w)
        swap_l1 = masked_l1(swapped, batch.swap_target, target_mask, args.mask_weight)
        total = total + args.swap_weight * args.l1_weight * swap_l1
        terms["swap_l1"] = swap_l1.item()
        fakes.append((swapped, pose_heatmaps(batch.target_keypoints, batch.target_visible, h, w, sigma)))
    adversarial = sum(((discriminator(image, maps) - 1) ** 2).mean() for image, maps in fakes) / len(fakes)
    pose_loss = pose_autoencoder_loss(
        model, torch.cat([batch.keypoints, batch.target_keypoints]), torch.cat([batch.visible, batch.target_visible])
    )
    total = total + args.adv_weight * adversarial + pose_loss
    terms.update(g_adv=adversarial.item(), pose_ae=pose_loss.item())
    return total, terms, fakes


@torch.no_grad()
def real_embeddings(model: DisentangledPersonGenerator, n: int, generator: torch.Generator, batch: int = 256) -> dict[str, torch.Tensor]:
    """Embeddings of ``n`` fresh renders: the real data of Stage II."""
    config, chunks = model.config, {f: [] for f in FACTORS}
    for start in range(0, n, batch):
        people = persons.render_people(
            persons.sample_identities(min(batch, n - start), generator),
            persons.sample_poses(min(batch, n - start), generator),
            config.height,
            config.width,
        )
        embeddings = model.encode(people.images * 2 - 1, people.keypoints, people.visible)
        for factor in FACTORS:
            chunks[factor].append(embeddings.get(factor))
    return {f: torch.cat(c) for f, c in chunks.items()}


def train_mapping(
    model: DisentangledPersonGenerator, factor: str, real: torch.Tensor, args: argparse.Namespace, generator: torch.Generator
) -> dict[str, float]:
    """WGAN-GP (as the paper) of Φ_factor against the real embeddings; -> last logged terms."""
    mapping, dim = model.mappings[factor], real.shape[1]
    critic = nn.Sequential(
        nn.Linear(dim, args.critic_hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(args.critic_hidden, args.critic_hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(args.critic_hidden, 1),
    )
    opt_map = torch.optim.Adam(mapping.parameters(), lr=args.mapping_lr, betas=(0.5, 0.9))
    opt_critic = torch.optim.Adam(critic.parameters(), lr=args.mapping_lr, betas=(0.5, 0.9))
    started, terms = time.perf_counter(), {}
    for step in range(1, args.mapping_steps + 1):
        for _ in range(args.critic_steps):
            reals = real[torch.randint(len(real), (args.mapping_batch,), generator=generator)]
            with torch.no_grad():
                fakes = mapping(torch.randn(args.mapping_batch, dim, generator=generator))
            mix = torch.rand(args.mapping_batch, 1, generator=generator)
            between = (mix * reals + (1 - mix) * fakes).requires_grad_(True)
            (gradient,) = torch.autograd.grad(critic(between).sum(), between, create_graph=True)
            penalty = ((gradient.norm(dim=1) - 1) ** 2).mean()
            distance = critic(reals).mean() - critic(fakes).mean()
            critic_loss = -distance + 10 * penalty
            opt_critic.zero_grad(set_to_none=True)
            critic_loss.backward()
            opt_critic.step()
        map_loss = -critic(mapping(torch.randn(args.mapping_batch, dim, generator=generator))).mean()
        opt_map.zero_grad(set_to_none=True)
        map_loss.backward()
        opt_map.step()
        if step % args.log_every == 0 or step == args.mapping_steps:
            terms = {"wasserstein": distance.item(), "gp": penalty.item()}
            print(
                f"stage II {factor:10s} step {step:5d}/{args.mapping_steps}  wasserstein {terms['wasserstein']:.4f}  gp {terms['gp']:.4f}  "
                f"{step / (time.perf_counter() - started):5.1f} steps/s",
                flush=True,
            )
    return terms


@torch.no_grad()
def sample_sheet(model: DisentangledPersonGenerator, path: Path, n: int = 6) -> None:
    """Rows of held-out people: X | reconstruction | Y | X's person on Y's background in pose 2 | truth | X's person, sampled background | all sampled."""
    from PIL import Image

    config = model.config
    h, w = config.height, config.width
    was_training = model.training
    model.eval()
    people, poses = heldout_people(2 * n, h, w)
    a, b = persons.rows(people, slice(0, n)), persons.rows(people, slice(n, 2 * n))
    pose_a, pose_b, pose_t = (persons.rows(p, slice(0, n)) for p in poses)
    x, y = persons.render_people(a, pose_a, h, w), persons.render_people(b, pose_b, h, w)
    truth = persons.render_people(with_background(a, b), pose_t, h, w)
    ex, ey = model.encode(x.images * 2 - 1, x.keypoints, x.visible), model.encode(y.images * 2 - 1, y.keypoints, y.visible)
    generator = torch.Generator().manual_seed(0)
    noise = {f: torch.randn(n, config.embedding_dim(f), generator=generator) for f in FACTORS}
    sampled = {f: model.sample_embeddings(f, noise[f]) for f in FACTORS}
    sampled_kp, sampled_vis = model.pose_keypoints(sampled["pose"])
    columns = [
        x.images * 2 - 1,
        model.decode(ex.foreground, ex.background, x.keypoints, x.visible),
        y.images * 2 - 1,
        model.decode(ex.foreground, ey.background, truth.keypoints, truth.visible),
        truth.images * 2 - 1,
        model.decode(ex.foreground, sampled["background"], x.keypoints, x.visible),
        model.decode(sampled["foreground"], sampled["background"], sampled_kp, sampled_vis),
    ]
    sheet = torch.ones(3, n * (h + 2) + 2, len(columns) * (w + 2) + 2)
    for row in range(n):
        for col, images in enumerate(columns):
            sheet[:, 2 + row * (h + 2) : 2 + row * (h + 2) + h, 2 + col * (w + 2) : 2 + col * (w + 2) + w] = (images[row] + 1) / 2
    image = Image.fromarray((sheet.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy())
    image.resize((image.width * 2, image.height * 2), Image.NEAREST).save(path)
    model.train(was_training)


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = torch.Generator().manual_seed(args.seed)
    config = PersonConfig(
        height=args.height,
        width=args.width,
        channels=args.channels,
        roi_dim=args.roi_dim,
        background_dim=args.background_dim,
        pose_dim=args.pose_dim,
    )
    model, discriminator = DisentangledPersonGenerator(config), PatchDiscriminator(args.d_width)
    stage1_parameters = [p for name, p in model.named_parameters() if not name.startswith("mappings.")]
    opt_g = torch.optim.Adam(stage1_parameters, lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    work = Path(args.work or Path(args.out) / ".work")
    work.mkdir(parents=True, exist_ok=True)
    snapshot = work / "snapshot.pt"
    step, seen, spent, log, state = 0, 0, 0.0, {}, {}
    if args.resume and snapshot.exists():
        state = torch.load(snapshot, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"]), discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"]), opt_d.load_state_dict(state["opt_d"])
        step, seen, spent, log = int(state["step"]), int(state["seen"]), float(state["seconds"]), dict(state.get("log", {}))
        rng.set_state(state["rng"])
        print(f"resumed from {snapshot} at step {step} ({seen:,} images, {spent / 60:.1f} min)", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"disentangled person generator {config.height}x{config.width}: {n_params:,} params ({n_params * 4 / 1e6:.2f} MB float32); "
        f"batch {args.batch}, swap weight {args.swap_weight}",
        flush=True,
    )
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
        sample_sheet(model, work / f"samples-{step:06d}.png")

    window = LossWindow()
    model.train()
    while not args.export_only and step < args.steps and time.perf_counter() - started < budget_s:
        batch = recomposition_batch(args.batch, args.height, args.width, rng)
        total, terms, fakes = stage1_losses(model, discriminator, batch, args)
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
        real_maps = pose_heatmaps(batch.keypoints, batch.visible, args.height, args.width, heatmap_sigma(args.height))
        d_loss = ((discriminator(batch.image, real_maps) - 1) ** 2).mean() / 2
        d_loss = d_loss + sum((discriminator(image.detach(), maps) ** 2).mean() for image, maps in fakes) / (2 * len(fakes))
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
                f"stage I step {step:6d}  images {seen:8,d}  {rate:5.1f} img/s  "
                + "  ".join(f"{k} {v:.4f}" for k, v in log.items())
                + f"  elapsed {elapsed / 60:5.1f} min  left {left / 60:5.1f} min",
                flush=True,
            )
        if step % args.snapshot_every == 0:
            save_snapshot()
    if not args.export_only:
        save_snapshot()
    elif not step:
        raise SystemExit("--export-only needs --resume and an existing snapshot")
    stage1_seconds = time.perf_counter() - started
    # Stage II: the encoders are frozen; each factor's mapping learns that factor's embedding distribution.
    model.eval()
    stage2_started = time.perf_counter()
    real = real_embeddings(model, args.mapping_samples, rng)
    mapping_log = {}
    for factor in FACTORS:
        with torch.enable_grad():
            mapping_log[factor] = train_mapping(model, factor, real[factor], args, rng)
    stage2_seconds = time.perf_counter() - stage2_started
    sample_sheet(model, work / f"samples-{step:06d}-stage2.png")
    return {
        "model": model,
        "config": config,
        "step": step,
        "seen": seen,
        "seconds": stage1_seconds,
        "stage2_seconds": stage2_seconds,
        "log": log,
        "mapping_log": mapping_log,
        "n_params": n_params,
        "swap_weight": args.swap_weight,
        "mapping_samples": args.mapping_samples,
        "mapping_steps": args.mapping_steps,
    }


def points(keypoints: torch.Tensor, visible: torch.Tensor) -> list:
    """(18, 2) + (18,) -> the API's keypoint list: [x, y] or None."""
    return [[round(float(x), 2), round(float(y), 2)] if seen else None for (x, y), seen in zip(keypoints.tolist(), visible.tolist())]


def examples_of(n: int, height: int, width: int) -> list[Example]:
    """The first ``n`` held-out people (first pose) as shipped examples: image and keypoints."""
    people, poses = heldout_people(n, height, width)
    rendered = persons.render_people(people, poses[0], height, width)
    return [
        Example((rendered.images[i].permute(1, 2, 0) * 255).round().byte().numpy(), points(rendered.keypoints[i], rendered.visible[i]))
        for i in range(n)
    ]


def export(run: dict, out: Path, name: str, command: str, threads: int, n_examples: int = 6) -> dict:
    """model.json + weights.safetensors + examples/ (deployments/person/checkpoint.py) + samples.png + README.md (model card)."""
    config: PersonConfig = run["config"]
    supervision = "the paper's self-reconstruction" + (
        f" + renderer-supervised swaps (weight {run['swap_weight']:g})" if run["swap_weight"] else ""
    )
    description = (
        f"Disentangled person generator {config.height}x{config.width}, Stage I {run['seconds'] / 60:.0f} min on procedural "
        f"persons ({run['seen']:,} images; {supervision}), Stage II mappings {run['stage2_seconds'] / 60:.0f} min"
    )
    manifest = export_checkpoint(run["model"], out, name, description, examples_of(n_examples, config.height, config.width))
    sample_sheet(run["model"], out / "samples.png")
    losses = ", ".join(f"{k} {v:.4f}" for k, v in run["log"].items()) or "see the training log"
    mappings = "; ".join(f"{f}: " + ", ".join(f"{k} {v:.3f}" for k, v in terms.items()) for f, terms in run["mapping_log"].items())
    (out / "README.md").write_text(f"""# {name}

{description}.

- Data: `training/data/persons.py` people, rendered fresh every step: person A in pose 1 (reconstructed),
  person B in pose 3 (the background donor) and A with B's background in pose 2 (the swap target). The
  held-out people of the evaluation and of `examples/` (`HELDOUT_SEED` onward) are never drawn in training.
- Stage I: {run["step"]:,} steps, {run["seen"]:,} images, {run["seconds"] / 60:.1f} min on {hardware(threads)};
  objective: {supervision}; last logged losses: {losses}.
- Stage II: WGAN-GP per factor on the embeddings of {run["mapping_samples"]:,} renders, {run["mapping_steps"]:,} mapping steps each,
  {run["stage2_seconds"] / 60:.1f} min; last: {mappings}.
- Parameters: {run["n_params"]:,} ({(out / WEIGHTS_FILE).stat().st_size / 1e6:.1f} MB safetensors).
- `examples/`: {n_examples} held-out people; `model.json` lists their keypoints, so the ops take them without keypoints.

![held-out: X | reconstruction | Y | X's person on Y's background in a third pose | ground truth | X's person on a sampled background | all three factors sampled](samples.png)

Columns: X | reconstruction | Y | X's person on Y's background in a third pose | the renderer's ground truth of that |
X's person on a sampled background | foreground, background and pose all sampled.

{arch_and_command(manifest["arch"], command)}
""")
    return manifest


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output checkpoint directory")
    parser.add_argument("--name", help="model name (default: the output directory's name)")
    parser.add_argument("--work", help="snapshots and sample sheets (default OUT/.work)")
    parser.add_argument("--minutes", type=float, default=40.0, help="Stage I wall-time budget")
    parser.add_argument("--steps", type=int, default=10**9, help="Stage I step budget")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--roi-dim", type=int, default=32)
    parser.add_argument("--background-dim", type=int, default=128)
    parser.add_argument("--pose-dim", type=int, default=32)
    parser.add_argument("--d-width", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--l1-weight", type=float, default=10.0)
    parser.add_argument("--mask-weight", type=float, default=1.0, help="extra L1 weight inside the pose mask")
    parser.add_argument("--swap-weight", type=float, default=1.0, help="renderer-supervised swap term (0: the paper's objective alone)")
    parser.add_argument("--adv-weight", type=float, default=1.0)
    parser.add_argument("--mapping-samples", type=int, default=8192, help="Stage II: renders whose embeddings are the real data")
    parser.add_argument("--mapping-steps", type=int, default=3000, help="Stage II: mapping steps per factor")
    parser.add_argument("--mapping-batch", type=int, default=256)
    parser.add_argument("--mapping-lr", type=float, default=1e-4)
    parser.add_argument("--critic-steps", type=int, default=5)
    parser.add_argument("--critic-hidden", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--snapshot-every", type=int, default=500)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--export-only", action="store_true", help="with --resume: Stage II and the checkpoint from the snapshot")
    parser.add_argument("--trained-with", help="with --export-only: the command that trained the snapshot, for the model card")
    args = parser.parse_args(argv)
    run = train(args)
    command = command_line("training.train_person", argv, args.trained_with)
    manifest = export(run, args.out, args.name or args.out.name, command, args.threads)
    print(f"wrote {args.out}/ ({(args.out / WEIGHTS_FILE).stat().st_size:,} bytes, {run['step']} steps)", flush=True)
    return {"manifest": manifest, **run}


if __name__ == "__main__":
    main()
