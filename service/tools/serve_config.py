"""The application's Ray Serve config (the ``serve build`` / ``serve deploy`` format), computed from the settings.

One source for every way the app runs: the deployment options come from ``family_options``,
``job_runner_options`` and ``ingress_options`` in ``service.app``, the same functions ``build_app``
binds in local runs. ``collage serve-config`` writes this config for a plain Ray cluster.

The Helm chart's RayService carries the application without its deployment options
(``chart_serve_config``): that file is generated from here into ``helm/collage/files/`` (``python -m
service.tools.helm_values --write``), and the chart fills in only the enabled families. The options
are then those ``build_app`` binds in the pods, from the settings of the chart's ConfigMap (Serve
keeps an option the config leaves out as the code set it), so no template computes them a second
time. tests/test_helm.py checks that the file is current, that the rendered ``serveConfigV2`` is this
config, and that ``serve_config`` of the pods' settings is what ``build_app`` binds there.
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


# Where the Serve proxy listens in a Kubernetes pod: KubeRay's probes and Service expect 0.0.0.0:8000.
# The chart hands these to the pods as COLLAGE_HTTP_HOST/PORT, read from the generated file.
CLUSTER_HTTP_HOST = "0.0.0.0"
CLUSTER_HTTP_PORT = 8000


def serve_config(settings: Settings, families: Iterable[str] | str | None = None, *, deployment_options: bool = True) -> dict[str, Any]:
    """The Serve config of the app with ``families`` (names or ``"a,b"``; default all) under ``settings``.

    ``deployment_options=False`` leaves the deployments out: Serve then keeps the options
    ``build_app`` binds where the application is built, from that process's settings.
    """
    names = parse_families(families if isinstance(families, str) or families is None else ",".join(families))
    application: dict[str, Any] = {"name": APP_NAME, "route_prefix": "/", "import_path": IMPORT_PATH, "args": {"families": ",".join(names)}}
    if deployment_options:
        deployments = [{"name": family_deployment_name(name), **family_options(settings, name)} for name in names]
        deployments.append({"name": JobRunner.name, **job_runner_options(settings)})
        deployments.append({"name": Ingress.name, **ingress_options(settings)})
        application["deployments"] = deployments
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": settings.http_host, "port": settings.http_port},
        "applications": [application],
    }


def chart_serve_config(families: Iterable[str] | str | None = None) -> dict[str, Any]:
    """The Serve config the Helm chart's RayService carries for ``families``: where the proxy of a
    Kubernetes pod listens, and the application without deployment options (the pods' settings give them)."""
    settings = Settings.model_construct(http_host=CLUSTER_HTTP_HOST, http_port=CLUSTER_HTTP_PORT)
    return serve_config(settings, families, deployment_options=False)
