"""The one place for settings: environment variables (prefix ``COLLAGE_``) and the standard AWS_* ones.

Every process (CLI, ingress replica, family replicas) builds its settings from the environment with
:func:`get_settings`, so a Ray worker and the driver that started it always agree.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Annotated, Iterator, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.common import Limits
from service import webhooks
from service.families import family_names

REPO_ROOT = Path(__file__).resolve().parent.parent


class FamilyScaling(BaseModel):
    """Resources and replica counts of one family's deployment; in ``family_overrides``, unset = the default."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float | None = Field(default=None, gt=0, description="CPUs reserved per replica (default family_num_cpus)")
    num_gpus: float | None = Field(
        default=None, ge=0, le=8, description="GPUs reserved per replica, fractions share a GPU (default family_num_gpus)"
    )
    replicas: int | None = Field(default=None, ge=1, description="replicas while autoscaling is off (default family_replicas)")
    min_replicas: int | None = Field(default=None, ge=0, description="autoscaling lower bound (default autoscaling_min_replicas)")
    max_replicas: int | None = Field(default=None, ge=1, description="autoscaling upper bound (default autoscaling_max_replicas)")


API_SCOPES = ("edit", "jobs", "admin")

# Ray resources a node offers by itself (``num_cpus``, ``num_gpus`` and memory options set them): not custom ones.
RAY_BUILTIN_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})
# Custom Ray resources a replica reserves, by name (``ray start --resources``, a worker group's rayStartParams.resources)
RayResources = dict[str, Annotated[float, Field(gt=0)]]
AddressingStyle = Literal["path", "virtual", "auto"]  # S3 addressing, as botocore's s3.addressing_style takes it


class ApiKeyEntry(BaseModel):
    """One API key as settings hold it: never the token, only its SHA-256 (``collage keys new`` prints both)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="name of the key: owner of what it uploads and runs")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the bearer token")
    scopes: list[Literal["edit", "jobs", "admin"]] = Field(
        min_length=1, description="edit: assets and edits; jobs: assets and jobs; admin: model writes, catalog builds, every key's objects"
    )
    rate_limit_per_s: float | None = Field(default=None, ge=0, description="this key's request rate (default rate_limit_per_s)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COLLAGE_", extra="ignore")

    # --- S3-compatible storage -------------------------------------------------------------
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint URL; unset (and no AWS_ENDPOINT_URL[_S3]) means start the embedded SeaweedFS"
    )
    s3_bucket: str = Field(default="collage", min_length=3, description="bucket holding every object")
    s3_prefix: str = Field(default="", description="key prefix inside the bucket, e.g. 'staging/'")
    s3_region: str | None = Field(
        default=None,
        description="region used for request signing; unset: the AWS SDKs' own resolution "
        "(AWS_REGION, AWS_DEFAULT_REGION, the profile's config file), else us-east-1",
    )
    s3_addressing_style: AddressingStyle | None = Field(
        default=None,
        description="S3 addressing: path (endpoint/bucket/key), virtual (bucket.endpoint/key) or auto (the SDK picks); "
        "unset: the profile's s3.addressing_style in the AWS config file, else auto, which botocore "
        "resolves to path for an endpoint given by URL and to virtual-hosted on AWS",
    )
    s3_max_attempts: int = Field(
        default=3, ge=1, description="attempts per S3 call, the first included (botocore 'standard' retries, total_max_attempts)"
    )
    s3_connect_timeout_s: float = Field(default=2.0, gt=0, description="TCP connect timeout to S3")
    s3_read_timeout_s: float = Field(default=30.0, gt=0, description="socket read timeout to S3")
    s3_fast_path: bool = Field(
        default=True,
        description="HEAD and PUT to an endpoint given by URL signed here (service/s3_fast.py) "
        "instead of through boto3, which still answers every other request and every error",
    )
    presign_expires_s: int = Field(default=900, ge=1, le=7 * 24 * 3600, description="presigned URL lifetime")

    # --- embedded SeaweedFS (only when no endpoint is configured) --------------------------
    data_dir: Path = Field(default=REPO_ROOT / ".collage", description="local state: embedded S3 data, logs")
    embedded_s3_port: int = Field(default=8333, ge=0, le=65535, description="S3 port of the embedded server; 0 = any free")

    # --- HTTP ingress ----------------------------------------------------------------------
    http_host: str = Field(default="127.0.0.1", description="interface the Serve HTTP proxy binds")
    http_port: int = Field(default=8000, ge=0, le=65535, description="port the Serve HTTP proxy binds")
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="largest request body accepted")
    max_image_pixels: int = Field(default=4096 * 4096, ge=64 * 64, description="largest decoded image (w*h)")
    inline_max_bytes: int = Field(default=512 * 1024, ge=0, description="largest result returned inline as base64")
    png_compress_level: int = Field(
        default=1,
        ge=0,
        le=9,
        description="zlib level of result PNGs: 1 is 4-6x faster to encode than 6 for 4-10 % larger files (docs/api.md, Output formats)",
    )
    edit_timeout_s: float = Field(default=120.0, gt=0, description="how long the ingress waits for a family")
    storage_deadline_s: float = Field(
        default=10.0,
        gt=0,
        description="longest one storage step of a request may take "
        "(or the request's X-Request-Timeout, if sooner) before a 503 (service/storage_gate.py)",
    )
    storage_breaker_failures: int = Field(
        default=5, ge=1, description="consecutive storage failures that open the circuit breaker: storage steps then answer 503 at once"
    )
    storage_breaker_open_s: float = Field(default=5.0, gt=0, description="how long an open storage breaker answers 503 without trying S3")

    # --- API authentication and limits (docs/security.md) ------------------------------------
    auth: Literal["required", "disabled"] = Field(
        default="required",
        description="required: every route but /healthz, "
        "/readyz (and /metrics while metrics_public) needs a bearer token of "
        "api_keys; disabled: no tokens, no per-key ownership (local dev only)",
    )
    api_keys: list[ApiKeyEntry] = Field(
        default_factory=list,
        description='API keys as JSON: [{"id": "shop", "sha256": '
        '"<hex sha256 of the token>", "scopes": ["edit", "jobs"]}]; `collage keys new` makes one',
    )
    metrics_public: bool = Field(default=True, description="/metrics open to scrapers without a token; false: admin scope")
    rate_limit_per_s: float = Field(
        default=0.0,
        ge=0,
        description="requests per second per API key, for the whole service (each ingress replica: a token bucket with 1 / ingress_replicas of it); over it: 429 + Retry-After; 0 = no limit",
    )
    rate_limit_burst: int = Field(
        default=20,
        ge=1,
        description="requests a key may send at once above its rate, for the whole service (1 / ingress_replicas per replica)",
    )
    max_deadline_s: float = Field(default=600.0, gt=0, description="longest X-Request-Timeout a client may ask for")
    client_token: SecretStr = Field(
        default=SecretStr(""),
        description="bearer token this project's own clients send (collage edit/jobs/demo, loadtests); not read by the service",
    )

    # --- Ray / batching --------------------------------------------------------------------
    ray_num_cpus: int = Field(default=2, ge=1, description="CPUs given to a local Ray instance")
    family_num_cpus: float = Field(
        default=0.25,
        gt=0,
        description="CPUs reserved per family replica (Ray scheduling; all families and "
        "the ingress must fit ray_num_cpus: 0.25 ingress + 6 x 0.25 + 0.1 job runner = 1.85 of 2)",
    )
    family_num_gpus: float = Field(
        default=0.0,
        ge=0,
        le=8,
        description="GPUs reserved per family replica; a fraction shares one GPU (0.25: four family replicas on one GPU); 0 = CPU only",
    )
    # Placement: custom Ray resources each replica reserves. A replica then runs only on Ray nodes that offer them
    # (``ray start --resources``; the chart's worker groups: rayStartParams.resources), as family_num_gpus keeps
    # family replicas on GPU nodes; a node's amount bounds how many such replicas it takes (tests/test_multinode.py).
    family_resources: RayResources = Field(
        default_factory=dict,
        description='custom Ray resources each family replica reserves, as JSON ({"collage_family": 1}): family replicas '
        "run only on Ray nodes that offer them (a worker group's rayStartParams.resources); empty = any node",
    )
    ingress_resources: RayResources = Field(
        default_factory=dict,
        description='custom Ray resources each ingress replica reserves, as JSON ({"collage_ingress": 1}): the ingress runs '
        "only on Ray nodes that offer them; empty = any node with a CPU free",
    )
    jobs_resources: RayResources = Field(
        default_factory=dict,
        description="custom Ray resources each job runner replica reserves, as JSON: the runners run only on Ray nodes "
        "that offer them; empty = any node",
    )
    batch_max_size: int = Field(default=8, ge=1, le=256, description="@serve.batch max_batch_size per family replica")
    batch_wait_timeout_s: float = Field(default=0.02, ge=0, le=5, description="@serve.batch wait for a batch to fill")
    batch_idle_fast_path: bool = Field(
        default=True,
        description="run an edit at once, without the batch wait, when its family "
        "replica has nothing else in flight (no batch could form anyway)",
    )
    edit_coalesce_ms: float = Field(
        default=15.0,
        ge=0,
        le=100,
        description="while a model has a call in flight, how long the "
        "ingress holds a new edit for others to share its call to the family (up to batch_max_size "
        "per call, service/coalesce.py); 0 = one call per edit",
    )
    speculative_dispatch: bool = Field(
        default=True,
        description="while an edit is its family's only one in flight at this ingress, reads nothing stored "
        "(no asset, no projection) and its op changes no cached state, send it to the family at once and look up the cache meanwhile (a hit cancels "
        "the call or drops its output): a miss then waits for no lookup round trip",
    )
    family_max_ongoing_requests: int = Field(
        default=64,
        ge=1,
        description="edits a family replica takes at once (Serve "
        "max_ongoing_requests; at least 2 x batch_max_size); the rest queue in the caller",
    )
    max_queued_requests: int = Field(
        default=512,
        ge=1,
        description="calls (of up to batch_max_size coalesced edits) queued per family at each ingress replica before 429 + Retry-After",
    )
    max_queue_wait_s: float = Field(
        default=1.0,
        gt=0,
        description="a synchronous edit whose expected wait for its family "
        "(edits in flight at this ingress ÷ their measured throughput) is longer is answered "
        "429 + Retry-After at once (service/admission.py); family_max_ongoing_requests edits "
        "are always admitted",
    )
    max_models_per_replica: int = Field(default=3, ge=1, description="@serve.multiplexed cache size per replica")

    # --- replicas and autoscaling (Serve num_replicas / autoscaling_config; the chart sets them per cluster) ---
    ingress_replicas: int = Field(
        default=1,
        ge=1,
        description="Ingress replicas (validation, S3 I/O, dispatch); each enforces 1 / ingress_replicas of every key's rate limit",
    )
    # 96, not Serve's 256: what this bounds is the replica's own event loop. With 256 requests sharing
    # it, a 3x overload's 429s waited up to 5.4 s (p99) behind the loop; with 96 or 64 the p99 was
    # 0.01-0.25 s and the 200s' p99 under 2 s, at the same throughput (docs/security.md §6, measured
    # by loadtests.overload). HAProxy holds the excess in its queue, which costs the replica nothing.
    ingress_max_ongoing_requests: int = Field(
        default=96,
        ge=16,
        description="requests an ingress replica holds at once; past it a request is answered 429 + "
        "Retry-After at once, before its body is read (probes and /metrics excepted). It bounds the "
        "replica's event loop: raise it with the replica's CPU, not with the family's throughput",
    )
    ingress_queue_timeout_ms: int = Field(
        default=2000,
        ge=100,
        description="longest wait in HAProxy's queue for an ingress replica (each takes ingress_max_ongoing_requests "
        "at a time; the queue holds half as many more, then 429) before a 503 + Retry-After (service/tools/haproxy_bounds.py)",
    )
    ingress_max_loop_lag_ms: float = Field(
        default=250.0,
        ge=10,
        description="while an ingress replica's event loop runs this late (its CPU is the bottleneck), new "
        "requests are answered 429 + Retry-After at once instead of joining the backlog (probes and /metrics excepted)",
    )
    family_replicas: int = Field(default=1, ge=1, description="replicas per family while autoscaling is off")
    autoscaling_enabled: bool = Field(
        default=False,
        description="family replicas follow the load between "
        "autoscaling_min_replicas and autoscaling_max_replicas; off = family_replicas each",
    )
    autoscaling_min_replicas: int = Field(
        default=1, ge=0, description="fewest replicas per family (0: none while idle, the first edit then waits for a replica to start)"
    )
    autoscaling_max_replicas: int = Field(default=4, ge=1, description="most replicas per family")
    autoscaling_target_ongoing_requests: float | None = Field(
        default=None, gt=0, description="edits in flight per family replica the autoscaler aims at; unset = two full batches"
    )
    autoscaling_upscale_delay_s: float = Field(
        default=30.0, ge=0, description="load must stay above target this long before a replica is added"
    )
    autoscaling_downscale_delay_s: float = Field(
        default=600.0, ge=0, description="load must stay below target this long before a replica is removed"
    )
    family_overrides: dict[str, FamilyScaling] = Field(
        default_factory=dict,
        description="per-family exceptions to "
        "family_num_cpus/num_gpus/replicas and the autoscaling bounds, as JSON: "
        '{"style": {"num_gpus": 0.5, "max_replicas": 8}}',
    )
    ray_metrics_port: int = Field(
        default=8089, ge=0, le=65535, description="Ray's Prometheus export port (Serve's own metrics); 0 = any free"
    )
    checkpoints_dir: Path = Field(default=REPO_ROOT / "checkpoints", description="shipped demo checkpoints")

    # --- generator speed options (service/acceleration.py; measured by loadtests/accel.py) ---
    accel_precision: str = Field(
        default="fp32", pattern="^(fp32|bf16|fp16)$", description="autocast precision of generator forward passes (fp16: CUDA only)"
    )
    accel_channels_last: bool = Field(default=False, description="generator weights and activations in NHWC")
    accel_compile: bool = Field(
        default=False,
        description="torch.compile each loaded generator (static shapes: groups padded to "
        "batch buckets 1, 2, 4 ... batch_max_size, one compile each)",
    )
    accel_warmup_models: str = Field(
        default="*",
        description="with accel_compile: models whose batch buckets are compiled at replica "
        "start, before it takes traffic (comma-separated names; * = every model of the family, up to "
        "max_models_per_replica; empty = compile on first use)",
    )

    # --- async batch jobs (POST /v1/jobs) --------------------------------------------------
    jobs_max_items: int = Field(default=100_000, ge=1, description="most edits in one job (inline list or manifest lines)")
    jobs_max_in_flight: int = Field(
        default=8,
        ge=1,
        description="job items dispatched at once by the runner (all jobs) while no "
        "synchronous edit is coming in: enough to keep a dynamic batch full",
    )
    jobs_min_in_flight: int = Field(
        default=2,
        ge=1,
        description="job items dispatched at once while synchronous edits are coming in, "
        "so they keep the latency they have alone (loadtests/job_priority.py measures it)",
    )
    jobs_sync_quiet_s: float = Field(
        default=1.0,
        ge=0,
        description="a family replica that saw no synchronous edit for this long "
        "counts as quiet; the runner then goes back to jobs_max_in_flight",
    )
    jobs_max_yield_s: float = Field(
        default=2.0,
        ge=0,
        description="longest a job item waits in a family replica for synchronous "
        "edits to clear before it runs anyway (so a busy service still makes job progress)",
    )
    jobs_item_attempts: int = Field(
        default=6, ge=1, description="tries per item while its family answers 429/503 (backoff 0.5 s doubling to 8 s)"
    )
    jobs_poll_interval_s: float = Field(
        default=5.0, gt=0, description="how often the runner rescans S3 for queued jobs it does not run yet"
    )
    jobs_status_flush_s: float = Field(default=0.5, gt=0, description="how often a running job's status.json is rewritten")
    jobs_num_cpus: float = Field(default=0.1, ge=0, description="CPUs reserved by each job runner replica (it only waits on I/O)")
    jobs_runner_replicas: int = Field(
        default=1,
        ge=1,
        description="JobRunner replicas; they share the queued jobs, each job run by the replica "
        "holding its lease (docs/architecture/jobs.md)",
    )
    jobs_lease_s: float = Field(
        default=30.0,
        ge=1.0,
        description="a job's lease: its runner renews it every third of this; another runner takes "
        "the job over once the lease went this long without renewal (a runner that died)",
    )
    fit_num_cpus: float = Field(
        default=0.0,
        ge=0,
        description="CPUs reserved by the Ray task of a fit job (0: none, it shares the "
        "cores of a local Ray full of replicas; on a cluster give it cores of its own). Its torch threads: "
        "this, rounded down, at least 1",
    )
    fit_num_gpus: float = Field(default=0.0, ge=0, le=8, description="GPUs reserved by the Ray task of a fit job; > 0 trains on CUDA")
    max_model_pixels: int = Field(
        default=2048 * 2048,
        ge=64 * 64,
        description="pixels an op's generators may run on for one edit, for ops that check a pixel budget "
        "and declare none of their own (inpaint: every crop, padded; ingan.retarget declares 1024x1024); "
        "over it: 413 naming the budget and what would fit",
    )
    model_pixel_budgets: dict[str, int] = Field(
        default_factory=dict,
        description='per-op budgets as JSON, keyed "<family>.<op>", in place of max_model_pixels or the op\'s '
        'own budget: {"inpaint.inpaint": 16777216, "ingan.retarget": 4194304}',
    )
    webhook_secret: SecretStr = Field(
        default=SecretStr(""),
        description="HMAC-SHA256 key signing job webhooks (Standard Webhooks): whsec_<base64> is the decoded bytes, "
        "any other value its UTF-8 bytes; webhooks are refused while unset",
    )
    webhook_max_attempts: int = Field(default=5, ge=1, description="deliveries tried per webhook before it is recorded as failed")
    webhook_backoff_s: float = Field(
        default=1.0, ge=0, description="ceiling of the first webhook retry delay, doubled per retry; each delay is drawn from [0, ceiling]"
    )
    webhook_backoff_max_s: float = Field(default=60.0, ge=0, description="largest ceiling of a webhook retry delay")
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="timeout of one webhook POST")
    webhook_allow_private: bool = Field(
        default=False,
        description="allow webhook URLs on loopback, private, link-local and "
        "other non-public addresses (SSRF guard off; tests and single-host setups)",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="level of every collage log of every process (WARNING drops the ingress's line per request)"
    )
    serve_access_log: bool = Field(
        default=False,
        description="Ray Serve's own access log line per request in every replica; "
        "off: the ingress's JSON request log is the one line per request",
    )

    @model_validator(mode="after")
    def _check_family_deployments(self) -> "Settings":
        known = family_names()
        unknown = sorted(set(self.family_overrides) - set(known))
        if unknown:
            raise ValueError(f"family_overrides names unknown families {unknown}; known: {sorted(known)}")
        for family in known:
            scaling = self.family_scaling(family)
            if scaling.min_replicas > scaling.max_replicas:
                raise ValueError(f"family {family!r}: min_replicas {scaling.min_replicas} > max_replicas {scaling.max_replicas}")
        if self.model_pixel_budgets:
            # families by name only: Settings never imports a family (the ops are checked where families load, service/app.py)
            unknown_families = sorted({key.partition(".")[0] for key in self.model_pixel_budgets} - set(known))
            if unknown_families or not all("." in key for key in self.model_pixel_budgets):
                raise ValueError(f'model_pixel_budgets keys are "<family>.<op>" of known families {sorted(known)}')
            low = {op: budget for op, budget in self.model_pixel_budgets.items() if budget < 64 * 64}
            if low:
                raise ValueError(f"model_pixel_budgets: budgets below {64 * 64} pixels {low}")
        for name in ("family_resources", "ingress_resources", "jobs_resources"):
            builtin = sorted(set(getattr(self, name)) & RAY_BUILTIN_RESOURCES)
            if builtin:  # Ray refuses them in `resources`: num_cpus / num_gpus say those
                raise ValueError(f"{name}: {builtin} are Ray's own resources, not custom ones (family_num_cpus/num_gpus set them)")
        ids = [key.id for key in self.api_keys]
        hashes = [key.sha256 for key in self.api_keys]
        if len(set(ids)) != len(ids) or len(set(hashes)) != len(hashes):
            raise ValueError("api_keys: every key needs its own id and its own token")
        webhooks.signing_key(self.webhook_secret.get_secret_value())  # a malformed whsec_ key fails here, not at a job's end
        return self

    def family_scaling(self, family: str | None) -> FamilyScaling:
        """The options of ``family``'s deployment, every field set: its override over the defaults (None: the defaults)."""
        resolved = {
            "num_cpus": self.family_num_cpus,
            "num_gpus": self.family_num_gpus,
            "replicas": self.family_replicas,
            "min_replicas": self.autoscaling_min_replicas,
            "max_replicas": self.autoscaling_max_replicas,
        }
        if family in self.family_overrides:
            resolved.update(self.family_overrides[family].model_dump(exclude_none=True))
        return FamilyScaling(**resolved)

    def limits(self) -> Limits:
        """The size limits an op's ``prepare`` (schemas/) checks a request against."""
        return Limits(
            max_image_pixels=self.max_image_pixels,
            max_model_pixels=self.max_model_pixels,
            model_pixel_budgets=dict(self.model_pixel_budgets),
        )

    @property
    def embedded_s3(self) -> bool:
        """True when no endpoint is configured anywhere, so the CLI must run SeaweedFS itself."""
        return not (self.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))

    @property
    def resolved_region(self) -> str:
        """``s3_region``, else the AWS SDKs' order: ``AWS_REGION`` (which the AWS CLI and the other SDKs read
        first and botocore ignores), then what boto3 resolves (``AWS_DEFAULT_REGION``, the profile's
        ``region``), else us-east-1."""
        if self.s3_region or os.environ.get("AWS_REGION"):
            return self.s3_region or os.environ["AWS_REGION"]
        import boto3.session

        return boto3.session.Session().region_name or "us-east-1"

    @property
    def resolved_addressing_style(self) -> str:
        """``s3_addressing_style``, else the ``s3.addressing_style`` of the profile's AWS config file (as the SDKs
        read it: ``AWS_CONFIG_FILE``, ``AWS_PROFILE``), else ``auto``. The one place the style is decided: the
        boto3 clients, their presigned URLs and the fast path (service/s3_fast.py) all follow it."""
        if self.s3_addressing_style:
            return self.s3_addressing_style
        import botocore.session

        section = botocore.session.get_session().get_scoped_config().get("s3") or {}
        style = section.get("addressing_style") if isinstance(section, dict) else None
        if style is None:
            return "auto"
        if style not in get_args(AddressingStyle):
            raise ValueError(f"the AWS config file's s3.addressing_style is {style!r}: use path, virtual or auto")
        return style

    @property
    def resolved_endpoint_url(self) -> str | None:
        return self.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


@contextlib.contextmanager
def patched_environ(values: dict[str, str], cleared: tuple[str, ...] = ()) -> Iterator[None]:
    """Set (and clear) environment variables, refresh Settings, and restore both afterwards: how tests
    and the benchmarks run a service under other settings in one process."""
    saved = {name: os.environ.get(name) for name in (*values, *cleared)}
    for name in cleared:
        os.environ.pop(name, None)
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
