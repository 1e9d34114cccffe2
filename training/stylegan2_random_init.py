"""Build a seeded RANDOM-INIT StyleGAN2 demo checkpoint through the real converter path.

    python -m training.stylegan2_random_init --out checkpoints/style-demo-random --resolution 64 --seed 0

Steps: seeded Generator (port initialisation: N(0, 1) weights, zero biases, modulation bias 1,
zero noise strength) -> the port's ``.pt`` format in a temp file (``save_rosinality``) ->
``convert_rosinality`` -> ``out/{model.json, weights.safetensors, README.md}`` with
``random_init: true``. The weights are untrained: images are structured noise. The output is a
pure function of the arguments (same arguments, same bytes).
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
import tempfile
from pathlib import Path

import torch

from deployments.style.checkpoint import WEIGHTS_FILE, convert_rosinality, save_rosinality
from deployments.style.stylegan2 import Generator, StyleGAN2Config
from training.model_card import arch_and_command


def build(config: StyleGAN2Config, seed: int) -> tuple[Generator, torch.Tensor]:
    """Seeded random-init generator and its mean w (used as the checkpoint's latent_avg)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = Generator(config).eval()
    return generator, generator.mean_latent(4096, seed=seed)


def model_card(manifest: dict, weights: Path, command: str, seed: int, generator: Generator) -> str:
    arch = manifest["arch"]
    n_params = sum(p.numel() for p in generator.parameters())
    with torch.no_grad():
        peak = generator(w=generator.mean_latent(64, seed=seed + 1)[None]).abs().max().item()
    size = weights.stat().st_size
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    return f"""# {manifest["name"]} — RANDOM-INIT StyleGAN2 (not trained)

**This checkpoint is a RANDOM INITIALISATION, not a trained model.** Its outputs are structured
noise (smooth colour blobs shaped by the architecture), not images of anything. Raw outputs are
not confined to [-1, 1] (the mean-w image reaches ±{peak:.0f}); the uint8/PNG conversion clips them. It exists so the
`style` family (loader, `sample` op, serving path, tests) can run end to end without downloading
public weights. A trained demo checkpoint comes later.

- family / format: `{manifest["family"]}` / `{manifest["format"]}` (converted from the
  `{manifest["source_format"]}` `.pt` format by `deployments.style.checkpoint.convert_rosinality`)
- resolution: {manifest["resolution"]}x{manifest["resolution"]}, W+ depth (n_latent): {manifest["n_latent"]}
- ops: {", ".join(manifest["ops"])}
- initialisation: the port's (N(0, 1) weights with equalized-lr scaling, zero biases, modulation
  bias 1, zero noise strength), `torch.manual_seed({seed})`; includes `latent_avg` = mean w of 4096
  z's drawn with seed {seed}
- parameters: {n_params:,} (float32)
- `{weights.name}`: {size:,} bytes ({size / 1e6:.2f} MB), sha256 `{sha}`

{arch_and_command(arch, command)}

The command is deterministic: running it again gives the same bytes (same sha256).
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output checkpoint directory")
    parser.add_argument("--name", default=None, help="model name (default: the out directory's name)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--style-dim", type=int, default=128)
    parser.add_argument("--n-mlp", type=int, default=4)
    parser.add_argument("--channel-multiplier", type=int, default=2)
    parser.add_argument("--channel-max", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    config = StyleGAN2Config(
        resolution=args.resolution,
        style_dim=args.style_dim,
        n_mlp=args.n_mlp,
        channel_multiplier=args.channel_multiplier,
        channel_max=args.channel_max,
    )
    name = args.name or args.out.name
    generator, latent_avg = build(config, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "random_init.pt"
        save_rosinality(generator, src, latent_avg=latent_avg)
        manifest = convert_rosinality(
            src,
            args.out,
            name,
            description=(
                f"RANDOM-INIT (untrained) StyleGAN2, {config.resolution}px, seed {args.seed}: "
                "outputs are structured noise; for exercising the serving path only"
            ),
            random_init=True,
        )
    command = "python -m training.stylegan2_random_init " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    (args.out / "README.md").write_text(model_card(manifest, args.out / WEIGHTS_FILE, command, args.seed, generator))
    size = (args.out / WEIGHTS_FILE).stat().st_size
    print(f"wrote {args.out}/ ({WEIGHTS_FILE}: {size:,} bytes, arch {manifest['arch']})")
    return manifest


if __name__ == "__main__":
    main()
