"""Neural Collage edits as pure functions over a class-conditional generator and tensors.

The generator is any module with the collage contract (``SNGANGenerator``, ``BigGANDeep``):
``z_dim``, ``num_classes``, ``resolution``, ``n_blocks``, ``block_resolutions`` and
``forward(z, class_weights, truncation, class_maps=None, feature_edit=None)``.

* :func:`label_collage` is spatial conditional batch norm (sCBN, Neural Collage §3.1): in the
  chosen blocks every CBN mixes the classes' gains and biases per pixel with a spatial
  class-weight map; other blocks see the base class.
* :func:`feature_collage` is feature blending (§3.2): at the chosen blocks the base's features
  become F = (1 - M) F_base + M U(F_ref), U a translation, M the mask at the block's size.
* :func:`project` is manifold projection: z (and, among candidate classes, the class) whose image
  is closest to a given image, so both collage ops edit real photos.

Shapes: z (B, z_dim); class weights (B, K) rows summing to 1; masks (B, H, W) float in [0, 1] at
the output resolution; images (B, 3, R, R) in [-1, 1].
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from deployments.collage.conditioning import ClassMixture, pool_class_map
from deployments.shapes import assert_shape

TRUNCATION_BOUND = 2.0  # seeded z: standard normal resampled outside [-2, 2] (BigGAN's truncated noise)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def truncated_latents(seeds: Sequence[int], z_dim: int, truncation: float = 1.0) -> torch.Tensor:
    """(len(seeds), z_dim): per seed, a normal vector resampled outside [-2, 2], times truncation.

    One generator per seed, so a seed gives the same z whatever else is in the batch.
    """
    _check(0.0 < truncation <= 1.0, f"truncation must be in (0, 1], got {truncation}")
    rows = []
    for seed in seeds:
        rng = torch.Generator().manual_seed(int(seed))
        z = torch.randn(z_dim, generator=rng)
        outside = z.abs() > TRUNCATION_BOUND
        while outside.any():
            z[outside] = torch.randn(int(outside.sum()), generator=rng)
            outside = z.abs() > TRUNCATION_BOUND
        rows.append(z * truncation)
    return torch.stack(rows) if rows else torch.zeros(0, z_dim)


def class_vectors(classes: Sequence[dict[int, float]], n_classes: int) -> torch.Tensor:
    """Sparse classes ({index: weight}) -> dense (B, K) class weights."""
    out = torch.zeros(len(classes), n_classes)
    for row, weights in enumerate(classes):
        for index, weight in weights.items():
            _check(0 <= int(index) < n_classes, f"class {index} out of range 0..{n_classes - 1}")
            out[row, int(index)] = float(weight)
    return out


# ---- sCBN ------------------------------------------------------------------------------------


def spatial_class_weights(
    base_classes: torch.Tensor,
    region_masks: Sequence[torch.Tensor],
    region_classes: Sequence[torch.Tensor],
    intensities: Sequence[torch.Tensor],
) -> ClassMixture:
    """The spatial class-weight map W(h, w, c) of a batch of collages, as a :class:`ClassMixture`.

    base_classes: (B, K) class weights of each base image: they fill what the regions leave.
    region_masks: per sample, (J_b, H, W) masks in [0, 1] (J_b may be 0).
    region_classes: per sample, (J_b, K) class vector of each region.
    intensities: per sample, (J_b,) weight of the region's class inside its mask.

    A pixel's region weights are intensity * mask; where overlapping regions add up to more than 1
    they are scaled to sum to 1. The base class gets 1 minus their sum, so weights always sum to 1.
    Returns weights (B, 1 + max J_b, H, W) and classes (B, 1 + max J_b, K), component 0 = base.
    """
    batch, n_classes = base_classes.shape
    _check(len(region_masks) == len(region_classes) == len(intensities) == batch, "one region list per sample")
    height, width = next((m.shape[-2:] for m in region_masks if m.numel()), (1, 1))
    n_components = 1 + max((len(m) for m in region_masks), default=0)
    weights = torch.zeros(batch, n_components, height, width, device=base_classes.device)
    classes = torch.zeros(batch, n_components, n_classes, device=base_classes.device)
    classes[:, 0] = base_classes
    for b, (masks, region_class, intensity) in enumerate(zip(region_masks, region_classes, intensities)):
        if len(masks):
            assert_shape(masks, (None, height, width), f"region masks of sample {b}")  # one size for all
            assert_shape(region_class, (len(masks), n_classes), f"region classes of sample {b}")
            regions = masks.clamp(0, 1) * intensity.view(-1, 1, 1)
            total = regions.sum(0, keepdim=True)
            regions = regions / total.clamp(min=1.0)
            weights[b, 1 : 1 + len(masks)] = regions
            classes[b, 1 : 1 + len(masks)] = region_class
    weights[:, 0] = 1 - weights[:, 1:].sum(1)
    return ClassMixture(weights, classes)


def block_class_maps(mixture: ClassMixture, uses_block: torch.Tensor) -> list[ClassMixture | None]:
    """Per block, the condition of its CBNs: the mixture for samples that edit the block, the base
    class (component 0 everywhere) for the others; None for a block no sample edits.

    uses_block: (B, n_blocks) bool.
    """
    base_only = torch.zeros_like(mixture.weights[:1])
    base_only[:, 0] = 1.0
    maps: list[ClassMixture | None] = []
    for block in range(uses_block.shape[1]):
        use = uses_block[:, block]
        if not use.any():
            maps.append(None)
            continue
        weights = torch.where(use.view(-1, 1, 1, 1).to(mixture.weights.device), mixture.weights, base_only)
        maps.append(ClassMixture(weights, mixture.classes))
    return maps


def label_collage(
    generator: torch.nn.Module,
    z: torch.Tensor,
    base_classes: torch.Tensor,
    mixture: ClassMixture,
    uses_block: torch.Tensor,
    truncation: float = 1.0,
) -> torch.Tensor:
    """Images of the bases with the regions of ``mixture`` redrawn as their classes (sCBN).

    z (B, z_dim), base_classes (B, K), mixture from :func:`spatial_class_weights`,
    uses_block (B, n_blocks) bool: which blocks' CBNs take the spatial map, per sample.
    """
    assert_shape(uses_block, (z.shape[0], generator.n_blocks), "uses_block")
    return generator(z, base_classes, truncation, class_maps=block_class_maps(mixture, uses_block))


# ---- feature blending ----------------------------------------------------------------------


def shift_features(features: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate (C, H, W) or (B, C, H, W) features by (dx, dy) pixels, zeros where nothing lands."""
    if dx == 0 and dy == 0:
        return features
    height, width = features.shape[-2:]
    out = torch.zeros_like(features)
    if abs(dx) >= width or abs(dy) >= height:
        return out
    src_y, dst_y = slice(max(0, -dy), height - max(0, dy)), slice(max(0, dy), height - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), width - max(0, dx)), slice(max(0, dx), width - max(0, -dx))
    out[..., dst_y, dst_x] = features[..., src_y, src_x]
    return out


def block_features(
    generator: torch.nn.Module, z: torch.Tensor, class_weights: torch.Tensor, truncation: float = 1.0
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(images, [output of every block]) of one forward pass."""
    captured: list[torch.Tensor] = []

    def capture(block: int, h: torch.Tensor) -> torch.Tensor:
        captured.append(h)
        return h

    images = generator(z, class_weights, truncation, feature_edit=capture)
    return images, captured


def feature_collage(
    generator: torch.nn.Module,
    z: torch.Tensor,
    class_weights: torch.Tensor,
    reference_features: Sequence[torch.Tensor],
    owners: torch.Tensor,
    masks: torch.Tensor,
    uses_block: torch.Tensor,
    shifts: torch.Tensor,
    truncation: float = 1.0,
) -> torch.Tensor:
    """Bases with references' features blended in, references applied in order.

    z (B, z_dim), class_weights (B, K): the bases.
    reference_features: per block, (N_ref, C, h, w) features of the references (:func:`block_features`).
    owners: (N_ref,) long, the base each reference is pasted into.
    masks: (N_ref, H, W) in [0, 1] at output resolution, where each reference goes (on the base).
    uses_block: (N_ref, n_blocks) bool, the blocks at which each reference is blended.
    shifts: (N_ref, 2) long (dx, dy) in output pixels, scaled to each block's resolution.
    """
    n_ref = owners.shape[0]
    assert_shape(masks, (n_ref, None, None), "masks (one row per reference)")
    assert_shape(uses_block, (n_ref, generator.n_blocks), "uses_block (one row per reference)")
    assert_shape(shifts, (n_ref, 2), "shifts (one row per reference)")
    resolution = masks.shape[-1]

    def blend(block: int, h: torch.Tensor) -> torch.Tensor:
        refs = [r for r in range(n_ref) if uses_block[r, block]]
        if not refs:
            return h
        h = h.clone()
        size = h.shape[-2:]
        for r in refs:
            scale = size[-1] / resolution
            dx, dy = (int(round(float(v) * scale)) for v in shifts[r])
            m = pool_class_map(masks[r].view(1, 1, *masks.shape[-2:]), size)[0]  # (1, h, w)
            b = int(owners[r])
            h[b] = (1 - m) * h[b] + m * shift_features(reference_features[block][r], dx, dy)
        return h

    return generator(z, class_weights, truncation, feature_edit=blend)


# ---- manifold projection ----------------------------------------------------------------------


def reconstruction_error(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N,) per-image error: MSE at full size plus MSE of 4x average-pooled images (the coarse term
    pulls z out of local minima where fine detail matches but the layout does not)."""
    fine = (images - targets).pow(2).flatten(1).mean(1)
    coarse = (F.avg_pool2d(images, 4) - F.avg_pool2d(targets, 4)).pow(2).flatten(1).mean(1)
    return fine + coarse


def _fit_z(
    generator: torch.nn.Module,
    z: torch.Tensor,
    classes: torch.Tensor,
    targets: torch.Tensor,
    steps: int,
    learning_rate: float,
    truncation: float,
    on_step: Callable[[int, torch.Tensor], None] | None,
    step_offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=learning_rate)
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        errors = reconstruction_error(generator(z, classes, truncation), targets)
        errors.sum().backward()  # a sum keeps the rows independent
        optimizer.step()
        with torch.no_grad():
            z.clamp_(-3.0, 3.0)  # stay where the prior has mass
        if on_step is not None:
            on_step(step_offset + step + 1, errors.detach())
    with torch.no_grad():
        errors = reconstruction_error(generator(z, classes, truncation), targets)
    return z.detach(), errors


def project(
    generator: torch.nn.Module,
    targets: torch.Tensor,
    candidates: Sequence[Sequence[int]],
    *,
    steps: int = 150,
    learning_rate: float = 0.05,
    search_fraction: float = 0.25,
    truncation: float = 1.0,
    seed: int = 0,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> dict[str, torch.Tensor | list]:
    """Fit (z, class) to each target image.

    targets: (N, 3, R, R) in [-1, 1]; candidates: per target, the class indices to try.
    With several candidates, every (target, candidate) pair is optimised for ``search_fraction`` of
    the steps, and each target goes on with its best candidate for the rest. All rows run as one
    batch; the generator's weights are frozen (eval mode), only z moves.
    Returns z (N, z_dim), class_index (N,), error (N,), candidate_errors (per target {class: error}).
    """
    assert_shape(targets, (len(candidates), 3, None, None), "targets (one per candidate list)")
    _check(all(len(c) for c in candidates), "every target needs candidates")
    device = targets.device
    rows = [(n, c) for n, cands in enumerate(candidates) for c in cands]
    owner = torch.tensor([n for n, _ in rows], device=device)
    row_class = torch.tensor([c for _, c in rows], device=device)
    # The same start for every candidate of a target: candidates compete on the class alone.
    starts = truncated_latents([seed + n for n in range(targets.shape[0])], generator.z_dim, truncation).to(device) * 0.5
    one_hot = F.one_hot(row_class, generator.num_classes).float()
    requires_grad = [p.requires_grad for p in generator.parameters()]
    for p in generator.parameters():
        p.requires_grad_(False)
    try:
        search = steps if all(len(c) == 1 for c in candidates) else max(1, round(steps * search_fraction))
        z, errors = _fit_z(
            generator,
            starts[owner],
            one_hot,
            targets[owner],
            search,
            learning_rate,
            truncation,
            (lambda step, e: on_step(step, e)) if on_step and search == steps else None,
        )
        candidate_errors: list[dict[int, float]] = [{} for _ in candidates]
        for row, (n, c) in enumerate(rows):
            candidate_errors[n][c] = float(errors[row])
        best = [min(range(len(rows)), key=lambda r: (owner[r] != n, float(errors[r]))) for n in range(len(candidates))]
        best_index = torch.tensor(best, device=device)
        z, one_hot = z[best_index], one_hot[best_index]
        if steps > search:
            z, final_errors = _fit_z(generator, z, one_hot, targets, steps - search, learning_rate, truncation, on_step, step_offset=search)
        else:
            final_errors = errors[best_index]
    finally:
        for p, flag in zip(generator.parameters(), requires_grad):
            p.requires_grad_(flag)
    return {"z": z, "class_index": row_class[best_index], "error": final_errors, "candidate_errors": candidate_errors}
