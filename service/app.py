"""The Ray Serve application: one ingress, one deployment per generator family, one job runner.

``service.app:app`` is importable, so ``serve run service.app:app`` and a Serve config YAML
(``import_path: service.app:app``) deploy it like any Serve app; ``build_app`` takes overrides.
"""

from __future__ import annotations

import importlib
from typing import Any

from ray.serve import Application

from deployments import FAMILY_DEPLOYMENTS
from service.config import Settings, get_settings
from service.ingress import Ingress
from service.job_runner import JobRunner


def family_options(settings: Settings) -> dict[str, Any]:
    """Deployment options every family gets.

    ``max_ongoing_requests`` is at least two full batches, and by default far more: edits then wait
    in the replica's own batch queue, where they fill the next batch, instead of in the caller's
    router, which backs off while every replica is full and so left the replica idle at high
    concurrency (loadtests/bench.py at concurrency 64: 12 -> 35 images/s for style.sample).

    Each family replica reserves ``family_num_cpus`` (default 0.5) so that every family fits a
    2-CPU local Ray next to the ingress; ``family_num_gpus`` (fractional: families share a GPU) puts
    replicas on GPU workers. On a cluster the Helm values set both per family.
    """
    return {
        "user_config": {"max_batch_size": settings.batch_max_size, "batch_wait_timeout_s": settings.batch_wait_timeout_s},
        "max_ongoing_requests": max(settings.family_max_ongoing_requests, 2 * settings.batch_max_size),
        "max_queued_requests": settings.max_queued_requests,
        "ray_actor_options": {"num_cpus": settings.family_num_cpus,
                              **({"num_gpus": settings.family_num_gpus} if settings.family_num_gpus else {})},
    }


def load_family(name: str):
    module_name, _, attr = FAMILY_DEPLOYMENTS[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Application builder (``serve run service.app:build_app families=style``).

    args: ``families`` (comma-separated subset of FAMILY_DEPLOYMENTS; default all).
    """
    args = args or {}
    settings = get_settings()
    wanted = args.get("families") or ",".join(FAMILY_DEPLOYMENTS)
    names = [n.strip() for n in str(wanted).split(",") if n.strip()]
    unknown = sorted(set(names) - set(FAMILY_DEPLOYMENTS))
    if unknown:
        raise ValueError(f"unknown families {unknown}; known: {sorted(FAMILY_DEPLOYMENTS)}")
    families = {name: load_family(name).options(**family_options(settings)).bind() for name in names}
    runner = JobRunner.options(ray_actor_options={"num_cpus": settings.jobs_num_cpus}).bind(families)
    return Ingress.bind(families, runner)


app = build_app()
