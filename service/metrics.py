"""The one place where the service declares its metrics.

Ingress metrics are ``prometheus_client`` objects in :data:`REGISTRY`, served by the ingress at
``/metrics``. Ray Serve's built-in metrics (replica queue lengths, handle latencies, ...) are exported
separately on the Ray metrics port, and so are the metrics of family replicas and the job runner,
declared at the end of this module with ``ray.util.metrics``. Those are exported only from a Ray
worker, so each is a function that creates its metric on first use in the process that records it
(a replica's ``__init__``), once per process; it gives None where Ray cannot create it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,  # noqa: F401  (re-exported for the ingress)
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "collage_http_requests",
    "HTTP requests handled by the ingress, by route template, op and status code.",
    ["route", "op", "status"],
    registry=REGISTRY,
)
REQUEST_LATENCY = Histogram(
    "collage_http_request_duration_seconds",
    "Ingress latency by route template and op.",
    ["route", "op"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "collage_batch_size",
    "Size of the dynamic batch each computed edit rode in, by family.",
    ["family"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)
CALL_EDITS = Histogram(
    "collage_family_call_edits",
    "Edits carried by each call from this ingress replica to a family (service/coalesce.py).",
    ["family"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)
QUEUE_SECONDS = Histogram(
    "collage_queue_seconds",
    "Wait from dispatch to the family until the edit's batch started.",
    ["family"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "collage_queue_depth", "Edits dispatched by this ingress replica to a family and not yet answered.", ["family"], registry=REGISTRY
)
CACHE = Counter("collage_result_cache", "Edit result cache lookups by outcome (hit/miss).", ["outcome"], registry=REGISTRY)
INGRESS_SHED = Counter(
    "collage_ingress_shed",
    "Requests answered 429 before any handler because the ingress replica was full (in_flight) or saturated (loop_lag).",
    ["reason"],
    registry=REGISTRY,
)
STORAGE_TIMEOUTS = Counter(
    "collage_storage_deadline_exceeded", "Request-path storage steps that passed their deadline (503).", registry=REGISTRY
)
STORAGE_BREAKER_OPENED = Counter(
    "collage_storage_breaker_opened", "Times the storage circuit breaker opened (storage known down).", registry=REGISTRY
)


def render() -> bytes:
    return generate_latest(REGISTRY)


# ---- Ray metrics (exported on the Ray metrics port with the prefix ``ray_``) -----------------------------
_RAY_METRICS: dict[str, Any] = {}
_RAY_METRICS_LOCK = threading.Lock()


def _ray_metric(name: str, create: Callable[[Any], Any]) -> Any:
    """The process's one ``ray.util.metrics`` object called ``name``, created by ``create(ray.util.metrics)``
    on first use; None where Ray cannot create it, so callers record only when they got one."""
    with _RAY_METRICS_LOCK:
        metric = _RAY_METRICS.get(name)
        if metric is None:
            try:
                from ray.util import metrics as ray_metrics

                metric = _RAY_METRICS[name] = create(ray_metrics)
            except Exception:  # metrics are optional: a replica works without them
                return None
        return metric


def family_batch_size() -> Any:
    """Histogram ``collage_family_batch_size`` (tag ``family``): each dynamic batch a family replica runs."""
    return _ray_metric(
        "collage_family_batch_size",
        lambda m: m.Histogram(
            "collage_family_batch_size",
            description="Dynamic batch sizes seen by a family replica.",
            boundaries=[1, 2, 4, 8, 16, 32, 64, 128],
            tag_keys=("family",),
        ),
    )


def job_items() -> Any:
    """Counter ``collage_job_items`` (tag ``state``): job items the job runner finished."""
    return _ray_metric(
        "collage_job_items", lambda m: m.Counter("collage_job_items", description="Job items finished, by state.", tag_keys=("state",))
    )


def jobs_running() -> Any:
    """Gauge ``collage_jobs_running``: jobs the job runner is executing."""
    return _ray_metric("collage_jobs_running", lambda m: m.Gauge("collage_jobs_running", description="Jobs this runner is executing."))
