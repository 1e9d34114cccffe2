"""Tensor math of local style editing (deployments/style/editing.py): small hand-checked cases."""

from __future__ import annotations

import pytest
import torch

from deployments.style import editing
from deployments.style.editing import (
    SEQUENTIAL_EPSILON,
    SEQUENTIAL_RHO,
    assign_clusters,
    contribution_matrix,
    global_query,
    interpolate_styles,
    membership_from_labels,
    part_contribution,
    sequential_query,
    simple_query,
    spherical_kmeans,
    standardize_channels,
)


def clustered(points_per_cluster: int = 500, dim: int = 16, noise: float = 0.05, seed: int = 0):
    """4 orthogonal directions (e0..e3) + small noise, shuffled, random positive lengths."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.arange(4).repeat_interleave(points_per_cluster)
    x = torch.eye(dim)[truth] + noise * torch.randn(len(truth), dim, generator=g)
    perm = torch.randperm(len(truth), generator=g)
    lengths = 0.5 + 2.5 * torch.rand(len(truth), 1, generator=g)
    return x[perm] * lengths, truth[perm]


def same_partition(labels: torch.Tensor, truth: torch.Tensor, k: int) -> bool:
    """True when labels equal truth up to a permutation of the cluster ids (100% agreement)."""
    table = torch.zeros(k, k, dtype=torch.long)
    table.index_put_((truth, labels), torch.ones_like(truth), accumulate=True)
    nonzero = table > 0
    return bool((nonzero.sum(0) == 1).all() and (nonzero.sum(1) == 1).all())


# --------------------------------------------------------------------------- spherical k-means


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_recovers_clusters(seed):
    x, truth = clustered()
    centroids, labels = spherical_kmeans(x, 4, seed=seed)
    assert centroids.shape == (4, 16) and labels.shape == (2000,) and labels.dtype == torch.long
    assert same_partition(labels, truth, 4)
    torch.testing.assert_close(torch.linalg.vector_norm(centroids, dim=1), torch.ones(4))
    # each centroid sits on one of the true directions
    assert torch.sort(centroids.abs().max(dim=1).values).values.min() > 0.99
    assert torch.equal(assign_clusters(x, centroids), labels)


def test_kmeans_deterministic_by_seed():
    x, _ = clustered()
    c1, l1 = spherical_kmeans(x, 4, seed=7)
    c2, l2 = spherical_kmeans(x, 4, seed=7)
    assert torch.equal(c1, c2) and torch.equal(l1, l2)


def test_kmeans_scale_invariant():
    x, _ = clustered()
    scales = 0.01 + 100 * torch.rand(len(x), 1, generator=torch.Generator().manual_seed(3))
    c1, l1 = spherical_kmeans(x, 4, seed=0)
    c2, l2 = spherical_kmeans(x * scales, 4, seed=0)
    assert torch.equal(l1, l2)
    torch.testing.assert_close(c1, c2)
    assert torch.equal(assign_clusters(x * scales, c1 * 5.0), l1)


def test_kmeans_zero_rows_and_small_chunks(monkeypatch):
    import deployments.style.editing as editing

    x, truth = clustered(points_per_cluster=100)
    x[:5] = 0.0
    _, ref = spherical_kmeans(x, 4, seed=0)
    # many chunks: other matmul shapes, so similarities may differ in the last bits, but the labels (integers; the
    # clusters lie far apart) cannot
    monkeypatch.setattr(editing, "_BLOCK", 64)
    centroids, labels = spherical_kmeans(x, 4, seed=0)
    assert torch.equal(labels, ref)
    assert (labels[:5] == 0).all()  # zero rows: deterministic label 0
    assert same_partition(labels[5:], truth[5:], 4)
    assert torch.isfinite(centroids).all()


def test_kmeans_more_clusters_than_directions_does_not_crash():
    # 3 distinct directions, k = 5: seeding and empty-cluster re-seeding must cope with duplicates
    x = torch.eye(8)[torch.tensor([0, 1, 2])].repeat(20, 1)
    centroids, labels = spherical_kmeans(x, 5, iterations=10)
    assert torch.isfinite(centroids).all()
    torch.testing.assert_close(torch.linalg.vector_norm(centroids, dim=1), torch.ones(5))
    assert labels.min() >= 0 and labels.max() < 5


def test_kmeans_errors():
    with pytest.raises(ValueError):
        spherical_kmeans(torch.randn(10), 2)
    with pytest.raises(ValueError):
        spherical_kmeans(torch.randn(3, 4), 4)  # fewer rows than clusters
    with pytest.raises(ValueError):
        spherical_kmeans(torch.zeros(10, 4), 2)  # no non-zero rows
    with pytest.raises(ValueError):
        spherical_kmeans(torch.randn(10, 4), 0)
    with pytest.raises(ValueError):
        spherical_kmeans(torch.arange(12).reshape(6, 2), 2)  # integer
    with pytest.raises(ValueError):
        assign_clusters(torch.randn(10, 4), torch.randn(3, 5))


# --------------------------------------------------------------------------- standardisation, M


def test_standardize_channels():
    g = torch.Generator().manual_seed(0)
    a = 3.0 + 2.0 * torch.randn(4, 3, 5, 5, generator=g)
    a[:, 1] = 0.1  # constant (and not exactly representable: its float64 mean is off by an ulp)
    z = standardize_channels(a)
    assert z.shape == a.shape and z.dtype == a.dtype
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(z.square().mean(dim=(0, 2, 3)), torch.tensor([1.0, 0.0, 1.0]))
    assert torch.equal(z[:, 1], torch.zeros_like(z[:, 1]))
    with pytest.raises(ValueError):
        standardize_channels(torch.randn(3, 4, 4))


def test_membership_from_labels_nearest_resize():
    labels = torch.tensor([[[0, 1], [2, 0]]])
    u = membership_from_labels(labels, 3, (4, 4))
    assert u.shape == (1, 3, 4, 4) and u.dtype == torch.float32
    expected = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 0, 0], [2, 2, 0, 0]])
    assert torch.equal(u[0].argmax(0), expected)
    assert torch.equal(u.sum(1), torch.ones(1, 4, 4))
    with pytest.raises(ValueError):
        membership_from_labels(labels, 2, (4, 4))  # label 2 out of range
    with pytest.raises(ValueError):
        membership_from_labels(labels.float(), 3, (4, 4))
    with pytest.raises(ValueError):
        membership_from_labels(labels, 3, (4,))


def test_contribution_matrix_hand_computed():
    # N=1, C=2, H=W=2, K=2; pixels in row-major order (0,0), (0,1), (1,0), (1,1).
    # channel 0 = [0, 2, 0, 2]: mean 1, deviations [-1, 1, -1, 1], variance 1 -> A_std^2 = [1, 1, 1, 1]
    # channel 1 = [4, 0, 0, 0]: mean 1, deviations [3, -1, -1, -1], variance (9+1+1+1)/4 = 3
    #                           -> A_std^2 = [9/3, 1/3, 1/3, 1/3] = [3, 1/3, 1/3, 1/3]
    # cluster 0 = pixel (0,0); cluster 1 = the other three. M = (1/4) * sums inside each cluster:
    #   M[0, 0] = 1/4 = 0.25    M[1, 0] = 3/4 = 0.75
    #   M[0, 1] = 3/4 = 0.75    M[1, 1] = (3 * 1/3)/4 = 0.25
    a = torch.tensor([[[[0.0, 2.0], [0.0, 2.0]], [[4.0, 0.0], [0.0, 0.0]]]])
    u = membership_from_labels(torch.tensor([[[0, 1], [1, 1]]]), 2, (2, 2))
    m = contribution_matrix(a, u)
    assert m.dtype == torch.float32
    torch.testing.assert_close(m, torch.tensor([[0.25, 0.75], [0.75, 0.25]]))


def test_contribution_columns_sum_to_one_and_constant_channel_is_zero():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 6, 8, 8, generator=g) * torch.rand(1, 6, 1, 1, generator=g) * 10
    a[:, 4] = -2.5  # constant channel
    u = membership_from_labels(torch.randint(0, 5, (3, 4, 4), generator=g), 5, (8, 8))
    m = contribution_matrix(a, u)
    assert m.shape == (5, 6)
    torch.testing.assert_close(m.sum(0), torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0]))
    assert torch.equal(m[:, 4], torch.zeros(5))
    assert (m >= 0).all()
    # soft memberships whose rows sum to 1 also give columns summing to 1
    soft = torch.softmax(torch.randn(3, 5, 8, 8, generator=g), dim=1)
    torch.testing.assert_close(contribution_matrix(a, soft).sum(0), torch.tensor([1.0, 1, 1, 1, 0, 1]))


def test_contribution_matrix_chunked_matches(monkeypatch):
    import deployments.style.editing as editing

    g = torch.Generator().manual_seed(2)
    a = torch.randn(5, 4, 6, 6, generator=g)
    u = membership_from_labels(torch.randint(0, 3, (5, 6, 6), generator=g), 3, (6, 6))
    whole = contribution_matrix(a, u)
    monkeypatch.setattr(editing, "_BLOCK", 1)  # one image per chunk
    torch.testing.assert_close(contribution_matrix(a, u), whole)


def test_contribution_matrix_shape_errors():
    a = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError):
        contribution_matrix(a, torch.ones(2, 2, 8, 8))  # membership not resized
    with pytest.raises(ValueError):
        contribution_matrix(a, torch.ones(1, 2, 4, 4))  # batch mismatch
    with pytest.raises(ValueError):
        contribution_matrix(a[0], torch.ones(2, 2, 4, 4))


def test_part_contribution():
    m = torch.tensor([[0.1, 0.6], [0.3, 0.2], [0.6, 0.2]])
    torch.testing.assert_close(part_contribution(m, torch.tensor([1.0, 1.0, 0.0])), torch.tensor([0.4, 0.8]))
    torch.testing.assert_close(part_contribution(m, torch.tensor([0.0, 0.5, 0.0])), torch.tensor([0.15, 0.1]))
    with pytest.raises(ValueError):
        part_contribution(m, torch.tensor([1.0, -1.0, 0.0]))
    with pytest.raises(ValueError):
        part_contribution(m, torch.tensor([1.0, 1.0]))


# --------------------------------------------------------------------------- queries


def test_simple_query_clamps():
    m = torch.tensor([0.1, 0.5, 0.9, 0.0])
    torch.testing.assert_close(simple_query(m, 2.0), torch.tensor([0.2, 1.0, 1.0, 0.0]))
    assert simple_query(m[None].repeat(3, 1), 2.0).shape == (3, 4)
    with pytest.raises(ValueError):
        simple_query(m, -1.0)
    with pytest.raises(ValueError):
        simple_query(torch.zeros(1, 1, 4), 1.0)


def test_sequential_query_hand_computed():
    m = torch.tensor([0.3, 0.9, 0.05, 0.7, 0.6])
    # order by M descending: ch1 (0.9), ch3 (0.7), ch4 (0.6), ch0 (0.3), ch2 (0.05)
    # 1 - M in that order:    0.1,       0.3,       0.4,       0.7,       0.95
    # cumulative sum:         0.1,       0.4,       0.8,       1.5,       2.45
    # rho = 0.2, epsilon = 1.0: cumsum < 1 keeps ch1, ch3, ch4; M > 0.2 keeps all but ch2
    #   -> q = [0, 1, 0, 1, 1]
    assert torch.equal(sequential_query(m, rho=0.2, epsilon=1.0), torch.tensor([0.0, 1, 0, 1, 1]))
    # rho = 0.65 binds first: M > 0.65 keeps only ch1, ch3 -> q = [0, 1, 0, 1, 0]
    assert torch.equal(sequential_query(m, rho=0.65, epsilon=1.0), torch.tensor([0.0, 1, 0, 1, 0]))
    # epsilon = 2.0: cumsum < 2 keeps ch1, ch3, ch4, ch0 (1.5); all have M > 0.2 -> q = [1, 1, 0, 1, 1]
    assert torch.equal(sequential_query(m, rho=0.2, epsilon=2.0), torch.tensor([1.0, 1, 0, 1, 1]))
    # batched rows give the per-row answers
    rows = torch.stack([m, m.flip(0)])
    q = sequential_query(rows, rho=0.2, epsilon=1.0)
    assert torch.equal(q, torch.stack([torch.tensor([0.0, 1, 0, 1, 1]), torch.tensor([1.0, 1, 0, 1, 0])]))
    # defaults are the module constants
    assert torch.equal(sequential_query(m), sequential_query(m, rho=SEQUENTIAL_RHO, epsilon=SEQUENTIAL_EPSILON))
    with pytest.raises(ValueError):
        sequential_query(m, rho=float("nan"), epsilon=1.0)


def test_global_query():
    assert torch.equal(global_query(3, 0.25), torch.full((3,), 0.25))
    with pytest.raises(ValueError):
        global_query(3, 1.5)
    with pytest.raises(ValueError):
        global_query(0, 0.5)


# --------------------------------------------------------------------------- interpolation


def test_interpolate_styles_exact_ends_and_midpoint():
    g = torch.Generator().manual_seed(0)
    s = [torch.randn(2, 4, generator=g) * 100, torch.tensor([[1.0, 2.0, 3.0]] * 2), torch.randn(2, 5, generator=g)]
    r = [torch.randn(2, 4, generator=g) * 1e-6, torch.tensor([[1e-8, -7.0, 3.5]] * 2), torch.randn(2, 5, generator=g)]
    # layer 0: q = 1 everywhere; layer 1: per row/channel (N, C); layer 2: None (target kept)
    q1 = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 1.0]])
    out = interpolate_styles(s, r, [torch.ones(4), q1, None])
    # 1 + 1 * (1e-8 - 1) rounds to 0 in float32: the exact ends must not
    assert torch.equal(out[0], r[0])
    assert torch.equal(out[1][0, 0], r[1][0, 0]) and torch.equal(out[1][1, 1:], r[1][1, 1:])
    assert torch.equal(out[1][0, 1], s[1][0, 1]) and torch.equal(out[1][1, 0], s[1][1, 0])
    torch.testing.assert_close(out[1][0, 2], (s[1][0, 2] + r[1][0, 2]) / 2)
    assert torch.equal(out[2], s[2]) and out[2] is not s[2]
    zero = interpolate_styles(s, r, [torch.zeros(4), torch.zeros(2, 3), torch.zeros(5)])
    assert all(torch.equal(a, b) for a, b in zip(zero, s))
    one = interpolate_styles(s, r, [torch.ones(4), torch.ones(2, 3), torch.ones(5)])
    assert all(torch.equal(a, b) for a, b in zip(one, r))


def test_interpolate_styles_errors():
    s, r = [torch.zeros(2, 3)], [torch.ones(2, 3)]
    with pytest.raises(ValueError):
        interpolate_styles(s, r, [])
    with pytest.raises(ValueError):
        interpolate_styles(s, [torch.ones(2, 4)], [None])
    with pytest.raises(ValueError):
        interpolate_styles(s, r, [torch.ones(4)])
    with pytest.raises(ValueError):
        interpolate_styles(s, r, [torch.ones(1, 3)])
    with pytest.raises(ValueError):
        interpolate_styles(s, r, [torch.full((3,), 1.5)])
    with pytest.raises(ValueError):
        interpolate_styles([torch.zeros(3)], [torch.ones(3)], [None])


def test_part_query_dispatches_to_the_named_rule():
    m = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.8, 0.5]])
    weights = torch.tensor([1.0, 0.0])  # one-hot: weights @ m is 1 * m[0] + 0 * m[1] = m[0] exactly in any order
    assert torch.equal(editing.part_query(m, weights, "simple", strength=2.0), editing.simple_query(m[0], 2.0))
    assert torch.equal(
        editing.part_query(m, weights, "sequential", rho=0.3, epsilon=1.0), editing.sequential_query(m[0], rho=0.3, epsilon=1.0)
    )
    assert torch.equal(editing.part_query(m, weights, "global", strength=0.5), torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="rule must be"):
        editing.part_query(m, weights, "greedy")
