"""The one shape check of the generators and their ops: ``assert_shape(x, (None, 3, 256, 256), "image")``.

The generators and their ops (``deployments/*/``) check the shape of a tensor (or numpy array)
with :func:`assert_shape`: ``None`` entries are wildcards, every other entry must equal the actual
size. A mismatch raises :class:`ShapeError` naming the tensor, the expected and the actual shape.
It is a plain Python check of ``.shape`` that builds no string unless it fails, so it costs next to nothing per call, is never
stripped by ``python -O`` (unlike ``assert``), and ``torch.compile`` (static shapes, see
``Acceleration``) evaluates it once at trace time and guards on the shapes it read.

Checks of other things (dtypes, config values, argument ranges, sides that must divide by a stride)
keep their own ``ValueError`` or ``assert``; see docs/architecture/conventions.md.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["ShapeError", "assert_shape"]


class ShapeError(ValueError, AssertionError):
    """A tensor of the wrong shape: an internal contract failure, never a client's error.

    A ``ValueError``, as the generators' checks always raised, and an ``AssertionError``, as their bare
    ``assert``\\ s did, so code (and tests) written against either keep catching it. Family replicas
    report it like any other failure of a group (500); request validation happens before a generator.
    """


def assert_shape(tensor: Any, shape: Sequence[int | None], name: str = "tensor") -> None:
    """Raise :class:`ShapeError` unless ``tensor.shape`` has ``len(shape)`` dims matching ``shape``
    (``None`` matches any size)."""
    actual = tensor.shape
    if len(actual) != len(shape):
        _fail(name, shape, actual)
    for got, want in zip(actual, shape):
        if want is not None and got != want:
            _fail(name, shape, actual)


def _fail(name: str, shape: Sequence[int | None], actual: Sequence[int]) -> None:
    raise ShapeError(f"{name} must have shape {_show(shape)}, got {_show(actual)}")


def _show(shape: Sequence[Any]) -> str:
    dims = ["*" if size is None else str(int(size)) for size in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
