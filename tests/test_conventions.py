"""docs/architecture/conventions.md "One convention each", checked on the source (no service, under a second)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "deployments", "schemas")
METRIC_TYPES = {"Histogram", "Counter", "Gauge", "Summary", "Info", "Enum"}
# Exceptions that never reach a client as themselves (see conventions.md), by module.
INTERNAL_EXCEPTIONS = {
    "deployments/ingan/ops.py": {"FitStopped"},
    "deployments/shapes.py": {"ShapeError"},
    "service/s3_fast.py": {"StaleConnection"},  # caught inside SignedS3.request: a resend, never a problem
}


def sources() -> list[tuple[str, ast.Module]]:
    files = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
    return [(path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), str(path))) for path in files]


def _name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def test_exception_classes_live_in_service_errors():
    """Every exception class outside service/errors.py is a listed internal one."""
    found = {}
    for path, tree in sources():
        if path == "service/errors.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(_name(base).endswith(("Error", "Exception", "Failure")) for base in node.bases):
                found.setdefault(path, set()).add(node.name)
    assert found == INTERNAL_EXCEPTIONS


def test_metrics_are_declared_only_in_service_metrics():
    calls = [
        f"{path}:{node.lineno} {_name(node.func)}"
        for path, tree in sources()
        if path != "service/metrics.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _name(node.func) in METRIC_TYPES
    ]
    assert calls == []


# Checks in deployments/ that read a shape but are not a shape contract assert_shape can state.
NOT_SHAPE_CONTRACTS = ("truncation_latent.numel()",)  # any shape with style_dim elements


def _reads_a_shape(node: ast.expr) -> bool:
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Call) and not node.args:
        node = node.func
    return isinstance(node, ast.Attribute) and node.attr in ("shape", "ndim", "dim")


def test_generators_check_shapes_with_assert_shape():
    """No ``assert`` or ``_check`` in deployments/ compares a shape, a size or a number of dims itself
    (sides that must divide by a stride, ``x.shape[-1] % 4 == 0``, and minimum sizes are not shapes)."""
    found = []
    for path, tree in sources():
        if not path.startswith("deployments/"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                test = node.test
            elif isinstance(node, ast.Call) and _name(node.func) == "_check" and node.args:
                test = node.args[0]
            else:
                continue
            source = ast.unparse(test)
            if any(
                isinstance(compare, ast.Compare) and any(map(_reads_a_shape, [compare.left, *compare.comparators]))
                for compare in ast.walk(test)
            ) and not any(allowed in source for allowed in NOT_SHAPE_CONTRACTS):
                found.append(f"{path}:{node.lineno} {source}")
    assert found == []
