"""The Ray Serve application: one ingress, one deployment per generator family, one job runner.

``service.app:app`` is importable (built on first access), so ``serve run service.app:app`` and a Serve
config YAML (``import_path: service.app:app``) deploy it like any Serve app; ``build_app`` takes overrides.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from service.autoscaling import POLICY_PATH as AUTOSCALING_POLICY
from service.config import Settings, get_settings
from service.families import family_names, load_deployment, op_table
from service.ingress import Ingress
from service.job_runner import JobRunner


def family_options(settings: Settings, family: str | None = None) -> dict[str, Any]:
    """Deployment options of a family (``family=None``: the options every family gets without an override).

    ``max_ongoing_requests`` is at least two full batches, and by default far more: edits then wait
    in the replica's own batch queue, where they fill the next batch, instead of in the caller's
    router, which backs off while every replica is full and so left the replica idle at high
    concurrency (loadtests/bench.py at concurrency 64: 12 -> 35 images/s for a style sample op).

    Each family replica reserves ``family_num_cpus`` (default 0.25) so that every family fits a
    2-CPU local Ray next to the ingress; ``family_num_gpus`` (fractional: families share a GPU) puts
    replicas on GPU workers, and ``family_resources`` (custom Ray resources) on the nodes that offer them. ``family_overrides`` changes resources and replica counts per family
    (the Helm chart's ``families`` values). With autoscaling on, the autoscaler aims at two full
    batches in flight per replica unless ``autoscaling_target_ongoing_requests`` says otherwise.

    These options are the single source of the deployments' settings: ``build_app`` binds them and
    ``service.tools.serve_config`` writes them into the Serve config the Kubernetes chart is checked against.
    """
    scaling = settings.family_scaling(family)
    options: dict[str, Any] = {
        "user_config": {"max_batch_size": settings.batch_max_size, "batch_wait_timeout_s": settings.batch_wait_timeout_s},
        "max_ongoing_requests": max(settings.family_max_ongoing_requests, 2 * settings.batch_max_size),
        "max_queued_requests": settings.max_queued_requests,
        "ray_actor_options": {
            "num_cpus": scaling.num_cpus,
            **({"num_gpus": scaling.num_gpus} if scaling.num_gpus else {}),
            **placement(settings.family_resources),
        },
        **logging_options(settings),
    }
    if settings.autoscaling_enabled:
        options["autoscaling_config"] = {
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": settings.autoscaling_target_ongoing_requests or 2 * settings.batch_max_size,
            "upscale_delay_s": settings.autoscaling_upscale_delay_s,
            "downscale_delay_s": settings.autoscaling_downscale_delay_s,
            "policy": {"policy_function": AUTOSCALING_POLICY},  # edits, not calls: service/autoscaling.py
        }
    else:
        options["num_replicas"] = scaling.replicas
    return options


def placement(resources: dict[str, float]) -> dict[str, Any]:
    """The ``ray_actor_options`` part that keeps a deployment's replicas on nodes offering these custom resources
    (none: no constraint, and no key, so configs without placement stay as they were)."""
    return {"resources": dict(resources)} if resources else {}


def logging_options(settings: Settings) -> dict[str, Any]:
    """Every deployment's Serve logging: Ray's access log line per request only when asked
    (``serve_access_log``). The ingress logs each request once, with its id, route, op and status;
    Ray's lines in the ingress and the family replica repeated that, and each line is formatted,
    written and shipped to the driver by Ray's log monitor (loadtests/serving_cost.py)."""
    return {"logging_config": {"enable_access_log": settings.serve_access_log}}


def job_runner_options(settings: Settings) -> dict[str, Any]:
    """``jobs_runner_replicas`` runners; they share the queue through per-job leases (service/job_lease.py)."""
    return {
        "num_replicas": settings.jobs_runner_replicas,
        "ray_actor_options": {"num_cpus": settings.jobs_num_cpus, **placement(settings.jobs_resources)},
        **logging_options(settings),
    }


def ingress_options(settings: Settings) -> dict[str, Any]:
    """The ingress enforces ``ingress_max_ongoing_requests`` itself, with a 429 problem at once
    (service/ingress.py, InFlightLimitMiddleware). Serve's own limit sits well above it: past Serve's,
    requests would wait in front of the replica, where nothing can answer them."""
    return {
        "num_replicas": settings.ingress_replicas,
        "max_ongoing_requests": 2 * settings.ingress_max_ongoing_requests + 64,
        # Serve's default of 1 CPU per replica stays; only the custom resources are added
        **({"ray_actor_options": placement(settings.ingress_resources)} if settings.ingress_resources else {}),
        **logging_options(settings),
    }


def parse_families(wanted: str | None) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; empty = every registered family (service/families.py)."""
    known = family_names()
    names = [n.strip() for n in str(wanted or ",".join(known)).split(",") if n.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown families {unknown}; known: {sorted(known)}")
    return names


def load_family(name: str):
    """The family's Serve deployment (imports its torch code)."""
    return load_deployment(name)


def check_pixel_budgets(settings: Settings) -> None:
    """Every ``model_pixel_budgets`` key names an op of its family (Settings checks the family only: it imports none)."""
    ops = {f"{family}.{op}" for family, table in op_table().items() for op in table}
    unknown = sorted(set(settings.model_pixel_budgets) - ops)
    if unknown:
        raise ValueError(f"model_pixel_budgets names unknown ops {unknown}; known: {sorted(ops)}")


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Application builder (``serve run service.app:build_app families=<family>,...``).

    args: ``families`` (comma-separated subset of the registered families; default all).
    """
    args = args or {}
    settings = get_settings()
    check_pixel_budgets(settings)
    names = parse_families(args.get("families"))
    families = {name: load_family(name).options(**family_options(settings, name)).bind() for name in names}
    runner = JobRunner.options(**job_runner_options(settings)).bind(families)
    return Ingress.options(**ingress_options(settings)).bind(families, runner)


def __getattr__(name: str) -> Any:
    # ``app`` is built on first access rather than at import, so that importing this module for its
    # option helpers (service.tools.serve_config, the CLI) does not import every family's torch code.
    if name == "app":
        built = globals()["app"] = build_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
