"""The one place for the service's own Prometheus metrics (served by the ingress at ``/metrics``).

Ray Serve's built-in metrics (replica queue lengths, handle latencies, ...) are exported separately
on the Ray metrics port; family replicas add their batch histogram there via ``ray.util.metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the ingress)

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
    "collage_queue_depth",
    "Edits dispatched by this ingress replica to a family and not yet answered.",
    ["family"],
    registry=REGISTRY,
)
CACHE = Counter("collage_result_cache", "Edit result cache lookups by outcome (hit/miss).", ["outcome"], registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
