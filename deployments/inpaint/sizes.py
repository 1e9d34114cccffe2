"""The sizes EdgeConnect runs at (torch-free: the family's op declaration groups tasks by them)."""

from __future__ import annotations

SIZE_MULTIPLE = 4  # the generators downsample twice by 2: sides are padded to multiples of 4
# The dilated residual blocks reflect-pad 2 px at a quarter of the input size, which needs at
# least 3 px there: smaller images are padded up to 12 px.
MIN_SIDE = 3 * SIZE_MULTIPLE


def size_bucket(shape: tuple[int, ...]) -> tuple[int, int]:
    """The padded size an image of ``shape`` (H, W[, C]) runs at: the group key of the batcher."""
    height, width = shape[:2]
    side = lambda n: max(MIN_SIDE, n + (-n) % SIZE_MULTIPLE)  # noqa: E731
    return side(height), side(width)
