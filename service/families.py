"""The family registry: which generator families exist, found as plugins, never named by the platform.

A family declares itself in its distribution's metadata, as Python entry points (pyproject.toml)::

    [project.entry-points."collage.families"]
    <family> = "<declaration module>:<Serve deployment class>"

    [project.entry-points."collage.fit_tasks"]      # only a family that trains models in a `fit` job
    <family> = "<module>:<function run as a Ray task>"

and, for the tooling, ``collage.converters`` (``collage models upload --format <name>``: a public
checkpoint format -> the converter function) and ``collage.cli`` (a function adding the family's
own commands to the ``collage`` CLI).

A family's declaration module (``deployments/<family>/spec.py``) declares each of its ops once, as
the ``FAMILY`` :class:`schemas.ops.FamilySpec`: contracts, handler, group key, bucketing, scope,
invalidation and latent keys. It imports no torch, and resolves the entry point's attribute, the
deployment class, lazily (``__getattr__``). :func:`op_table` and :func:`get_op` read the
declarations: the op table every part of the platform reads (the ingress, the edit pipeline, the
registry, the OpenAPI document, the family replicas).

Listing reads the metadata only (no module is imported); :func:`family_spec` and :func:`op_table`
import the declaration modules (torch-free); :func:`load_deployment` and :func:`load_fit_task`
import the one module asked for, where a deployment is built or a fit runs.
Dependencies point one way: families import the platform (``service``), the platform finds them here.

An editable install records its entry points when it is installed, so a source checkout whose
pyproject.toml changed since (a family added, moved or renamed) would list stale ones. Where this
package runs from a checkout of the ``collage`` project, the checkout's own pyproject.toml is
therefore read in place of the installed ``collage`` metadata; entry points of other installed
distributions (families shipped as their own packages) are listed either way.
"""

from __future__ import annotations

import functools
import importlib
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

FAMILIES_GROUP = "collage.families"
FIT_TASKS_GROUP = "collage.fit_tasks"
# What families add to the tooling (service/tools/cli.py): checkpoint converters by `models upload
# --format` name, and functions adding their own commands to the CLI.
CONVERTERS_GROUP = "collage.converters"
CLI_GROUP = "collage.cli"
PROJECT = "collage"  # the distribution this package belongs to
DECLARATION = "FAMILY"  # the attribute of a family's declaration module that holds its FamilySpec
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _checkout_entry_points() -> dict[str, dict[str, str]] | None:
    """``{group: {name: value}}`` of the source checkout this package runs from; None when it runs from an install."""
    try:
        project = tomllib.loads(PYPROJECT.read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if project.get("name") != PROJECT:
        return None
    return {group: dict(points) for group, points in project.get("entry-points", {}).items()}


@functools.lru_cache(maxsize=None)
def entry_points(group: str) -> dict[str, str]:
    """``{name: "module:attr"}`` of one entry-point group, sorted by name: the same order from a
    checkout and from an install (installed metadata keeps no declaration order)."""
    found: dict[str, str] = {}
    checkout = _checkout_entry_points()
    if checkout is not None:
        found.update(checkout.get(group, {}))
    for point in metadata.entry_points(group=group):
        if checkout is not None and _dist_name(getattr(point, "dist", None)) == PROJECT:
            continue  # this project's installed metadata, possibly stale: the checkout's pyproject.toml said it
        if point.name in found and found[point.name] != point.value:
            raise RuntimeError(f"{group}: {point.name!r} is declared twice: {found[point.name]} and {point.value}")
        found.setdefault(point.name, point.value)
    return dict(sorted(found.items()))


def _dist_name(dist: Any) -> str | None:
    if dist is None:
        return None
    name = getattr(dist, "name", None) or dist.metadata.get("Name")
    return name.lower().replace("_", "-") if name else None


def family_names() -> list[str]:
    """Every registered family, sorted by name."""
    return list(entry_points(FAMILIES_GROUP))


def deployment_class_name(family: str) -> str:
    """The Serve deployment's class name (Serve names a deployment after its class), without importing it."""
    return _value(FAMILIES_GROUP, family).rpartition(":")[2]


def load_deployment(family: str) -> Any:
    """The family's Serve deployment (imports its module, and with it torch)."""
    return _load(_value(FAMILIES_GROUP, family))


@functools.lru_cache(maxsize=None)
def family_spec(family: str) -> Any:
    """The family's op declaration (``FAMILY`` of the module its entry point names; imports no torch)."""
    value = _value(FAMILIES_GROUP, family)
    module_name, _, class_name = value.partition(":")
    spec = getattr(importlib.import_module(module_name.strip()), DECLARATION, None)
    if spec is None or not hasattr(spec, "ops"):
        raise RuntimeError(f"{FAMILIES_GROUP}: {family!r} -> {value}: the module declares no {DECLARATION} (a FamilySpec)")
    if spec.name != family or spec.deployment_class_name != class_name.strip():
        raise RuntimeError(f"{FAMILIES_GROUP}: {family!r} -> {value} does not match its declaration {spec!r}")
    return spec


@functools.lru_cache(maxsize=None)
def op_table() -> dict[str, dict[str, Any]]:
    """family -> op name -> ``schemas.ops.OpSpec``, for every registered family (families by name,
    ops in declaration order)."""
    return {family: dict(family_spec(family).ops) for family in family_names()}


def get_op(family: str, op: str) -> Any:
    """The ``OpSpec`` of ``family``'s ``op``; None for an op or family that is not registered."""
    return op_table().get(family, {}).get(op)


def model_attachments(family: str | None = None) -> dict[str, Any]:
    """name -> ``schemas.ops.ModelAttachment`` that ``family`` declares (None: every family's; two families
    may declare one name only with the same declaration). An unregistered family has none."""
    found: dict[str, Any] = {}
    for name in family_names() if family is None else [family] if family in family_names() else []:
        for attachment in family_spec(name).attachments.values():
            if found.setdefault(attachment.name, attachment) != attachment:
                raise RuntimeError(f"two families declare the model attachment {attachment.name!r} differently")
    return found


def fit_task_families() -> list[str]:
    """Families whose models a ``fit`` job trains."""
    return list(entry_points(FIT_TASKS_GROUP))


def load_fit_task(family: str) -> Any:
    """The function a ``fit`` job of ``family`` runs as a Ray task."""
    return _load(_value(FIT_TASKS_GROUP, family))


def plugin_names(group: str) -> list[str]:
    """The names of one entry-point group, sorted."""
    return list(entry_points(group))


def load_plugin(group: str, name: str) -> Any:
    """The object one entry point names (imports its module)."""
    return _load(_value(group, name))


def _value(group: str, name: str) -> str:
    points = entry_points(group)
    if name not in points:
        raise KeyError(f"no {group} entry point {name!r}; registered: {sorted(points)}")
    return points[name]


def _load(value: str) -> Any:
    module_name, _, attr = value.partition(":")
    target: Any = importlib.import_module(module_name.strip())
    for part in attr.strip().split("."):
        target = getattr(target, part)
    return target
