"""Dependencies point one way (docs/architecture/layout.md, "Layering"), read from the source with ``ast``:

    schemas  <-  service (the platform)  <-  deployments (the families)
                 service.tools (CLI, demo, config generators) sits on the platform, beside the families

- ``schemas/`` imports nothing of ``service`` or ``deployments``;
- ``service/`` (tools included) never imports ``deployments``, statically or as a dynamic
  ``"deployments.<module>"`` path: it finds the families through service/families.py (entry points);
- the platform (``service/*.py``) never imports ``service.tools``;
- the platform's code names no family: no string constant (docstrings aside) that is a family's
  name, and no import of a family's contract module (``schemas.<family>``). The product is called
  Collage too, so the few constants that are the product's name are listed below, each by the name
  it is given to;
- a family's op declaration (the module its ``collage.families`` entry point names, which the
  ingress imports) imports no torch and no Ray, nor any family module that does.

No service, no torch: a fraction of a second.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from service.families import FAMILIES_GROUP, entry_points, family_names

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_TOOLS = "service/tools/"

# Constants equal to a family's name that are the product's name, not the family: (module, the name
# the constant is given to, i.e. the assignment target, keyword or annotated field around it).
PRODUCT_NAME_USES = {
    ("service/config.py", "s3_bucket"),  # the default bucket
    ("service/families.py", "PROJECT"),  # the distribution whose metadata declares the families
    ("service/runtime.py", "APP_NAME"),  # the Serve application
    ("service/tools/cli.py", "prog"),  # the command
    ("service/tools/helm_values.py", "CHART_DIR"),  # helm/collage
}
# Tools whose requests name families, models and ops as API data: the demo runs every family's ops
# against a service, as a client would (its family branches are client code, not platform code).
NAMES_FAMILIES_AS_A_CLIENT = {"service/tools/demo.py"}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """Every imported module (``from a import b`` gives ``a`` and ``a.b``), anywhere in the module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of string constants that are documentation: docstrings and other bare string statements."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }


def _named(tree: ast.AST) -> dict[int, set[str]]:
    """id of each constant -> the names it is given to (assignment targets, keywords, annotated fields around it)."""
    names: dict[int, set[str]] = {}

    def mark(value: ast.AST, name: str) -> None:
        for inner in ast.walk(value):
            names.setdefault(id(inner), set()).add(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg:
            mark(node.value, node.arg)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            mark(node.value, node.targets[0].id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            mark(node.value, node.target.id)
    return names


def _strings(tree: ast.AST) -> list[ast.Constant]:
    docs = _docstrings(tree)
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs]


def _parsed(package: str) -> list[tuple[str, ast.AST]]:
    return [(_rel(path), ast.parse(path.read_text(), filename=str(path))) for path in _modules(package)]


def _families() -> set[str]:
    return set(family_names())


def test_every_family_subpackage_is_registered_and_every_registered_family_has_one():
    subpackages = {p.parent.name for p in (ROOT / "deployments").glob("*/deployment.py")}
    assert subpackages == _families(), 'register each family in pyproject.toml [project.entry-points."collage.families"]'


@pytest.mark.parametrize("package", ["schemas", "service"])
def test_schemas_and_the_service_never_import_the_families(package):
    bad = [
        f"{name}:{line} imports {module}"
        for name, tree in _parsed(package)
        for line, module in _imports(tree)
        if module == "deployments" or module.startswith("deployments.")
    ]
    bad += [
        f"{name}:{node.lineno} names {node.value!r}"
        for name, tree in _parsed(package)
        for node in _strings(tree)
        if node.value.strip().startswith(("deployments.", "deployments:"))
    ]
    assert not bad, (
        "dependencies point one way: families import the platform, the platform finds them through service/families.py\n" + "\n".join(bad)
    )


def test_schemas_import_nothing_of_the_service():
    bad = [
        f"{name}:{line} imports {module}"
        for name, tree in _parsed("schemas")
        for line, module in _imports(tree)
        if module == "service" or module.startswith("service.")
    ]
    assert not bad, "schemas/ is the contract: pass what it needs (e.g. schemas.common.Limits) from the caller\n" + "\n".join(bad)


def test_the_platform_never_imports_the_tools():
    bad = [
        f"{name}:{line} imports {module}"
        for name, tree in _parsed("service")
        if not name.startswith(PLATFORM_TOOLS)
        for line, module in _imports(tree)
        if module == "service.tools" or module.startswith("service.tools.")
    ]
    assert not bad, "\n".join(bad)


def test_the_service_names_no_family():
    families = _families()
    bad = []
    for name, tree in _parsed("service"):
        if name in NAMES_FAMILIES_AS_A_CLIENT:
            continue
        named = _named(tree)
        for node in _strings(tree):
            given = named.get(id(node), set())
            if node.value in families and not any((name, target) in PRODUCT_NAME_USES for target in given):
                bad.append(f"{name}:{node.lineno} {node.value!r} (given to {sorted(given) or 'nothing'})")
        for line, module in _imports(tree):
            if module.startswith("schemas.") and module.split(".")[1] in families:
                bad.append(f"{name}:{line} imports {module}, a family's contract")
    assert not bad, "the platform finds families through service/families.py and names none of them:\n" + "\n".join(bad)


HEAVY = ("torch", "ray")  # what the ingress never imports


def _module_file(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _heavy_imports(module: str, seen: set[str]) -> list[str]:
    """Imports of torch or Ray by ``module`` or by the ``deployments`` modules it imports, transitively."""
    path = _module_file(module)
    if path is None or module in seen:
        return []
    seen.add(module)
    found = []
    for line, imported in _imports(ast.parse(path.read_text(), filename=str(path))):
        if imported.split(".")[0] in HEAVY:
            found.append(f"{_rel(path)}:{line} imports {imported}")
        elif imported.startswith("deployments."):
            found += _heavy_imports(imported, seen)
    return found


def test_the_family_declarations_import_no_torch():
    bad = []
    for family in family_names():
        module = entry_points(FAMILIES_GROUP)[family].partition(":")[0].strip()
        assert _module_file(module), f"{family}: its declaration module {module} is not in this checkout"
        bad += _heavy_imports(module, set())
    assert not bad, "the ingress imports every family's op declaration: keep it torch-free\n" + "\n".join(bad)


def test_the_checks_catch_what_they_look_for():
    """The helpers above see an import inside a function, a dynamic import path and a family name,
    and leave docstrings alone."""
    tree = ast.parse(
        '"""mentions style and deployments.style"""\n'
        'def f():\n    """style"""\n    from deployments.style import ops\n'
        '    x = "style"\n    importlib.import_module("deployments.warp.deployment")\n'
        'APP_NAME = "collage"\n'
    )
    assert (4, "deployments.style") in _imports(tree)
    assert sorted(node.value for node in _strings(tree)) == ["collage", "deployments.warp.deployment", "style"]
    named = _named(tree)
    assert [named.get(id(node)) for node in _strings(tree) if node.value == "collage"] == [{"APP_NAME"}]
    assert _heavy_imports("deployments.style.deployment", set()), "a torch module is seen as one"
