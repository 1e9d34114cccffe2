"""Procedural cartoon faces with ground-truth part masks.

They are the training data of the small StyleGAN2 demo (``training.train_stylegan2`` draws a fresh
batch every step, so rendering must be cheap) and the ground truth for measuring how local part
edits are (``training.style_parts``).

    batch = render_faces(64, 64, seed=0)
    batch.images              # (64, 3, 64, 64) float32 in [-1, 1]
    batch.part_mask("eyes")   # (64, 64, 64) bool

Every shape is an implicit function (an inequality) evaluated on a grid of normalised coordinates
(x right, y down, both in [-1, 1]) at ``resolution * supersample``. Shapes are painted back to front
into a map of *regions* (sclera, iris, lips, ...); each region has one colour per sample and belongs
to one part of :data:`PARTS`. Painting region ids instead of colours keeps a shape down to a few
whole-grid operations, and most shape terms depend on x only or y only, so they are computed on a
row or a column and only broadcast into the full grid at the final comparison. The image is then
average-pooled to ``resolution`` (antialiasing); a pixel's part is the part covering most of its
sub-samples, so the masks partition the image.

CLI, a preview grid of images and of colour-coded part maps:

    python -m training.data.faces --out DIR --n 16 --resolution 64 --seed 0
    python -m training.data.faces --out DIR --species --n 8 --resolution 32   # a row per species

Species faces (``render_species_faces``, class-conditional data for ``training.train_collage``):
every face is one of :data:`SPECIES`, which differ in head shape, eyes and mouth.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
from pathlib import Path

import torch

PARTS: tuple[str, ...] = ("background", "skin", "hair", "eyes", "nose", "mouth")

# Regions in painting order, back to front: a region's id is its depth, so painting is a max (see
# _render). Each has its own colour; _PART_STARTS says where each run of one part begins.
(BG, HAIR_BACK, NECK, EAR, SKIN, HAIR, NOSE, LID, SCLERA, IRIS, PUPIL, GLINT, LIPS, MOUTH_IN, TEETH) = range(15)
_PART_STARTS = ((HAIR_BACK, "hair"), (NECK, "skin"), (HAIR, "hair"), (NOSE, "nose"), (LID, "eyes"), (LIPS, "mouth"))

# Colour anchors (RGB in [0, 1]); samples interpolate between or jitter around them.
_SKIN = torch.tensor(
    [[0.99, 0.88, 0.80], [0.93, 0.75, 0.62], [0.82, 0.62, 0.47], [0.66, 0.46, 0.32], [0.45, 0.30, 0.20], [0.30, 0.20, 0.14]]
)
# black, dark brown, brown, blond, red, grey, white; the last weight is for dyed (random hue)
_HAIR = torch.tensor(
    [
        [0.07, 0.06, 0.06],
        [0.22, 0.13, 0.08],
        [0.42, 0.27, 0.15],
        [0.86, 0.72, 0.44],
        [0.66, 0.27, 0.11],
        [0.62, 0.62, 0.62],
        [0.90, 0.89, 0.86],
    ]
)
_HAIR_P = torch.tensor([0.22, 0.22, 0.18, 0.12, 0.08, 0.06, 0.03, 0.10])
_IRIS = torch.tensor(
    [[0.35, 0.20, 0.10], [0.20, 0.12, 0.07], [0.45, 0.40, 0.18], [0.25, 0.45, 0.25], [0.25, 0.45, 0.75], [0.45, 0.52, 0.58]]
)
_LIP = torch.tensor([0.75, 0.25, 0.28])

# Species (render_species_faces): cartoon creatures that differ in head, eye and mouth shape, with
# colours, hair and background drawn as for every face. Each entry overrides the generic uniform
# range of a draw (see _draw_faces; lengths in normalised coordinates, factors as there).
SPECIES: tuple[str, ...] = ("round", "cat", "owl", "frog")
_SPECIES_RANGES: dict[str, dict[str, tuple[float, ...]]] = {
    # round head, small dark dot eyes, a big (mostly open) grin, ears at the sides
    "round": dict(
        fa=(0.56, 0.63),
        fb=(0.58, 0.66),
        taper=(0.0, 0.08),
        eye_y=(-0.08, 0.02),
        nose_y=(0.28, 0.34),
        mouth_y=(0.24, 0.30),
        ea=(0.06, 0.075),
        eb=(0.92, 1.0),
        lw=(0.02, 0.03),
        sep=(0.32, 0.40),
        r=(0.95, 1.0),
        mw=(0.22, 0.30),
        smile=(0.55, 1.0),
        open=(0.9,),
        pupil_w=(0.75, 0.85),
        pupil_h=(0.75, 0.85),
        side_ears=(1.0,),
    ),
    # wide head with a pointed chin and pointed ears on top, long narrow almond eyes with a vertical
    # slit pupil, a small closed mouth
    "cat": dict(
        fa=(0.60, 0.68),
        fb=(0.52, 0.60),
        taper=(0.25, 0.45),
        eye_y=(-0.14, -0.04),
        nose_y=(0.34, 0.40),
        mouth_y=(0.16, 0.22),
        ea=(0.13, 0.16),
        eb=(0.36, 0.46),
        lw=(0.02, 0.03),
        sep=(0.40, 0.46),
        r=(0.60, 0.75),
        mw=(0.08, 0.12),
        smile=(0.25, 0.6),
        open=(0.15,),
        mh_closed=(0.035, 0.045),
        pupil_w=(0.16, 0.22),
        pupil_h=(1.1, 1.3),
        top_ears=(1.0,),
    ),
    # tall head tapering to the chin, huge round eyes without lids, close together, a tiny
    # downward beak-like mouth
    "owl": dict(
        fa=(0.50, 0.56),
        fb=(0.66, 0.74),
        taper=(0.35, 0.5),
        eye_y=(-0.22, -0.10),
        nose_y=(0.40, 0.46),
        mouth_y=(0.14, 0.20),
        ea=(0.17, 0.20),
        eb=(0.95, 1.0),
        lw=(0.0, 0.003),
        sep=(0.36, 0.41),
        r=(0.62, 0.75),
        mw=(0.06, 0.09),
        smile=(-0.9, -0.5),
        open=(0.0,),
        mh_closed=(0.07, 0.09),
        pupil_w=(0.5, 0.6),
        pupil_h=(0.5, 0.6),
    ),
    # very wide flat head, bulging eyes with thick lids on top of the head, set far apart, a very
    # wide thin mouth; horizontal pupils
    "frog": dict(
        fa=(0.72, 0.80),
        fb=(0.46, 0.54),
        taper=(0.0, 0.05),
        eye_y=(-0.62, -0.52),
        nose_y=(0.55, 0.62),
        mouth_y=(0.24, 0.32),
        ea=(0.11, 0.135),
        eb=(0.80, 0.92),
        lw=(0.045, 0.06),
        sep=(0.50, 0.56),
        r=(0.55, 0.65),
        mw=(0.45, 0.60),
        smile=(0.15, 0.4),
        open=(0.08,),
        mh_closed=(0.035, 0.045),
        pupil_w=(0.75, 0.85),
        pupil_h=(0.28, 0.36),
    ),
}

# Hair styles (per sample).
BALD, SHORT, LONG, BANGS, LONG_BANGS = range(5)
_STYLE_P = torch.tensor([0.10, 0.32, 0.26, 0.17, 0.15])
_FAR = 10.0  # an offset that moves a shape off the canvas: how a per-sample "not drawn" is expressed


@dataclasses.dataclass
class FaceBatch:
    """A rendered batch.

    images: (N, 3, R, R) float32 in [-1, 1].
    masks: (N, len(PARTS), R, R) bool, a partition: every pixel is in exactly one part, in the order of
        :data:`PARTS`; a part's mask is where it is visible in the image (after occlusion).
    """

    images: torch.Tensor
    masks: torch.Tensor
    species: torch.Tensor | None = None  # (N,) long ids into SPECIES (render_species_faces only)

    def part_mask(self, name: str) -> torch.Tensor:
        """(N, R, R) bool mask of part ``name`` (one of :data:`PARTS`)."""
        if name not in PARTS:
            raise ValueError(f"unknown part {name!r}; parts are {', '.join(PARTS)}")
        return self.masks[:, PARTS.index(name)]


class _Draw:
    """Random draws for a batch of n: scalars as (N, 1, 1), to broadcast against the (N, S, S) grid;
    colours as (N, 3).

    species: None, or (N,) long species ids; then :meth:`su` / :meth:`scoin` use the per-species
    ranges of :data:`_SPECIES_RANGES` where a species has one. Either way they consume exactly one
    ``rand(n, 1, 1)`` like :meth:`u` / :meth:`coin`, and without species they compute the same
    numbers, so ``render_faces`` (species=None) is unchanged by the species path.
    """

    def __init__(self, n: int, generator: torch.Generator, species: torch.Tensor | None = None):
        self.n, self.g, self.species = n, generator, species

    def u(self, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(self.n, 1, 1, generator=self.g)

    def coin(self, p: float) -> torch.Tensor:
        return torch.rand(self.n, 1, 1, generator=self.g) < p

    def _table(self, key: str, default) -> torch.Tensor:
        """Per-sample (N, 1, 1[, 2]) values of ``key`` from the species table (default where absent)."""
        rows = [_SPECIES_RANGES[name].get(key, default) for name in SPECIES]
        return torch.tensor(rows, dtype=torch.float32)[self.species].view(self.n, 1, 1, -1)

    def su(self, key: str, lo: float, hi: float) -> torch.Tensor:
        """Uniform in [lo, hi], or in the sample's species range for ``key``."""
        if self.species is None:
            return self.u(lo, hi)
        r = self._table(key, (lo, hi))
        return r[..., 0] + (r[..., 1] - r[..., 0]) * torch.rand(self.n, 1, 1, generator=self.g)

    def scoin(self, key: str, p: float) -> torch.Tensor:
        """True with probability p, or with the sample's species probability for ``key``."""
        if self.species is None:
            return self.coin(p)
        return torch.rand(self.n, 1, 1, generator=self.g) < self._table(key, (p,))[..., 0]

    def choice(self, probs: torch.Tensor) -> torch.Tensor:
        """(N,) indices drawn with probabilities ``probs`` (K,)."""
        return torch.multinomial(probs, self.n, replacement=True, generator=self.g)

    def jitter(self, colours: torch.Tensor, amount: float) -> torch.Tensor:
        """colours (N, 3) plus uniform noise in [-amount, amount] per channel."""
        return colours + amount * (2 * torch.rand(self.n, 3, generator=self.g) - 1)

    def along(self, anchors: torch.Tensor) -> torch.Tensor:
        """(N, 3) colours uniformly along the polyline through ``anchors`` (K, 3) (a tone range)."""
        t = torch.rand(self.n, generator=self.g) * (len(anchors) - 1)
        i = t.floor().long().clamp(max=len(anchors) - 2)
        f = (t - i).unsqueeze(1)
        return anchors[i] * (1 - f) + anchors[i + 1] * f

    def hue(self, saturation: tuple[float, float], value: tuple[float, float]) -> torch.Tensor:
        """(N, 3) RGB colours of random hue with saturation and value drawn from the given ranges."""
        h = torch.rand(self.n, 1, generator=self.g)
        s = self.u(*saturation).view(-1, 1)
        v = self.u(*value).view(-1, 1)
        k = (torch.tensor([5.0, 3.0, 1.0]) + 6 * h) % 6  # HSV -> RGB without branches
        return v - v * s * (torch.minimum(k, 4 - k).clamp(0, 1))


# Masks on the supersampled grid are float 0/1 tensors: on CPU a float compare written in place
# costs a fraction of one that produces bool, and AND / OR / NOT become *, maximum, 1 - m.


def _ellipse(x: torch.Tensor, y: torch.Tensor, cx, cy, a, b) -> torch.Tensor:
    """Float 0/1 (N, S, S): inside the ellipse of centre (cx, cy) and half-axes (a, b).

    x (N|1, 1, S) and y (N|1, S, 1); the squares are taken on a row and a column and only their sum
    is full size.
    """
    return (((x - cx) / a).square() + ((y - cy) / b).square()).lt_(1)


def _less(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Float 0/1 mask of a < b (broadcast; at least one of them full size)."""
    return (a - b).lt_(0)


def _pool_sum(t: torch.Tensor, k: int) -> torch.Tensor:
    """(..., S, S) -> (..., S/k, S/k): sums over k x k blocks (strided adds beat avg_pool2d on CPU)."""
    rows = t[..., 0::k]
    for i in range(1, k):
        rows = rows + t[..., i::k]
    out = rows[..., 0::k, :]
    for i in range(1, k):
        out = out + rows[..., i::k, :]
    return out


def _check(n, resolution, seed, generator, supersample) -> None:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if not is_int(n) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not is_int(resolution) or resolution < 16:
        raise ValueError(f"resolution must be an int >= 16, got {resolution!r}")
    if not is_int(supersample) or not 1 <= supersample <= 8:
        raise ValueError(f"supersample must be an int in [1, 8], got {supersample!r}")
    if seed is not None and generator is not None:
        raise ValueError("give either seed or generator, not both")
    if seed is not None and not (is_int(seed) and 0 <= seed < 2**64):
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def render_faces(
    n: int, resolution: int = 64, *, seed: int | None = None, generator: torch.Generator | None = None, supersample: int = 2
) -> FaceBatch:
    """Render ``n`` random, roughly centred cartoon faces with their part masks.

    n: batch size (>= 1).
    resolution: output side R in pixels (>= 16). Shapes are in normalised coordinates, so a seed
        gives the same faces at every resolution, only sampled more or less finely.
    seed / generator: the randomness, at most one of them; the same seed gives the same batch; a
        generator is advanced (successive calls give fresh batches); neither: torch's global RNG.
    supersample: sub-samples per pixel side (1 = no antialiasing); cost grows with its square.

    Returns a :class:`FaceBatch` (images (n, 3, R, R) in [-1, 1], masks (n, len(PARTS), R, R) bool).
    """
    _check(n, resolution, seed, generator, supersample)
    if generator is None:
        generator = torch.Generator().manual_seed(seed) if seed is not None else torch.default_generator
    return _render_batch(_draw_faces(_Draw(n, generator)), n, resolution, supersample)


def render_species_faces(
    n: int, resolution: int = 64, *, seed: int | None = None, generator: torch.Generator | None = None, species=None, supersample: int = 2
) -> FaceBatch:
    """Like :func:`render_faces`, but every face is one of the cartoon :data:`SPECIES`, which differ
    in head shape (and ears), eye shape and mouth shape; colours, hair and background are drawn as
    for every face. The class-conditional training data of ``training.train_collage``.

    species: None (drawn uniformly from the seed / generator, before the faces), or the ``n``
        per-sample species ids (a sequence of ints or a (n,) integer tensor, each in
        [0, len(SPECIES))). The returned batch's ``species`` holds the ids.
    """
    _check(n, resolution, seed, generator, supersample)
    if generator is None:
        generator = torch.Generator().manual_seed(seed) if seed is not None else torch.default_generator
    if species is None:
        species = torch.randint(len(SPECIES), (n,), generator=generator)
    else:
        species = torch.as_tensor(species)
        if species.shape != (n,) or species.dtype.is_floating_point or species.dtype == torch.bool:
            raise ValueError(f"species must be {n} integer ids, got {tuple(species.shape)} {species.dtype}")
        species = species.long()
        if n and (species.min() < 0 or species.max() >= len(SPECIES)):
            raise ValueError(f"species ids must be in [0, {len(SPECIES)}), got {species.tolist()}")
    batch = _render_batch(_draw_faces(_Draw(n, generator, species)), n, resolution, supersample)
    batch.species = species.clone()
    return batch


def _render_batch(params: "_Params", n: int, resolution: int, supersample: int) -> FaceBatch:
    # The grid work runs on chunks of about 2**18 sub-samples a tensor (1 MB of float32), which stay
    # in cache; whole-batch tensors at 128 px and more would not.
    chunk = max(1, 2**18 // (resolution * supersample) ** 2)
    # Single-threaded: intra-op threads gain little on hundreds of small ops, and on a busy machine
    # each op's thread barrier can wait out a scheduler slice (seen: 3 s instead of 40 ms for 32
    # faces at 64 px, 2 threads on 2 loaded cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        parts = [
            _render(_Params(**{k: v[i : i + chunk] for k, v in vars(params).items()}), resolution, supersample) for i in range(0, n, chunk)
        ]
        return FaceBatch(images=torch.cat([p[0] for p in parts]), masks=torch.cat([p[1] for p in parts]))
    finally:
        torch.set_num_threads(threads)


class _Params(types.SimpleNamespace):
    """A batch's random choices: tensors with the batch first, (N, 1, 1) for scalars (lengths in
    normalised coordinates), (N, 3) for colours, (N, 3, regions) for the palette."""


def _draw_faces(d: _Draw) -> _Params:
    """Every random choice of a batch, drawn at once so that chunking the rendering changes nothing.

    With ``d.species`` set, the head, eye and mouth geometry come from the species' ranges
    (``d.su`` / ``d.scoin``) and a few species-only parameters are drawn at the end."""
    p = _Params()
    n = d.n

    # Head layout, the way aligned face photos are: centred, eyes about half-way down.
    p.cx, p.cy = d.u(-0.04, 0.04), d.u(0.0, 0.08)
    p.fa, p.fb = d.su("fa", 0.47, 0.57), d.su("fb", 0.62, 0.72)  # face half-width, half-height
    p.taper = d.su("taper", 0.0, 0.3)  # narrows the jaw: the half-width shrinks below the centre
    p.eye_y = p.cy + p.fb * d.su("eye_y", -0.14, 0.0)
    p.nose_y = p.eye_y + p.fb * d.su("nose_y", 0.30, 0.38)
    p.mouth_y = p.nose_y + p.fb * d.su("mouth_y", 0.22, 0.30)

    # Hair: long hair sits behind everything; a cap (top of the head, maybe with bangs) goes over
    # the face's top. A shape a sample does not have is moved _FAR off the canvas.
    style = d.choice(_STYLE_P).view(n, 1, 1)
    has_long = (style == LONG) | (style == LONG_BANGS)
    has_bangs = (style == BANGS) | (style == LONG_BANGS)
    p.cap_a, p.cap_b = p.fa * d.u(1.06, 1.20), p.fb * d.u(0.85, 1.0)
    p.cap_cy = p.cy - p.fb - d.u(0.05, 0.20) + p.cap_b  # the cap's top is a little above the face's
    p.cap_off = (style == BALD) * _FAR
    p.long_w = torch.where(has_long, p.fa * d.u(1.15, 1.45), -_FAR)  # half-width at cy ...
    p.long_flare = d.u(0.0, 0.25)  # ... growing by this much per unit down
    p.long_off = (~has_long) * _FAR
    p.ends, p.ends_f, p.ends_ph = d.u(0.55, 1.05), d.u(14, 24), d.u(0, 6.3)  # ragged ends: |sin| in x

    # Eyes (needed for the fringe, which must stay above them).
    p.ea = d.su("ea", 0.085, 0.125)  # eye half-width: 5.5 to 8 px an eye at 64 px
    p.eb = p.ea * torch.where(d.coin(0.3), d.su("eb", 0.38, 0.55), d.su("eb", 0.60, 0.85))  # some narrowed
    p.lw = d.su("lw", 0.018, 0.03)  # outline
    p.sep = p.fa * d.su("sep", 0.36, 0.46)  # eye centres at cx +- sep
    p.r = p.ea * d.su("r", 0.45, 0.62)  # iris radius
    p.gx, p.iris_y = p.ea * d.u(-0.3, 0.3), p.eye_y + p.eb * d.u(-0.25, 0.15)  # gaze
    p.glint_off = d.coin(0.3) * _FAR

    # Hairline: an arch, or for bangs a tilted ragged fringe above the eyes.
    p.wave, p.wave_f, p.wave_ph = d.u(0.02, 0.06), d.u(12, 22), d.u(0, 6.3)
    fringe = torch.minimum(p.cy - p.fb * d.u(0.12, 0.32), p.eye_y - p.eb - p.lw - 0.03 - p.wave)
    p.hairline = torch.where(has_bangs, fringe, p.cy - p.fb * d.u(0.42, 0.60))
    p.hairline_curve = torch.where(has_bangs, 0.0, d.u(-0.2, 0.5))
    p.hairline_tilt = torch.where(has_bangs, d.u(-0.1, 0.1), 0.0)
    p.wave = torch.where(has_bangs, p.wave, 0.0)
    p.ear_y = p.eye_y + d.u(0.03, 0.10)
    # beside the face the cap reaches the temples, or the ears' level where long hair goes on below
    p.side_cut = torch.where(has_long, p.ear_y + 0.1, p.eye_y - d.u(0.0, 0.08))

    p.neck_w = p.fa * d.u(0.42, 0.55)
    p.ear_x, p.ear_a, p.ear_b = p.fa * d.u(0.93, 1.0), d.u(0.07, 0.10), d.u(0.11, 0.15)
    p.ear_off = (has_long & d.coin(0.9)) * _FAR  # long hair hides the ears, mostly

    # Nose: a rounded blob or a triangle pointing up.
    p.nw, p.nh = d.u(0.05, 0.085), d.u(0.07, 0.11)
    is_blob = d.coin(0.5)
    p.blob_off, p.tri_on = (~is_blob) * _FAR, ~is_blob

    # Mouth: an ellipse bent along a parabola (smile > 0 lifts the corners), at most 3/4 of the
    # face's width there; closed ones are a thin lip line, open ones have a dark inside and
    # sometimes a row of teeth along the top.
    rel = (p.mouth_y - p.cy) / p.fb
    face_half_w = p.fa * (1 - p.taper * rel) * (1 - rel.square()).clamp(min=0).sqrt()
    p.mw = torch.minimum(d.su("mw", 0.19, 0.30), 0.75 * face_half_w)  # half-width: 12 to 19 px at 64 px
    p.smile = d.su("smile", -0.15, 0.9) / p.mw
    is_open = d.scoin("open", 0.55)
    p.mh = torch.where(is_open, d.su("mh_open", 0.06, 0.12), d.su("mh_closed", 0.035, 0.05))
    p.inner_h = (p.mh - d.u(0.022, 0.035)).clamp(min=0.015)
    p.inner_off = (~is_open) * _FAR
    p.teeth_cut = torch.where(d.coin(0.5), -p.inner_h * d.u(0.2, 0.5), -_FAR)  # teeth where bent < this

    # Colours, one per region: the palette (N, 3, regions).
    skin = d.jitter(d.along(_SKIN), 0.03)
    hair_i = d.choice(_HAIR_P)
    dyed = (hair_i == len(_HAIR)).view(n, 1)
    hair = d.jitter(torch.where(dyed, d.hue((0.5, 0.9), (0.5, 0.9)), _HAIR[hair_i.clamp(max=len(_HAIR) - 1)]), 0.04)
    iris = d.jitter(_IRIS[d.choice(torch.ones(len(_IRIS)))], 0.05)
    lips = skin * d.u(0.5, 0.7).view(n, 1) + _LIP * d.u(0.25, 0.45).view(n, 1)
    white = torch.full((n, 3), 0.96)
    bg_a, bg_b = d.hue((0.0, 0.7), (0.3, 1.0)), d.hue((0.0, 0.7), (0.3, 1.0))
    colours = {
        BG: bg_a,
        HAIR_BACK: hair * 0.7,
        NECK: skin * 0.85,
        EAR: skin * 0.93,
        SKIN: skin,
        HAIR: hair,
        NOSE: skin * d.u(0.65, 0.8).view(n, 1),
        LID: skin * 0.25,
        SCLERA: d.jitter(white, 0.03),
        IRIS: iris,
        PUPIL: iris * 0.15,
        GLINT: white,
        LIPS: lips,
        MOUTH_IN: lips * 0.25,
        TEETH: d.jitter(white * 0.97, 0.03),
    }
    p.palette = torch.stack([colours[k] for k in range(len(colours))], dim=2)

    # Background: bg_a blends into bg_b along a random gradient plus a low-frequency texture.
    p.bg_diff = (bg_b - bg_a).view(n, 3, 1, 1)
    angle, slope = d.u(0, 2 * math.pi), d.u(0.0, 0.5)
    p.grad_x, p.grad_y = slope * torch.cos(angle), slope * torch.sin(angle)
    p.tex = torch.cat(
        [torch.cat([d.u(0.0, 0.25), d.u(0.5, 4.0), d.u(0, 6.3), d.u(0.5, 4.0), d.u(0, 6.3)], 2) for _ in range(3)], 1
    )  # (N, 3 terms, amplitude fx phase_x fy phase_y)
    p.streak_f, p.streak_ph = d.u(20, 35), d.u(0, 6.3)  # hair streaks
    if d.species is not None:
        _species_extras(d, p)
    return p


def _species_extras(d: _Draw, p: _Params) -> None:
    """Species-only shapes: pupil proportions, which species keep side ears, cat ears on top."""
    p.species = d.species
    p.pupil_w = p.r * d.su("pupil_w", 0.5, 0.5)  # pupil half-axes (the generic pupil is r / 2)
    p.pupil_h = p.r * d.su("pupil_h", 0.5, 0.5)
    side_ears = d._table("side_ears", (0.0,))[..., 0] > 0
    p.ear_off = torch.where(side_ears, p.ear_off, torch.full_like(p.ear_off, _FAR))
    # Pointed ears on top of the head (cats): triangles from apex (x = +-top_ear_x, top_ear_apex)
    # down to a base of half-width top_ear_hw at top_ear_base, painted behind the head.
    p.top_ear_on = d._table("top_ears", (0.0,))[..., 0] > 0
    p.top_ear_x = p.fa * d.u(0.52, 0.64)
    p.top_ear_base = p.cy - p.fb * d.u(0.55, 0.70)
    p.top_ear_apex = p.cy - p.fb - d.u(0.20, 0.32)
    p.top_ear_hw = p.fa * d.u(0.26, 0.34)


def _render(p: _Params, resolution: int, supersample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, R, R) in [-1, 1] and masks (N, len(PARTS), R, R) bool of the faces ``p``."""
    n, size = len(p.cx), resolution * supersample
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) * (2 / size) - 1  # pixel centres
    x, y = coords.view(1, 1, size), coords.view(1, size, 1)
    # Region ids (float, exact small integers) are depths, so painting a shape in front is a max.
    ids = torch.zeros(n, size, size)

    def paint(region: int, inside: torch.Tensor) -> None:
        torch.maximum(ids, inside * region, out=ids)

    dx = x - p.cx  # (N, 1, S): most shapes are symmetric about the face's axis
    adx = dx.abs()

    # Long hair: sides from the cap's centre line down to the ragged ends, and a rounded top.
    from_top = torch.where(y > p.cap_cy, 0.0, -_FAR)  # (N, S, 1)
    ends = p.ends + 0.04 * torch.sin(x * p.ends_f + p.ends_ph).abs()  # (N, 1, S)
    sides = _less(adx, p.long_w + p.long_flare * (y - p.cy) + from_top) * _less(y, ends)
    paint(HAIR_BACK, torch.maximum(sides, _ellipse(x, y, p.cx, p.cap_cy + p.long_off, p.long_w, p.cap_b * 1.08)))
    if hasattr(p, "top_ear_on"):  # species: pointed ears on top (fur: hair colour, behind the head)
        in_rows = (y > p.top_ear_apex) & (y < p.top_ear_base) & p.top_ear_on
        ear_w = torch.where(in_rows, p.top_ear_hw * (y - p.top_ear_apex) / (p.top_ear_base - p.top_ear_apex), -1.0)
        paint(HAIR_BACK, _less((adx - p.top_ear_x).abs(), ear_w))

    # Neck and ears, then the face over them.
    paint(NECK, _less(adx, p.neck_w + torch.where(y > p.cy, 0.0, -_FAR)))
    paint(EAR, _ellipse(adx, y, p.ear_x, p.ear_y + p.ear_off, p.ear_a, p.ear_b))
    half_w = p.fa * (1 - p.taper * ((y - p.cy) / p.fb).clamp(min=0))  # (N, S, 1)
    face_q = (dx / half_w).square() + ((y - p.cy) / p.fb).square()  # < 1 inside; also the shading
    face = _less(face_q, 1)
    paint(SKIN, face)

    # Cap: inside its ellipse, above the hairline or beside the face (above side_cut).
    hairline = p.hairline + p.hairline_curve * dx.square() + p.hairline_tilt * dx
    hairline = hairline + p.wave * torch.sin(x * p.wave_f + p.wave_ph).abs()  # (N, 1, S)
    beside = (face_q + torch.where(y < p.side_cut, 0.0, -_FAR)).ge_(1)
    cap = _ellipse(x, y, p.cx, p.cap_cy + p.cap_off, p.cap_a, p.cap_b)
    paint(HAIR, cap * torch.maximum(_less(y, hairline), beside))

    # Nose.
    top = p.nose_y - p.nh
    tri_w = torch.where((y > top) & (y < p.nose_y + 0.3 * p.nh) & p.tri_on, p.nw * (y - top) / (1.3 * p.nh), -1.0)
    blob = _ellipse(x, y, p.cx + p.blob_off, p.nose_y, p.nw, p.nh * 0.7)
    paint(NOSE, torch.maximum(_less(adx, tri_w), blob))

    # Eyes: one shape for both, mirrored through |x - cx|; an outline ring (LID) around the sclera.
    # The iris is shifted by the same gaze in both eyes, so it is mirrored about cx + gaze.
    paint(LID, _ellipse(adx, y, p.sep, p.eye_y, p.ea + p.lw, p.eb + p.lw))
    sclera = _ellipse(adx, y, p.sep, p.eye_y, p.ea, p.eb)
    paint(SCLERA, sclera)
    ix = (dx - p.gx).abs()
    paint(IRIS, sclera * _ellipse(ix, y, p.sep, p.iris_y, p.r, p.r))
    if hasattr(p, "pupil_w"):  # species: slit or dot pupils
        paint(PUPIL, sclera * _ellipse(ix, y, p.sep, p.iris_y, p.pupil_w, p.pupil_h))
    else:
        paint(PUPIL, sclera * _ellipse(ix, y, p.sep, p.iris_y, p.r * 0.5, p.r * 0.5))
    glint_x = (dx - p.gx - 0.35 * p.r).abs()
    paint(GLINT, sclera * _ellipse(glint_x, y, p.sep, p.iris_y - 0.35 * p.r + p.glint_off, p.r * 0.28, p.r * 0.28))

    # Mouth.
    bent = y - p.mouth_y + p.smile * dx.square()  # y relative to the bent centre line
    paint(LIPS, ((dx / p.mw).square() + (bent / p.mh).square()).lt_(1))
    inner = (((dx - p.inner_off) / (p.mw * 0.86)).square() + (bent / p.inner_h).square()).lt_(1)
    paint(MOUTH_IN, inner)
    paint(TEETH, inner * _less(bent, p.teeth_cut))

    # Colours from the palette by region id.
    index = ids.to(torch.uint8).long().view(n, 1, -1).expand(n, 3, -1)
    image = torch.gather(p.palette, 2, index).view(n, 3, size, size)

    def is_region(k: int) -> torch.Tensor:  # float 0/1; ids are exact integers
        return (1 - (ids - k).abs()).clamp_(min=0)

    # Background texture: products of sines in x and in y, so each term costs one full-size product.
    field = p.grad_x * x + p.grad_y * y + 0.5
    for term in p.tex.unbind(1):
        amp, fx, phx, fy, phy = term.view(n, 5, 1, 1).unbind(1)  # each (N, 1, 1)
        field = field + amp * torch.sin(fx * x + phx) * torch.sin(fy * y + phy)
    image.addcmul_((field * is_region(BG)).unsqueeze(1), p.bg_diff)

    # Shading: darker towards the face's edge (a rounded head, also on the features painted on it)
    # and vertical streaks in the hair.
    streaks = 0.09 * torch.sin(x * p.streak_f + p.streak_ph)
    on_face = face - face * is_region(HAIR)
    shade = (0.05 - 0.17 * face_q).mul_(on_face).add_(1).addcmul_(streaks, is_region(HAIR) + is_region(HAIR_BACK))
    image = (image * shade.unsqueeze(1)).clamp_(0, 1)
    image = _pool_sum(image, supersample).mul_(2 / supersample**2).sub_(1)

    # Masks: per output pixel the part covering most sub-samples. Runs of region ids give counts of
    # "id >= start", whose differences are the runs' counts. Ties go to the part whose run is further
    # in front (features over skin), so thin features keep their pixels.
    at_least = [_pool_sum((ids - (start - 1)).clamp_(0, 1), supersample) for start, _ in _PART_STARTS]
    bounds = [torch.full_like(at_least[0], supersample**2), *at_least, torch.zeros_like(at_least[0])]
    counts = [torch.zeros_like(at_least[0]) for _ in PARTS]
    order = [PARTS.index(part) for part in ("background", *(part for _, part in _PART_STARTS))]
    for depth, part in enumerate(order):
        counts[part] += bounds[depth] - bounds[depth + 1]
    label = torch.zeros_like(at_least[0], dtype=torch.long)
    best = counts[0]
    for part in order:  # later in painting order wins ties: compare with >=
        label = torch.where(counts[part] >= best, part, label)
        best = torch.maximum(best, counts[part])
    masks = label.unsqueeze(1) == torch.arange(len(PARTS)).view(1, -1, 1, 1)
    return image, masks


# Part colours of the preview's part maps, in the order of PARTS.
PART_COLOURS = torch.tensor([[0.15, 0.15, 0.2], [0.95, 0.8, 0.6], [0.45, 0.25, 0.1], [0.2, 0.5, 1.0], [1.0, 0.9, 0.1], [0.9, 0.1, 0.2]])


def _grid(images: torch.Tensor, columns: int) -> torch.Tensor:
    """images (N, 3, R, R) in [0, 1] -> (3, rows*(R+2), columns*(R+2)) tiled with a 2 px gap."""
    n, _, r, _ = images.shape
    rows = -(-n // columns)
    canvas = torch.ones(3, rows * (r + 2), columns * (r + 2))
    for i, img in enumerate(images):
        top, left = (i // columns) * (r + 2) + 1, (i % columns) * (r + 2) + 1
        canvas[:, top : top + r, left : left + r] = img
    return canvas


def _save(grid: torch.Tensor, path: Path, scale: int) -> None:
    from PIL import Image

    pixels = (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (created)")
    parser.add_argument("--n", type=int, default=16, help="number of faces")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the PNGs")
    parser.add_argument("--species", action="store_true", help="render_species_faces: one row per species (of SPECIES), N faces a row")
    args = parser.parse_args(argv)
    if args.species:
        ids = torch.arange(len(SPECIES)).repeat_interleave(args.n)
        batch = render_species_faces(len(ids), args.resolution, seed=args.seed, species=ids)
        columns = args.n
        print("rows: " + ", ".join(SPECIES))
    else:
        batch = render_faces(args.n, args.resolution, seed=args.seed)
        columns = math.ceil(math.sqrt(args.n))
    part_maps = torch.einsum("nprc,pk->nkrc", batch.masks.float(), PART_COLOURS)
    args.out.mkdir(parents=True, exist_ok=True)
    _save(_grid((batch.images + 1) / 2, columns), args.out / "faces.png", args.scale)
    _save(_grid(part_maps, columns), args.out / "parts.png", args.scale)
    print(f"wrote {args.out / 'faces.png'} and {args.out / 'parts.png'}")


if __name__ == "__main__":
    main()
