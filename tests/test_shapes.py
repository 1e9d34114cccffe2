"""deployments/shapes.py: the generators' one shape check (no service, no model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deployments.shapes import ShapeError, assert_shape


def test_wildcards_match_any_size_and_other_entries_must_equal():
    assert_shape(torch.zeros(2, 3, 8, 8), (None, 3, None, 8))
    assert_shape(torch.zeros(0, 5), (None, 5))
    assert_shape(torch.zeros(()), ())
    assert_shape(np.zeros((4, 4, 3), np.uint8), (None, None, 3))  # numpy arrays too
    with pytest.raises(ShapeError, match=r"^z must have shape \(\*, 512\), got \(2, 511\)$"):
        assert_shape(torch.zeros(2, 511), (None, 512), "z")
    with pytest.raises(ShapeError, match=r"^tensor must have shape \(\*, 3, \*, \*\), got \(2, 3, 8\)$"):
        assert_shape(torch.zeros(2, 3, 8), (None, 3, None, None))  # the number of dims counts
    with pytest.raises(ShapeError, match=r"must have shape \(4,\), got \(4, 1\)"):
        assert_shape(torch.zeros(4, 1), (4,))


def test_shape_errors_are_value_and_assertion_errors():
    """What the generators' _check helpers (ValueError) and bare asserts (AssertionError) raised before."""
    for caught in (ValueError, AssertionError):
        with pytest.raises(caught):
            assert_shape(torch.zeros(1), (2,))


def test_assert_shape_compiles_into_one_graph():
    def double(x: torch.Tensor) -> torch.Tensor:
        assert_shape(x, (None, 3, 4, 4), "x")
        return x * 2

    compiled = torch.compile(double, fullgraph=True, backend="eager", dynamic=False)
    assert torch.equal(compiled(torch.ones(2, 3, 4, 4)), torch.full((2, 3, 4, 4), 2.0))
    with pytest.raises(ShapeError, match="x must have shape"):
        torch.compile(double, backend="eager", dynamic=False)(torch.ones(2, 4, 4, 4))
