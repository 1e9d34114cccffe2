"""Pure functions of the ``ingan`` family: output-size snapping, the top-corner homography, retargeting,
strips of several outputs, and the training loop ``fit``.

Images at the edges are uint8 (H, W, 3); inside, (1, 3, H, W) floats in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from deployments.images import strip  # noqa: F401 - retarget's several outputs come back as one strip
from deployments.ingan.ingan import Generator, InGANConfig, MultiScaleDiscriminator
from deployments.shapes import assert_shape
from schemas.ingan import snap_side as schema_snap_side  # one snapping rule for the API and the generator


# ---- sizes ----------------------------------------------------------------------------------
def snap_side(requested: int, multiple: int) -> int:
    """The nearest positive multiple of ``multiple`` (ties round up); 1..multiple -> multiple."""
    if requested <= 0:
        raise ValueError(f"an output side must be positive, got {requested}")
    return schema_snap_side(requested, multiple)


def snap_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """(height, width) requested -> what the generator produces (each side snapped)."""
    return snap_side(height, multiple), snap_side(width, multiple)


def training_size(height: int, width: int, max_side: int, multiple: int) -> tuple[int, int]:
    """Size the training image is resized to: longer side at most ``max_side``, aspect kept, sides snapped."""
    scale = min(1.0, max_side / max(height, width))
    return snap_size(max(1, round(height * scale)), max(1, round(width * scale)), multiple)


# ---- homography -----------------------------------------------------------------------------
def top_corner_homography(top_left: float, top_right: float) -> np.ndarray:
    """The paper's non-rectangular outputs: a homography moving the image's two top corners sideways.

    ``top_left`` and ``top_right`` are horizontal shifts of the top-left and top-right corners as a
    fraction of the output width (positive = to the right; 0.2 and -0.2 narrow the top to 60 %
    of the width); the bottom corners stay. Returns the (3, 3) float64 matrix that maps output
    coordinates to input coordinates (normalised to [-1, 1]), the direction a sampling grid needs.
    Zero shifts give the identity exactly, so a zero homography is the plain resize.
    """
    if top_left == 0 and top_right == 0:
        return np.eye(3)
    source = [(-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0)]  # input corners
    target = [(-1.0 + 2 * top_left, -1.0), (1.0 + 2 * top_right, -1.0), (-1.0, 1.0), (1.0, 1.0)]  # where they land
    if target[0][0] >= target[1][0]:
        raise ValueError(f"top corner shifts {top_left}, {top_right} cross the top corners over; keep the top edge's length positive")
    rows, rhs = [], []
    for (x, y), (u, v) in zip(target, source):  # output point (x, y) samples input point (u, v)
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.asarray(rows), np.asarray(rhs))
    return np.append(h, 1.0).reshape(3, 3)


# ---- tensors --------------------------------------------------------------------------------
def to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (H, W, 3) -> (1, 3, H, W) float in [-1, 1]."""
    assert image.dtype == np.uint8, f"uint8 (H, W, 3) expected, got {image.dtype}"
    assert_shape(image, (None, None, 3), "image (uint8 H, W, 3)")
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0).to(device) / 127.5 - 1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 at (height, width), Lanczos (area-like when shrinking)."""
    from PIL import Image

    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.LANCZOS))


# ---- retargeting ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Target:
    height: int  # produced height (already snapped)
    width: int  # produced width (already snapped)
    top_left: float = 0.0  # top-left corner shift, fraction of the width (0 with top_right 0: plain resize)
    top_right: float = 0.0  # top-right corner shift, fraction of the width


def retarget(generator: Generator, source: torch.Tensor, targets: list[Target]) -> list[np.ndarray]:
    """One forward pass per target: the generator's image at each size / shape, uint8 (h, w, 3) each."""
    outputs = []
    with torch.inference_mode():
        for target in targets:
            homography = None
            if target.top_left or target.top_right:
                matrix = top_corner_homography(target.top_left, target.top_right)
                homography = torch.as_tensor(matrix, dtype=source.dtype, device=source.device).unsqueeze(0)
            outputs.append(to_uint8(generator(source, (target.height, target.width), homography))[0])
    return outputs


# ---- training -------------------------------------------------------------------------------
class FitStopped(Exception):
    """Raised by an ``on_progress`` callback to end a fit early (e.g. its job was cancelled)."""


@dataclasses.dataclass(frozen=True)
class FitSettings:
    iterations: int = 2000  # generator + discriminator updates
    scale_min: float = 0.5  # smallest output/input ratio per side drawn in training
    scale_max: float = 1.5  # largest output/input ratio per side drawn in training
    curriculum: float = 0.3  # share of the iterations over which the drawn range grows from 1 to [scale_min, scale_max]
    rec_weight: float = 0.1  # reconstruction (L1 at the identity transform) weight beside the adversarial loss (the paper: 0.1)
    cycle_weight: float = 0.1  # L1 of G(G(x; T); back to x's size) against x: the paper code's reconstruction through the drawn T
    lr: float = 2e-4  # Adam learning rate of both networks
    beta1: float = 0.5  # Adam beta1 of both networks
    d_channels: int = 32  # base channels of each patch discriminator
    seed: int = 0  # weights and the drawn scales

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"need 0 < scale_min <= scale_max, got {self.scale_min}, {self.scale_max}")


def scale_range(settings: FitSettings, iteration: int) -> tuple[float, float]:
    """The curriculum: at iteration 0 only the identity (or the range's closest point to it), growing
    linearly to the full range by ``curriculum * iterations``, as the paper's training starts."""
    grown = 1.0 if settings.curriculum <= 0 else min(1.0, iteration / (settings.curriculum * settings.iterations))
    centre = min(max(1.0, settings.scale_min), settings.scale_max)
    return centre + (settings.scale_min - centre) * grown, centre + (settings.scale_max - centre) * grown


def _lsgan(maps: list[torch.Tensor], real: bool) -> torch.Tensor:
    """LSGAN loss averaged over the discriminator's scales: mean (D - 1)^2 for real, D^2 for fake."""
    return torch.stack([F.mse_loss(m, torch.full_like(m, float(real))) for m in maps]).mean()


def fit(
    image: np.ndarray,
    config: InGANConfig,
    settings: FitSettings,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    progress_every: int = 10,
    device: torch.device | str = "cpu",
    on_snapshot: Callable[[Generator, int], None] | None = None,
    snapshot_every: int = 0,
) -> tuple[Generator, dict[str, Any]]:
    """Train an InGAN generator on one image; returns the generator (eval mode) and a summary.

    ``image``: uint8 (H, W, 3), sides already multiples of ``config.size_multiple`` (see
    ``training_size``). Each iteration draws an output size (height and width scaled independently
    within the curriculum's range, snapped), then updates the discriminator (LSGAN on real vs the
    generated image) and the generator (adversarial + ``rec_weight`` x L1 of G(x) at the input's own
    size against x). ``on_progress`` gets a dict every ``progress_every`` iterations and at the end;
    raising ``FitStopped`` in it ends training with what is trained so far (summary ``stopped``).
    ``on_snapshot(generator, iteration)`` sees the generator in eval mode every ``snapshot_every``
    iterations (a trainer's snapshots and previews).
    """
    multiple = config.size_multiple
    height, width = image.shape[:2]
    if height % multiple or width % multiple:
        raise ValueError(f"training image {width}x{height} must have sides divisible by {multiple}")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    real = to_tensor(image, device)
    generator = Generator(config).to(device).train()
    discriminator = MultiScaleDiscriminator((height, width), settings.d_channels).to(device).train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=settings.lr, betas=(settings.beta1, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=settings.lr, betas=(settings.beta1, 0.999))
    smallest = discriminator.min_size  # the discriminator's first scale needs this much
    started = time.perf_counter()
    losses: dict[str, float] = {}
    stopped = False
    iteration = 0
    for iteration in range(1, settings.iterations + 1):
        low, high = scale_range(settings, iteration - 1)
        size = snap_size(
            max(smallest, round(height * rng.uniform(low, high))), max(smallest, round(width * rng.uniform(low, high))), multiple
        )
        fake = generator(real, size)

        opt_d.zero_grad(set_to_none=True)
        loss_d = 0.5 * (_lsgan(discriminator(real), True) + _lsgan(discriminator(fake.detach()), False))
        loss_d.backward()
        opt_d.step()

        opt_g.zero_grad(set_to_none=True)
        loss_adv = _lsgan(discriminator(fake), True)
        loss_rec = F.l1_loss(generator(real, (height, width)), real)
        loss_g = loss_adv + settings.rec_weight * loss_rec
        losses = {"d": loss_d.item(), "g_adv": loss_adv.item(), "rec_l1": loss_rec.item()}
        if settings.cycle_weight:
            loss_cycle = F.l1_loss(generator(fake, (height, width)), real)
            loss_g = loss_g + settings.cycle_weight * loss_cycle
            losses["cycle_l1"] = loss_cycle.item()
        loss_g.backward()
        opt_g.step()

        if on_snapshot is not None and snapshot_every and iteration % snapshot_every == 0:
            generator.eval()
            on_snapshot(generator, iteration)
            generator.train()
        if on_progress is not None and (iteration % progress_every == 0 or iteration == settings.iterations):
            elapsed = time.perf_counter() - started
            rate = iteration / elapsed if elapsed > 0 else 0.0
            try:
                on_progress(
                    {
                        "iteration": iteration,
                        "iterations": settings.iterations,
                        "losses": losses,
                        "it_per_s": round(rate, 3),
                        "elapsed_s": round(elapsed, 1),
                        "eta_s": round((settings.iterations - iteration) / rate, 1) if rate else None,
                        "scale_range": [round(low, 3), round(high, 3)],
                        "size": list(size),
                    }
                )
            except FitStopped:
                stopped = True
                break
    elapsed = time.perf_counter() - started
    generator.eval()
    summary = {
        "iterations": iteration,
        "stopped": stopped,
        "seconds": round(elapsed, 2),
        "it_per_s": round(iteration / elapsed, 3) if elapsed > 0 else None,
        "losses": losses,
        "image_size": [height, width],
        "scale_range": [settings.scale_min, settings.scale_max],
    }
    return generator, summary


def identity_psnr(generator: Generator, image: np.ndarray) -> float:
    """PSNR (dB, uint8 scale) of the generator's output at the image's own size against the image."""
    (output,) = retarget(generator, to_tensor(image, next(generator.parameters()).device), [Target(*image.shape[:2])])
    mse = float(np.mean((output.astype(np.float64) - image.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)
