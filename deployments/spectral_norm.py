"""Spectral norm, folded: public checkpoints store SN layers as (weight_orig, u, v); we store weights.

``torch.nn.utils.spectral_norm`` keeps ``weight_orig``, ``weight_u``, ``weight_v`` in the state dict and,
in eval mode, uses ``weight_orig / (u . (W v))``. Converters fold that into the plain weight
(:func:`spectral_norm_weight`); writers of public-format test files go the other way
(:func:`spectral_norm_vectors`). Shared by the BigGAN-deep and EdgeConnect converters.
"""

from __future__ import annotations

import torch


def as_matrix(weight: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The weight as spectral norm sees it: (size along ``dim``, everything else)."""
    return weight.movedim(dim, 0).reshape(weight.shape[dim], -1)


def spectral_norm_weight(weight_orig: torch.Tensor, weight_u: torch.Tensor, weight_v: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The weight an eval-mode ``torch.nn.utils.spectral_norm`` layer uses (same arithmetic as torch):
    weight_orig / (u . (W v)), W = weight_orig as a matrix along ``dim`` (torch: 1 for transposed
    convolutions, 0 otherwise)."""
    sigma = torch.dot(weight_u, torch.mv(as_matrix(weight_orig, dim), weight_v))
    return weight_orig / sigma


def spectral_norm_vectors(weight: torch.Tensor, dim: int = 0, iterations: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v) for which ``spectral_norm_weight(weight, u, v)`` gives ``weight`` back.

    v: the top right singular vector of W (power iteration from a fixed start), unit length.
    u: W v / |W v|^2, so that u . (W v) = 1; it is the unit top left singular vector when W's spectral
    norm is 1, as it is after SN. One component of u is then stepped an ulp at a time towards a
    float32 product of exactly 1, which usually makes the round trip exact; for some weights the
    steps jump over 1 (about 1 in 100 to 1 in 600, depending on the CPU's kernels) and the folded
    weight comes back an ulp or so off. Callers compare round trips within 1e-6 relative.
    """
    matrix = as_matrix(weight.detach(), dim).double()
    v = torch.ones(matrix.shape[1], dtype=torch.float64)
    for _ in range(iterations):
        w_v = matrix.T @ (matrix @ v)
        if not torch.linalg.vector_norm(w_v) > 0:
            raise ValueError(f"a weight of shape {tuple(weight.shape)} that maps everything to 0 cannot be stored as spectral norm")
        v = w_v / torch.linalg.vector_norm(w_v)
    w_v = matrix @ v
    u = (w_v / (w_v @ w_v)).float()
    v = v.float()
    w_v = torch.mv(as_matrix(weight.detach(), dim).float(), v)
    # step the component whose term u_i (W v)_i is largest but below 1/4, so one ulp of u_i moves the
    # product by at most half an ulp of 1
    terms = (u * w_v).abs()
    small = torch.where(terms <= 0.25, terms, torch.zeros_like(terms))
    i = int(torch.argmax(small if small.max() > 0 else terms))
    for _ in range(64):
        product = torch.dot(u, w_v)
        if product == 1.0:
            break
        up = bool(product < 1.0) == bool(w_v[i] > 0)
        u[i] = torch.nextafter(u[i], torch.tensor(float("inf") if up else float("-inf")))
    return u, v
