"""The family registry (service/families.py): families found as entry points, listed without importing them.

No service, no Ray: fake distributions on sys.path stand for installed metadata.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from service import families
from service.config import REPO_ROOT, Settings

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


@pytest.fixture
def fresh_registry():
    families.entry_points.cache_clear()
    yield families
    families.entry_points.cache_clear()


def _fake_distribution(root: Path, name: str, groups: dict[str, dict[str, str]]) -> None:
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "".join(f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in points.items()) + "\n" for group, points in groups.items())
    )


def test_the_families_are_the_entry_points_of_pyproject_sorted_by_name(fresh_registry):
    declared = PYPROJECT["entry-points"][families.FAMILIES_GROUP]
    assert families.family_names() == sorted(declared)
    for name, value in declared.items():
        assert families.deployment_class_name(name) == value.rpartition(":")[2]
    assert families.fit_task_families() == sorted(PYPROJECT["entry-points"][families.FIT_TASKS_GROUP])
    with pytest.raises(KeyError, match="registered"):
        families.deployment_class_name("no-such-family")


def test_listing_imports_no_family_and_no_torch():
    code = (
        "import sys; from service import families, app; from service.tools import serve_config; "
        "names = families.family_names(); serve_config.serve_config(app.get_settings()); "
        "assert not [m for m in sys.modules if m == 'torch' or m.startswith('deployments')], sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_loading_imports_the_deployment_the_entry_point_names(fresh_registry):
    from deployments.style.deployment import StyleDeployment

    assert families.load_deployment("style") is StyleDeployment


def test_other_distributions_add_families_and_the_checkout_wins_over_stale_installed_metadata(fresh_registry, tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "collage", {families.FAMILIES_GROUP: {"gone": "old.module:GoneDeployment"}})  # stale install
    _fake_distribution(tmp_path, "collage-extra-family", {families.FAMILIES_GROUP: {"extra": "extra_family:ExtraDeployment"}})
    (tmp_path / "extra_family.py").write_text("class ExtraDeployment:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    declared = list(PYPROJECT["entry-points"][families.FAMILIES_GROUP])
    assert families.family_names() == sorted(declared + ["extra"])
    assert families.deployment_class_name("extra") == "ExtraDeployment"
    assert families.load_deployment("extra").__name__ == "ExtraDeployment"
    assert Settings(family_overrides={"extra": {"num_gpus": 1}}).family_scaling("extra").num_gpus == 1

    # run from an install (no checkout beside the package): the installed metadata is what there is
    families.entry_points.cache_clear()
    monkeypatch.setattr(families, "PYPROJECT", tmp_path / "absent" / "pyproject.toml")
    assert families.family_names() == ["extra", "gone"]


def test_a_family_declared_twice_differently_is_an_error(fresh_registry, tmp_path, monkeypatch):
    first = next(iter(PYPROJECT["entry-points"][families.FAMILIES_GROUP]))
    _fake_distribution(tmp_path, "collage-impostor", {families.FAMILIES_GROUP: {first: "impostor:Deployment"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeError, match="declared twice"):
        families.family_names()


def test_settings_refuse_overrides_of_unregistered_families(fresh_registry):
    with pytest.raises(ValueError, match=r"unknown families \['nope'\]"):
        Settings(family_overrides={"nope": {"num_gpus": 1}})
    first = families.family_names()[0]
    assert Settings(family_overrides={first: {"num_gpus": 0.5}}).family_scaling(first).num_gpus == 0.5


def test_the_installed_metadata_declares_what_pyproject_declares():
    """`pip install -e .` (README, CI) or `pip install .` (Dockerfile) records the entry points; an
    older editable install of this checkout has none until it is reinstalled."""
    try:
        installed = metadata.distribution("collage").entry_points
    except metadata.PackageNotFoundError:
        pytest.skip("collage is not installed")
    for group, declared in PYPROJECT["entry-points"].items():
        found = {point.name: point.value for point in installed if point.group == group}
        if not found:
            pytest.skip(f"the installed collage metadata has no {group} entry points: reinstall (pip install -e .)")
        assert found == declared, group
