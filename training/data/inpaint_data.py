"""Training and held-out data for the EdgeConnect inpainting demo: images, hole masks, Canny edges.

Images are (N, 3, S, S) float32 in [0, 1] (the EdgeConnect convention), from two sources:

    faces   ``training.data.faces.render_faces`` / ``render_species_faces`` at S px (procedural
            cartoon faces, mapped from [-1, 1] to [0, 1])
    photos  random square crops of the offline sample photographs of ``skimage.data`` (no
            downloads), random scale 0.5-1.5 and horizontal flips, resized to S px

Split (the constants below are the single source of truth; ``training.inpaint_quality`` and the
tests use them):

    TRAIN_PHOTOS      photos the trainer samples crops from
    HELDOUT_PHOTOS    photos never used for training (``chelsea`` and ``rocket``); ``skimage.data.cat``
                      is the same picture as ``chelsea``, so it is excluded from training too
    faces             training faces come from a ``torch.Generator`` stream seeded with the
                      trainer's seed (< HELDOUT_FACE_SEED); held-out faces are rendered one per
                      seed from HELDOUT_FACE_SEED + i, i < HELDOUT_FACE_COUNT

Masks (``random_masks``): (N, 1, S, S) float {0, 1}, 1 = hole; free-form brush strokes (random
walks of thick line segments with round joints), rectangles, or both; the hole covers between
MIN_HOLE and MAX_HOLE of the image (rejection sampling).

Edges: ground-truth edges for training are Canny (sigma 2) of the whole grayscale image
(``train_edges``, as the official training does); the service computes Canny outside the hole
only (``service_edges``), which is what evaluation uses.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from deployments.inpaint.ops import canny_edges, to_gray
from training.data.faces import render_faces, render_species_faces

# --- the split -------------------------------------------------------------------------------------
# skimage.data images that load offline (no pooch download) and are at least 128 px on the short side.
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "immunohistochemistry",
    "retina",
    "hubble_deep_field",
    "logo",  # colour
    "brick",
    "camera",
    "coins",
    "grass",
    "gravel",
    "moon",
    "clock",
    "cell",
    "page",
    "text",  # grayscale
    "stereo_motorcycle",  # the left view only
)
HELDOUT_PHOTOS: tuple[str, ...] = ("chelsea", "rocket")
EXCLUDED_PHOTOS: tuple[str, ...] = ("cat",)  # == chelsea (a held-out photo)
HELDOUT_FACE_SEED = 1_000_000  # held-out face i is render_faces(1, S, seed=HELDOUT_FACE_SEED + i)
HELDOUT_FACE_COUNT = 10_000
PHOTO_SHORT_SIDE = 256  # photos are downscaled (never upscaled) to this short side before cropping
SCALE_RANGE = (0.5, 1.5)  # crop side = S / scale (clamped to the photo), then resized to S
MIN_HOLE, MAX_HOLE = 0.05, 0.40
EDGE_SIGMA = 2.0


def _load_photo(name: str) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1], short side <= PHOTO_SHORT_SIDE."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if name == "stereo_motorcycle":
        image = image[0]
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    if image.shape[-1] == 4:  # RGBA over white
        alpha = image[..., 3:]
        image = image[..., :3] * alpha + (1 - alpha)
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).clamp(0, 1)
    short = min(t.shape[-2:])
    if short > PHOTO_SHORT_SIDE:
        factor = PHOTO_SHORT_SIDE / short
        size = (round(t.shape[-2] * factor), round(t.shape[-1] * factor))
        t = F.interpolate(t[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)
    return t.contiguous()


@functools.lru_cache(maxsize=None)
def photo(name: str) -> torch.Tensor:
    """A sample photo by ``skimage.data`` name, cached: (3, H, W) float32 in [0, 1]."""
    if name in EXCLUDED_PHOTOS:
        raise ValueError(f"{name} is excluded (a copy of a held-out photo)")
    return _load_photo(name)


def random_crops(names: tuple[str, ...], n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` crops (n, 3, size, size) in [0, 1]: a photo drawn uniformly from ``names``, a scale in
    SCALE_RANGE (crop side size / scale, clamped to the photo), a uniform position, a coin-flip
    horizontal mirror; resized to ``size`` (bilinear, antialiased)."""
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        image = photo(names[int(torch.randint(len(names), (1,), generator=generator))])
        lo, hi = SCALE_RANGE
        scale = lo + (hi - lo) * float(torch.rand(1, generator=generator))
        side = min(max(4, round(size / scale)), *image.shape[-2:])
        top = int(torch.randint(image.shape[-2] - side + 1, (1,), generator=generator))
        left = int(torch.randint(image.shape[-1] - side + 1, (1,), generator=generator))
        crop = image[:, top : top + side, left : left + side]
        if float(torch.rand(1, generator=generator)) < 0.5:
            crop = crop.flip(-1)
        if side != size:
            crop = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=side > size, align_corners=False)[0]
        out[i] = crop.clamp(0, 1)
    return out


def training_images(n: int, size: int, generator: torch.Generator, face_fraction: float = 0.5) -> torch.Tensor:
    """A training batch (n, 3, size, size) in [0, 1]: about ``face_fraction`` procedural faces (half
    plain, half species) and the rest crops of TRAIN_PHOTOS, shuffled. Deterministic given the
    generator's state; advances it."""
    n_faces = (
        int(torch.binomial(torch.tensor(float(n)), torch.tensor(face_fraction), generator=generator))
        if 0 < face_fraction < 1
        else (n if face_fraction >= 1 else 0)
    )
    parts = []
    if n_faces:
        n_species = n_faces // 2
        if n_faces - n_species:
            parts.append(render_faces(n_faces - n_species, size, generator=generator).images)
        if n_species:
            parts.append(render_species_faces(n_species, size, generator=generator).images)
    images = torch.cat(parts).add(1).div(2).clamp(0, 1) if parts else torch.empty(0, 3, size, size)
    if n - n_faces:
        images = torch.cat([images, random_crops(TRAIN_PHOTOS, n - n_faces, size, generator)])
    return images[torch.randperm(n, generator=generator)].contiguous()


# --- masks -----------------------------------------------------------------------------------------


def _segment_distance(px: torch.Tensor, py: torch.Tensor, a: tuple[float, float], b: tuple[float, float]) -> torch.Tensor:
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    length2 = dx * dx + dy * dy
    t = ((px - ax) * dx + (py - ay) * dy) / length2 if length2 > 0 else torch.zeros_like(px)
    t = t.clamp(0, 1)
    return torch.hypot(px - ax - t * dx, py - ay - t * dy)


def _strokes(size: int, g: torch.Generator, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Free-form brush strokes: 1-4 random walks of 2-6 thick segments each."""

    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(1, generator=g))

    hole = torch.zeros(size, size, dtype=torch.bool)
    for _ in range(int(torch.randint(1, 5, (1,), generator=g))):
        width = u(0.04, 0.13) * size
        x, y = u(0, size), u(0, size)
        angle = u(0, 2 * math.pi)
        for _ in range(int(torch.randint(2, 7, (1,), generator=g))):
            angle += u(-1.2, 1.2)
            step = u(0.1, 0.35) * size
            nx = min(max(x + step * math.cos(angle), 0.0), size - 1.0)
            ny = min(max(y + step * math.sin(angle), 0.0), size - 1.0)
            hole |= _segment_distance(px, py, (x, y), (nx, ny)) <= width / 2
            x, y = nx, ny
    return hole


def _rectangles(size: int, g: torch.Generator, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """1-2 axis-aligned rectangles, sides 15-55% of the image."""
    hole = torch.zeros(size, size, dtype=torch.bool)
    for _ in range(int(torch.randint(1, 3, (1,), generator=g))):
        h, w = (max(2, round(size * (0.15 + 0.40 * float(torch.rand(1, generator=g))))) for _ in range(2))
        top = int(torch.randint(size - h + 1, (1,), generator=g))
        left = int(torch.randint(size - w + 1, (1,), generator=g))
        hole |= (py >= top) & (py < top + h) & (px >= left) & (px < left + w)
    return hole


def random_masks(n: int, size: int, generator: torch.Generator, min_hole: float = MIN_HOLE, max_hole: float = MAX_HOLE) -> torch.Tensor:
    """(n, 1, size, size) float32 in {0, 1}, 1 = hole: per mask, strokes (p 0.5), rectangles (p 0.25)
    or both (p 0.25), redrawn until the hole covers [min_hole, max_hole] of the image. Deterministic
    given the generator's state; advances it."""
    if not 0 <= min_hole < max_hole <= 1:
        raise ValueError(f"need 0 <= min_hole < max_hole <= 1, got {min_hole}, {max_hole}")
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    py, px = coords[:, None].expand(size, size), coords[None, :].expand(size, size)
    masks = torch.zeros(n, 1, size, size)
    for i in range(n):
        for _attempt in range(200):
            kind = float(torch.rand(1, generator=generator))
            if kind < 0.5:
                hole = _strokes(size, generator, py, px)
            elif kind < 0.75:
                hole = _rectangles(size, generator, py, px)
            else:
                hole = _strokes(size, generator, py, px) | _rectangles(size, generator, py, px)
            ratio = float(hole.float().mean())
            if min_hole <= ratio <= max_hole:
                break
        else:  # practically unreachable; a centred square of the lower bound's area
            side = math.ceil(size * math.sqrt(min_hole))
            hole = torch.zeros(size, size, dtype=torch.bool)
            start = (size - side) // 2
            hole[start : start + side, start : start + side] = True
        masks[i, 0] = hole.float()
    return masks


# --- edges -----------------------------------------------------------------------------------------


def train_edges(images: torch.Tensor, sigma: float = EDGE_SIGMA) -> torch.Tensor:
    """Ground-truth edges (N, 1, H, W) in {0, 1}: Canny of the whole grayscale image."""
    gray = to_gray(images)[:, 0].numpy()
    no_hole = np.zeros(gray.shape[1:], dtype=bool)
    return torch.from_numpy(np.stack([canny_edges(g, no_hole, sigma) for g in gray]))[:, None]


def service_edges(images: torch.Tensor, masks: torch.Tensor, sigma: float = EDGE_SIGMA) -> torch.Tensor:
    """What the service feeds ``ops.complete``: Canny of the grayscale image outside the hole only."""
    gray = to_gray(images)[:, 0].numpy()
    holes = masks[:, 0].numpy() > 0.5
    return torch.from_numpy(np.stack([canny_edges(g, h, sigma) for g, h in zip(gray, holes)]))[:, None]


# --- the held-out evaluation set -------------------------------------------------------------------


@dataclass
class HeldOut:
    images: torch.Tensor  # (N, 3, S, S) in [0, 1]
    masks: torch.Tensor  # (N, 1, S, S) {0, 1}
    sources: list[str]  # per image: "faces" or "photos"
    names: list[str]  # per image: "face:<seed>" or the photo's name


def heldout_set(n: int, size: int = 64, seed: int = 0) -> HeldOut:
    """``n`` held-out images with masks: faces i = 0, 2, 4, ... are render_faces seeds
    HELDOUT_FACE_SEED + seed * 1000 + i // 2 (alternating with) crops of HELDOUT_PHOTOS drawn from a
    generator seeded with ``seed`` (same crop process as training); masks from ``random_masks``
    with a generator seeded with ``seed + 1``. Deterministic in (n, size, seed)."""
    n_faces = (n + 1) // 2
    first = HELDOUT_FACE_SEED + seed * 1000
    if seed < 0 or seed * 1000 + n_faces > HELDOUT_FACE_COUNT:
        raise ValueError(f"seed {seed} with n {n} leaves the held-out face seed range")
    faces = [render_faces(1, size, seed=first + i).images[0].add(1).div(2).clamp(0, 1) for i in range(n_faces)]
    crop_gen = torch.Generator().manual_seed(seed)
    images, sources, names = [], [], []
    for i in range(n):
        if i % 2 == 0:
            images.append(faces[i // 2])
            sources.append("faces")
            names.append(f"face:{first + i // 2}")
        else:
            name = HELDOUT_PHOTOS[(i // 2) % len(HELDOUT_PHOTOS)]
            images.append(random_crops((name,), 1, size, crop_gen)[0])
            sources.append("photos")
            names.append(name)
    masks = random_masks(n, size, torch.Generator().manual_seed(seed + 1))
    return HeldOut(torch.stack(images), masks, sources, names)
