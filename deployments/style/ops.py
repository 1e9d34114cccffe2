"""Edit ops of the ``style`` family as pure functions of (generator, tensors).

No Ray, no I/O: the Serve deployment validates requests, batches them and calls these. Every op is
deterministic given its inputs (noise comes from the generator's stored noise buffers), and a row
of a batch gives the same result as that request run alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from deployments.images import images_to_tensor, to_uint8_images  # noqa: F401  (re-exported)
from deployments.shapes import assert_shape
from deployments.style.stylegan2 import Generator

SEED_MAX = 2**32 - 1


def latents_from_seeds(seeds: Sequence[int], dim: int) -> torch.Tensor:
    """z ~ N(0, I) per seed: (N, dim) float32 on CPU.

    Each seed has its own CPU ``torch.Generator``, so a seed gives the same z whatever batch it
    is in, on any machine.
    """
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise ValueError(f"seeds must be a non-empty list of ints, got {seeds!r}")
    if not (isinstance(dim, int) and dim > 0):
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    rows = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
            raise ValueError(f"each seed must be an int in [0, {SEED_MAX}], got {seed!r}")
        rows.append(torch.randn(dim, generator=torch.Generator().manual_seed(int(seed))))
    return torch.stack(rows)


def sample(
    generator: Generator,
    *,
    z: torch.Tensor | None = None,
    w: torch.Tensor | None = None,
    truncation: float = 1.0,
    mean_w: torch.Tensor | None = None,
) -> torch.Tensor:
    """Images (N, 3, R, R), roughly in [-1, 1], on the generator's device.

    Exactly one of z (N, style_dim) or w ((N, style_dim), or (N, n_latent, style_dim) for W+).
    truncation (psi) lerps w toward mean_w (style_dim,): w' = mean_w + psi * (w - mean_w); psi = 0
    gives the mean image for every input. mean_w defaults to ``generator.mean_latent()`` when
    psi != 1 (pass the checkpoint's latent_avg, or a cached mean, to skip that computation).
    Noise is the generator's stored constant noise, so the result is deterministic.
    """
    if (z is None) == (w is None):
        raise ValueError("sample needs exactly one of z or w")
    truncation = float(truncation)
    if not np.isfinite(truncation):
        raise ValueError(f"truncation must be finite, got {truncation}")
    device, dtype = generator.device, generator.input.input.dtype
    sd, n_latent = generator.style_dim, generator.n_latent
    with torch.inference_mode():
        if z is not None:
            assert_shape(z, (None, sd), "z")
            w = generator.mapping(z.to(device, dtype))
        else:
            assert_shape(w, (None, sd) if w.ndim == 2 else (None, n_latent, sd), "w")  # one w, or one per layer
            w = w.to(device, dtype)
        if w.shape[0] == 0:
            raise ValueError("sample needs at least one latent (N >= 1)")
        ws = generator.truncate(generator.broadcast_w(w), truncation, mean_w)
        return generator.synthesis(ws, noise_mode="const")


def project(
    generator: Generator,
    target: torch.Tensor,
    *,
    mean_w: torch.Tensor,
    steps: int,
    learning_rate: float,
    latent_space: str = "w+",
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Find latents whose image matches ``target`` (N, 3, R, R in [-1, 1]) by gradient descent.

    Starts every row at the mean w and minimises pixel MSE with Adam, in W (one w for all layers)
    or W+ (one w per layer: closer fits, less regular latents). Rows are independent: the loss is
    a sum of per-row means and Adam's update is element-wise, so batching changes no result.
    Returns (w_plus (N, n_latent, style_dim), image (N, 3, R, R), per-row final MSE (N,)).
    ``on_step(step, mse (N,))`` is called after every step (1-based) with the rows' MSE before it.
    """
    assert_shape(target, (None, 3, generator.resolution, generator.resolution), "target")
    if latent_space not in ("w", "w+"):
        raise ValueError(f"latent_space must be 'w' or 'w+', got {latent_space!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n, n_latent = target.shape[0], generator.n_latent
    depth = 1 if latent_space == "w" else n_latent
    with torch.inference_mode(False), torch.enable_grad():
        start = mean_w.detach().reshape(1, 1, -1).to(target.device)
        w = start.repeat(n, depth, 1).requires_grad_(True)  # repeat copies, so w owns its memory
        optimizer = torch.optim.Adam([w], lr=learning_rate)
        target = target.detach()
        for step in range(steps):
            image = generator.synthesis(w.expand(n, n_latent, -1), noise_mode="const")
            row_mse = (image - target).pow(2).mean(dim=(1, 2, 3))
            optimizer.zero_grad(set_to_none=True)
            row_mse.sum().backward()
            optimizer.step()
            if on_step is not None:
                on_step(step + 1, row_mse.detach())
    with torch.inference_mode():
        w_plus = w.detach().expand(n, n_latent, -1).clone()
        image = generator.synthesis(w_plus, noise_mode="const")
        mse = (image - target).pow(2).mean(dim=(1, 2, 3))
    return w_plus, image, mse
