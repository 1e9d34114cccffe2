"""Tensor math of "Editing in Style: Uncovering the Local Semantics of GANs" (Collins et al., CVPR 2020).

Pure torch, no I/O: spherical k-means on generator activations (clusters = object parts), the
contribution matrix M[k, c] of each channel c to each cluster k, the queries q that pick channels
for a part, and the per-channel interpolation of style vectors sigma_G = sigma_S + q (sigma_R - sigma_S).

Shapes: N batch, C channels, H x W spatial, K clusters, M (in k-means) number of vectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Defaults of the sequential query live with the API contract (schemas/style.py, see there why).
from schemas.style import SEQUENTIAL_EPSILON, SEQUENTIAL_RHO  # noqa: E402  (re-exported)

# Elements per temporary block (similarities, float64 squared deviations); ~32 MiB in float64.
_BLOCK = 1 << 22


# --------------------------------------------------------------------------- spherical k-means


def _check_vectors(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating (M, C) tensor, got {_describe(x)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(x.shape)}")


def _describe(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"tensor of shape {tuple(t.shape)} and dtype {t.dtype}"
    return repr(type(t).__name__)


def _inverse_norms(x: torch.Tensor) -> torch.Tensor:
    """1/||x_m|| per row, 0 for zero rows (so they stay zero after scaling). (M,)"""
    norms = torch.linalg.vector_norm(x, dim=1)
    return torch.where(norms > 0, 1.0 / norms.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(norms))


def _chunks(m: int, k: int, c: int) -> range:
    return range(0, m, max(1, _BLOCK // max(k, c, 1)))


def _assign(x: torch.Tensor, inv: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels (M,) long, cosine to the chosen centroid (M,)); the M x K similarity is built in chunks.

    Ties (and zero rows, whose similarity is 0 everywhere) go to the lowest cluster index.
    """
    m, k = x.shape[0], centroids.shape[0]
    labels = torch.empty(m, dtype=torch.long, device=x.device)
    best = torch.empty(m, dtype=x.dtype, device=x.device)
    step = _chunks(m, k, x.shape[1]).step
    for s in range(0, m, step):
        sim = (x[s : s + step] @ centroids.T) * inv[s : s + step, None]
        best[s : s + step], labels[s : s + step] = sim.max(dim=1)
    return labels, best


def _sample(weights: torch.Tensor, gen: torch.Generator) -> int:
    """Index drawn with probability proportional to weights (>= 0, positive sum).

    Inverse-CDF with searchsorted rather than torch.multinomial: no 2**24 category limit.
    """
    cdf = torch.cumsum(weights.double(), 0)
    u = torch.rand((), generator=gen, dtype=torch.float64) * cdf[-1]
    # right=True lands on the first index whose cdf exceeds u, which always has positive weight
    return int(torch.searchsorted(cdf, u.reshape(1), right=True).clamp_max(len(cdf) - 1))


def _kmeans_pp(x: torch.Tensor, inv: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding with cosine distance 1 - cos (= half the squared chord on the sphere). (K, C)"""
    nonzero = (inv > 0).to(torch.float64)
    centroids = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    dist = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)  # first pick: uniform
    for j in range(k):
        weights = dist.clamp_min(0) * nonzero  # zero rows would give zero centroids: never pick them
        if not weights.sum() > 0:  # fewer distinct directions than k: any non-zero row will do
            weights = nonzero
        i = _sample(weights.cpu(), gen)
        centroids[j] = x[i] * inv[i]
        d = (1.0 - (x @ centroids[j]) * inv).double()  # matvec then scale: no normalised copy of x
        dist = d if j == 0 else torch.minimum(dist, d)
    return centroids


def _update(x: torch.Tensor, inv: torch.Tensor, labels: torch.Tensor, best: torch.Tensor, k: int) -> torch.Tensor:
    """Normalised member means (K, C); empty clusters re-seeded in place (labels is modified).

    An empty cluster takes the non-zero point farthest (lowest cosine) from its centroid among
    clusters with more than one member, so re-seeding never empties another cluster.
    """
    m, c = x.shape
    sums = torch.zeros(k, c, dtype=torch.float64, device=x.device)
    step = _chunks(m, 1, c).step
    for s in range(0, m, step):
        sums.index_add_(0, labels[s : s + step], (x[s : s + step] * inv[s : s + step, None]).double())
    nonzero = inv > 0
    counts = torch.bincount(labels[nonzero], minlength=k)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        score = best.double().clone()
        score[~nonzero | (counts[labels] <= 1)] = math.inf
        for j, i in zip(empty, torch.argsort(score, stable=True)[: len(empty)].tolist()):
            if not math.isfinite(float(score[i])):
                break  # no point left to spare; the cluster stays empty
            point = (x[i] * inv[i]).double()
            sums[labels[i]] -= point
            sums[j] = point
            labels[i] = j
    return (sums / torch.linalg.vector_norm(sums, dim=1, keepdim=True).clamp_min(1e-300)).to(x.dtype)


def spherical_kmeans(x: torch.Tensor, k: int, *, iterations: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means of the rows of x (M, C) -> (centroids (K, C) unit norm, labels (M,) long).

    Rows are L2-normalised first, so the result does not depend on their lengths; zero rows stay
    zero, take no part in seeding or centroids, and are labelled 0. Seeding is k-means++ with
    cosine distance, drawn from a CPU ``torch.Generator`` seeded with ``seed`` (deterministic).
    Each Lloyd step assigns every row to the centroid of highest cosine similarity and sets each
    centroid to the normalised mean of its members; an empty cluster is re-seeded with the point
    farthest from its centroid. Stops when no label changes, or after ``iterations`` steps.
    Returned labels are always the assignment to the returned centroids (``assign_clusters``).
    The M x K similarity is computed in chunks, so M ~ 500k rows of C = 128 needs little memory.
    Computes in x's dtype (float64 for the centroid sums) on x's device.
    """
    _check_vectors(x)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative int, got {iterations!r}")
    inv = _inverse_norms(x)
    n_nonzero = int((inv > 0).sum())
    if n_nonzero < k:
        raise ValueError(f"need at least k={k} non-zero rows, x has {n_nonzero}")

    gen = torch.Generator().manual_seed(int(seed))
    centroids = _kmeans_pp(x, inv, k, gen)
    labels, best = _assign(x, inv, centroids)
    for _ in range(iterations):
        centroids = _update(x, inv, labels.clone(), best, k)
        new_labels, best = _assign(x, inv, centroids)
        converged = torch.equal(new_labels, labels)
        labels = new_labels
        if converged:
            break
    return centroids, labels


def assign_clusters(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Labels (M,) long: for each row of x (M, C), the centroid (K, C) of highest cosine similarity.

    Both are L2-normalised first; zero rows (and ties) go to the lowest index. Chunked like
    ``spherical_kmeans``.
    """
    _check_vectors(x)
    _check_vectors(centroids, "centroids")
    if centroids.shape[1] != x.shape[1]:
        raise ValueError(f"centroids have {centroids.shape[1]} channels, x has {x.shape[1]}")
    cen = (centroids * _inverse_norms(centroids)[:, None]).to(device=x.device, dtype=x.dtype)
    return _assign(x, _inverse_norms(x), cen)[0]


# --------------------------------------------------------------------------- contribution matrix


def _check_maps(t: torch.Tensor, name: str) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 4 or not t.is_floating_point():
        raise ValueError(f"{name} must be a floating (N, C, H, W) tensor, got {_describe(t)}")
    if t.numel() == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(t.shape)}")


def _batch_step(a: torch.Tensor) -> int:
    return max(1, _BLOCK // max(1, a[0].numel()))


def _channel_stats(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, population std) per channel over (n, h, w), float64 (C,), std = 0 for constant channels.

    Two passes (mean, then squared deviations) in float64, chunked over N. Constancy is tested
    exactly (max == min): a float64 mean of identical float32 values can be off by an ulp, which
    would leave a tiny spurious variance and blow the channel up to +-1 noise.
    """
    count = a.shape[0] * a.shape[2] * a.shape[3]
    step = _batch_step(a)
    total = torch.zeros(a.shape[1], dtype=torch.float64, device=a.device)
    for s in range(0, a.shape[0], step):
        total += a[s : s + step].double().sum(dim=(0, 2, 3))
    mean = total / count
    sq = torch.zeros_like(total)
    for s in range(0, a.shape[0], step):
        sq += (a[s : s + step].double() - mean[None, :, None, None]).square().sum(dim=(0, 2, 3))
    constant = a.amax(dim=(0, 2, 3)) == a.amin(dim=(0, 2, 3))
    std = torch.where(constant, torch.zeros_like(sq), (sq / count).sqrt())
    return mean, std


def _standardized64(a: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    z = (a.double() - mean[None, :, None, None]) / torch.where(std > 0, std, 1.0)[None, :, None, None]
    return z * (std > 0)[None, :, None, None]


def standardize_channels(a: torch.Tensor) -> torch.Tensor:
    """Per-channel zero mean, unit population variance over (n, h, w): (N, C, H, W) -> same, a's dtype.

    Variance divides by the count N*H*W (not count - 1), so mean over (n, h, w) of the result
    squared is 1 for every non-constant channel. A constant channel (zero variance) becomes all
    zeros: it carries no spatial information, so it belongs to no part and gets zero contribution.
    """
    _check_maps(a, "activations")
    mean, std = _channel_stats(a)
    return _standardized64(a, mean, std).to(a.dtype)


def membership_from_labels(labels: torch.Tensor, k: int, size: tuple[int, int]) -> torch.Tensor:
    """One-hot memberships (N, K, H, W) float32 of label maps (N, h, w) long with values in [0, k).

    The label map is resized to ``size`` = (H, W) by nearest neighbour (torch 'nearest': source
    index floor(dst * in / out)), as the official code resizes its one-hot heatmaps.
    """
    integer = isinstance(labels, torch.Tensor) and not (
        labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool
    )
    if not integer or labels.dim() != 3:
        raise ValueError(f"labels must be an integer (N, h, w) tensor, got {_describe(labels)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not isinstance(size, Sequence) or len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"size must be a pair of positive ints (H, W), got {size!r}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise ValueError(f"labels must lie in [0, {k}), got range [{int(labels.min())}, {int(labels.max())}]")
    one_hot = F.one_hot(labels.long(), k).permute(0, 3, 1, 2).float()
    return F.interpolate(one_hot, size=tuple(size), mode="nearest")


def contribution_matrix(activations: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
    """M (K, C) float32: M[k, c] = 1/(N H W) * sum_{n,h,w} A_std[n, c, h, w]**2 * U[n, k, h, w].

    activations (N, C, H, W); membership U (N, K, H, W), already at the activations' H x W.
    A_std = ``standardize_channels(activations)``, so for memberships whose rows sum to 1 over k
    (one-hot) every column M[:, c] sums to 1: the share of channel c's energy inside each cluster;
    a constant channel gets a zero column. Accumulated in float64, chunked over N.
    """
    _check_maps(activations, "activations")
    _check_maps(membership, "membership")
    n, _, h, w = activations.shape
    if membership.shape[0] != n or tuple(membership.shape[2:]) != (h, w):
        raise ValueError(
            f"membership {tuple(membership.shape)} must be (N={n}, K, H={h}, W={w}) to match "
            f"activations {tuple(activations.shape)}; resize it first"
        )
    mean, std = _channel_stats(activations)
    out = torch.zeros(membership.shape[1], activations.shape[1], dtype=torch.float64, device=activations.device)
    step = _batch_step(activations)
    for s in range(0, n, step):
        energy = _standardized64(activations[s : s + step], mean, std).square()
        out += torch.einsum("nkhw,nchw->kc", membership[s : s + step].to(energy), energy)
    return (out / (n * h * w)).float()


def part_contribution(m: torch.Tensor, part_weights: torch.Tensor) -> torch.Tensor:
    """Contribution of a part (C,) = part_weights (K,) @ m (K, C).

    A part may span several clusters (two clusters labelled "hair": weights 1 and 1); overlaps of
    a cluster with a user mask give fractional weights. Weights must be >= 0.
    """
    if not isinstance(m, torch.Tensor) or m.dim() != 2 or not m.is_floating_point():
        raise ValueError(f"m must be a floating (K, C) tensor, got {_describe(m)}")
    if not isinstance(part_weights, torch.Tensor) or part_weights.shape != (m.shape[0],):
        raise ValueError(f"part_weights must be a ({m.shape[0]},) tensor, got {_describe(part_weights)}")
    if bool((part_weights < 0).any()) or not bool(torch.isfinite(part_weights).all()):
        raise ValueError("part_weights must be finite and >= 0")
    return part_weights.to(m) @ m


# --------------------------------------------------------------------------- queries


def _check_rows(m_part: torch.Tensor) -> None:
    if not isinstance(m_part, torch.Tensor) or m_part.dim() not in (1, 2) or not m_part.is_floating_point():
        raise ValueError(f"m_part must be a floating (C,) or (N, C) tensor, got {_describe(m_part)}")


def _finite(value: float, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def simple_query(m_part: torch.Tensor, strength: float) -> torch.Tensor:
    """q_c = min(1, strength * m_part_c), clamped to [0, 1]; (C,) or (N, C) -> same shape."""
    _check_rows(m_part)
    strength = _finite(strength, "strength")
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    return (strength * m_part).clamp(0.0, 1.0)


def sequential_query(m_part: torch.Tensor, *, rho: float = SEQUENTIAL_RHO, epsilon: float = SEQUENTIAL_EPSILON) -> torch.Tensor:
    """Binary query of the paper's sequential rule; (C,) or (N, C) -> same shape, values 0 or 1.

    As in the official code (IVRL/GANLocalEditing, style_interpolator.py: the cumulative sums are
    built in StyleInterpolator.__init__, the query in StyleInterpolator._get_q), per row:
      1. order the channels by m_part descending;
      2. cost_i = cumulative sum of (1 - m_part) over the first i channels of that order,
         inclusive of channel i itself;
      3. q = 1 on the channels whose cost_i < epsilon (strict), 0 elsewhere;
      4. then q is multiplied by (m_part > rho) (strict), zeroing channels of low contribution.
    So q is exactly 0 or 1 (never scaled or fractional), and the chosen channels are the longest
    prefix of the ordering satisfying both tests (both are monotone along it). Ties in m_part are
    ordered by channel index (stable sort), which the official code leaves unspecified. The
    cumulative sum is computed in float64 here (float32 in the official code).
    """
    _check_rows(m_part)
    rho, epsilon = _finite(rho, "rho"), _finite(epsilon, "epsilon")
    rows = m_part.reshape(-1, m_part.shape[-1]).double()
    order = torch.argsort(rows, dim=1, descending=True, stable=True)
    ranked = rows.gather(1, order)
    chosen = (torch.cumsum(1.0 - ranked, dim=1) < epsilon) & (ranked > rho)
    q = torch.zeros_like(rows).scatter_(1, order, chosen.double())
    return q.to(m_part.dtype).reshape(m_part.shape)


def global_query(channels: int, strength: float) -> torch.Tensor:
    """q = strength for every channel: (channels,) float32; strength in [0, 1] (global style mixing)."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    strength = _finite(strength, "strength")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    return torch.full((channels,), strength, dtype=torch.float32)


# --------------------------------------------------------------------------- interpolation


def part_query(
    m: torch.Tensor,
    part_weights: torch.Tensor,
    rule: str,
    *,
    strength: float = 1.0,
    rho: float = SEQUENTIAL_RHO,
    epsilon: float = SEQUENTIAL_EPSILON,
) -> torch.Tensor:
    """Query q (C,) of one layer for one part by ``rule``: "simple" (strength), "sequential" (rho,
    epsilon) or "global" (strength everywhere; part_weights unused). m (K, C), part_weights (K,)."""
    if rule == "global":
        return global_query(m.shape[1], strength).to(m.device)
    m_part = part_contribution(m, part_weights)
    if rule == "simple":
        return simple_query(m_part, strength)
    if rule == "sequential":
        return sequential_query(m_part, rho=rho, epsilon=epsilon)
    raise ValueError(f"rule must be 'simple', 'sequential' or 'global', got {rule!r}")


def interpolate_styles(
    target: Sequence[torch.Tensor], reference: Sequence[torch.Tensor], queries: Sequence[torch.Tensor | None]
) -> list[torch.Tensor]:
    """Per layer l: sigma_G = sigma_S + q * (sigma_R - sigma_S), S = target, R = reference.

    target[l], reference[l]: (N, C_l), same shape, dtype and device. queries[l]: (C_l,) (shared by
    the batch), (N, C_l), or None (q = 0: the layer stays the target's). q must lie in [0, 1].
    Exact at the ends: where q == 0 the output equals the target and where q == 1 it equals the
    reference bit for bit (the plain formula can round at q = 1, or give NaN from inf * 0).
    Returns new tensors; the inputs are not modified.
    """
    if not (len(target) == len(reference) == len(queries)):
        raise ValueError(f"target, reference and queries need one entry per layer, got {len(target)}, {len(reference)}, {len(queries)}")
    out = []
    for layer, (s, r, q) in enumerate(zip(target, reference, queries)):
        if not isinstance(s, torch.Tensor) or s.dim() != 2 or not s.is_floating_point():
            raise ValueError(f"target[{layer}] must be a floating (N, C) tensor, got {_describe(s)}")
        if not isinstance(r, torch.Tensor) or r.shape != s.shape or r.dtype != s.dtype or r.device != s.device:
            raise ValueError(f"reference[{layer}] must match target[{layer}] ({tuple(s.shape)}, {s.dtype}), got {_describe(r)}")
        if q is None:
            out.append(s.clone())
            continue
        if not isinstance(q, torch.Tensor) or q.shape not in (s.shape[1:], s.shape):
            raise ValueError(f"queries[{layer}] must be ({s.shape[1]},) or {tuple(s.shape)}, got {_describe(q)}")
        q = q.to(device=s.device, dtype=s.dtype)
        if not bool(((q >= 0) & (q <= 1)).all()):
            raise ValueError(f"queries[{layer}] must lie in [0, 1]")
        mixed = s + q * (r - s)
        out.append(torch.where(q == 1, r, torch.where(q == 0, s, mixed)))
    return out
