"""The application's Ray Serve config (the ``serve build`` / ``serve deploy`` format), computed from the settings.

One source for every way the app runs: the deployment options come from ``family_options``,
``job_runner_options`` and ``ingress_options`` in ``service.app``, the same functions ``build_app``
binds in local runs. ``collage serve-config`` writes this config for a plain Ray cluster; the Helm
chart renders it into its RayService's ``serveConfigV2`` from the settings it hands the pods, and
tests/test_helm.py checks, for several value sets, that the chart's config equals
``serve_config(settings of those pods)`` and that both agree with the options ``build_app`` binds.
"""

from __future__ import annotations

from typing import Any, Iterable

from service.app import family_options, ingress_options, job_runner_options, parse_families
from service.config import Settings
from service.families import deployment_class_name
from service.ingress import Ingress
from service.job_runner import JobRunner
from service.runtime import APP_NAME

# The application builder: its ``families`` argument selects the family deployments.
IMPORT_PATH = "service.app:build_app"


def family_deployment_name(family: str) -> str:
    """Serve names a deployment after its class, which the family's entry point names (service/families.py)."""
    return deployment_class_name(family)


def serve_config(settings: Settings, families: Iterable[str] | str | None = None) -> dict[str, Any]:
    """The Serve config of the app with ``families`` (names or ``"a,b"``; default all) under ``settings``."""
    names = parse_families(families if isinstance(families, str) or families is None else ",".join(families))
    deployments = [{"name": family_deployment_name(name), **family_options(settings, name)} for name in names]
    deployments.append({"name": JobRunner.name, **job_runner_options(settings)})
    deployments.append({"name": Ingress.name, **ingress_options(settings)})
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": settings.http_host, "port": settings.http_port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": {"families": ",".join(names)},
                "deployments": deployments,
            }
        ],
    }
