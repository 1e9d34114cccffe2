"""The one place where the service declares its metrics.

Every metric of the service is exported through Ray's metrics export (``ray.util.metrics``), on the
Ray metrics port of the node whose process records it, with the prefix ``ray_``: that port is what
the chart's ServiceMonitor scrapes on every Ray pod, so one scrape per node carries every replica's
series. Ray Serve's built-in metrics (replica queue lengths, handle latencies, ...) are there too.

Ingress metrics (the first block below) are :class:`_Metric` objects, used like prometheus-client
ones (``REQUESTS.labels(route, op, status).inc()``). Each records twice: into a ``ray.serve.metrics``
object, which adds the Serve tags ``deployment``, ``replica`` and ``application`` (so the replicas'
series are told apart in one scrape), and into the prometheus-client :data:`REGISTRY` of the
process, which the ingress serves at ``/metrics``: that one replica's own view, for a local run and
for debugging (behind a load balancer a scrape of ``/metrics`` reaches one replica at a time, which
is why it is not what Prometheus scrapes). Counters are named without the suffix; both exports
append ``_total`` (prometheus-client and Ray's OpenTelemetry exporter alike). Units are base units
(seconds).

The metrics of family replicas and the job runner are declared at the end of this module with
``ray.util.metrics`` only: each is a function that creates its metric on first use in the process that
records it (a replica's ``__init__``), once per process; it gives None where Ray cannot create it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,  # noqa: F401  (re-exported for the ingress)
    CollectorRegistry,
    generate_latest,
)
from prometheus_client import Counter as _PromCounter
from prometheus_client import Gauge as _PromGauge
from prometheus_client import Histogram as _PromHistogram

log = logging.getLogger("collage.metrics")
REGISTRY = CollectorRegistry(auto_describe=True)
_UNSET = object()


class _Metric:
    """A metric recorded into Ray's export (with Serve's replica tags) and into :data:`REGISTRY` (see the
    module docstring). The Ray metric is created on first use, in the process that records (a replica,
    where Serve's replica context gives the tags); where Ray cannot create it, only REGISTRY records."""

    kind = ""

    def __init__(self, name: str, description: str, labelnames: Sequence[str] = (), buckets: Sequence[float] | None = None) -> None:
        self.name, self.description, self.labelnames = name, description, tuple(labelnames)
        self.buckets = tuple(buckets) if buckets else None
        local = {"counter": _PromCounter, "gauge": _PromGauge, "histogram": _PromHistogram}[self.kind]
        extra = {"buckets": self.buckets} if self.buckets else {}
        self.local = local(name, description, self.labelnames, registry=REGISTRY, **extra)
        self._ray: Any = _UNSET
        self.export_failed = False  # logged once
        self._children: dict[tuple[str, ...], _Child] = {}
        self._lock = threading.Lock()

    def _create_ray(self) -> Any:
        from ray.serve import metrics as serve_metrics

        if self.kind == "counter":
            return serve_metrics.Counter(self.name, description=self.description, tag_keys=self.labelnames)
        if self.kind == "gauge":
            return serve_metrics.Gauge(self.name, description=self.description, tag_keys=self.labelnames)
        return serve_metrics.Histogram(self.name, description=self.description, boundaries=list(self.buckets), tag_keys=self.labelnames)

    def ray(self) -> Any:
        if self._ray is _UNSET:
            with self._lock:
                if self._ray is _UNSET:
                    try:
                        self._ray = self._create_ray()
                    except Exception:  # metrics are optional: the ingress works without Ray's
                        self._ray = None
        return self._ray

    def labels(self, *values: str) -> _Child:
        child = self._children.get(values)
        if child is None:
            with self._lock:
                child = self._children.setdefault(values, _Child(self, values))
        return child

    # unlabelled metrics: the methods of their one child
    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self.labels().dec(amount)

    def observe(self, value: float) -> None:
        self.labels().observe(value)


class _Child:
    """One label set of a :class:`_Metric`: its prometheus-client child and its Ray tags."""

    def __init__(self, parent: _Metric, values: tuple[str, ...]) -> None:
        if len(values) != len(parent.labelnames):
            raise ValueError(f"{parent.name} takes labels {parent.labelnames}, got {values}")
        self.parent = parent
        self.local = parent.local.labels(*values) if values else parent.local
        self.tags = dict(zip(parent.labelnames, values))
        self._value = 0.0  # a gauge's value: Ray's gauges are only set
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0) -> None:
        self.local.inc(amount)
        if self.parent.kind == "gauge":
            self._set_gauge(amount)
        elif amount > 0:
            self._record("inc", amount)

    def dec(self, amount: float = 1.0) -> None:
        self.local.dec(amount)
        self._set_gauge(-amount)

    def _set_gauge(self, delta: float) -> None:
        with self._lock:
            self._value += delta
            value = self._value
        self._record("set", value)

    def observe(self, value: float) -> None:
        self.local.observe(value)
        self._record("observe", value)

    def _record(self, method: str, value: float) -> None:
        """Into Ray's export, if there is one. A metric never fails the request that records it: Ray's
        recorder refuses some tag values (non-ASCII ones raise in its C++ layer), and then only the
        local registry has the sample."""
        metric = self.parent.ray()
        if metric is None:
            return
        try:
            getattr(metric, method)(value, tags=dict(self.tags))
        except Exception:  # noqa: BLE001 - see the docstring
            if not self.parent.export_failed:
                self.parent.export_failed = True
                log.warning("metric %s: Ray's export refused tags %s; recorded locally only", self.parent.name, self.tags, exc_info=True)


class Counter(_Metric):
    kind = "counter"


class Gauge(_Metric):
    kind = "gauge"


class Histogram(_Metric):
    kind = "histogram"


# ---- ingress metrics (Ray export with replica tags, and this replica's /metrics) --------------------------
REQUESTS = Counter(
    "collage_http_requests", "HTTP requests handled by the ingress, by route template, op and status code.", ["route", "op", "status"]
)
REQUEST_LATENCY = Histogram(
    "collage_http_request_duration_seconds",
    "Ingress latency by route template and op.",
    ["route", "op"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH_SIZE = Histogram(
    "collage_batch_size",
    "Size of the dynamic batch each computed edit rode in, by family.",
    ["family"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
CALL_EDITS = Histogram(
    "collage_family_call_edits",
    "Edits carried by each call from this ingress replica to a family (service/coalesce.py).",
    ["family"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
QUEUE_SECONDS = Histogram(
    "collage_queue_seconds",
    "Wait from dispatch to the family until the edit's batch started.",
    ["family"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
QUEUE_DEPTH = Gauge("collage_queue_depth", "Edits dispatched by this ingress replica to a family and not yet answered.", ["family"])
CACHE = Counter("collage_result_cache", "Edit result cache lookups by outcome (hit/miss).", ["outcome"])
INGRESS_SHED = Counter(
    "collage_ingress_shed",
    "Requests answered 429 before any handler because the ingress replica was full (in_flight) or saturated (loop_lag).",
    ["reason"],
)
STORAGE_TIMEOUTS = Counter("collage_storage_deadline_exceeded", "Request-path storage steps that passed their deadline (503).")
STORAGE_BREAKER_OPENED = Counter("collage_storage_breaker_opened", "Times the storage circuit breaker opened (storage known down).")


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
