"""Shared pytest fixtures.

Storage: the tests talk to a real S3 server, SeaweedFS started by :class:`service.s3server.EmbeddedS3`
once per session in a temporary directory. The session fixture points this process's environment
(and so :func:`service.config.get_settings`, boto3, and any Ray worker started later) at it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from service.config import Settings, get_settings, patched_environ
from service.s3server import EmbeddedS3
from service.storage import AssetStore

TEST_BUCKET = "collage-test"
TEST_STORAGE_DEADLINE_S = 8.0  # a storage step of a request waits at most this (tests/test_faults.py stalls S3 past it)

# Variables the S3 session fixture sets or clears; all restored at session end.
_S3_ENV_CLEARED = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "COLLAGE_S3_PREFIX")


# ------------------------------------------------------------------------------ storage
@pytest.fixture(autouse=True)
def _settings_read_again_after_each_test():
    """A test that patches the environment and reads Settings leaves them cached after the patch is undone,
    and the next test (the service's fixtures among them) would read the patched ones. Autouse, so set up
    first and torn down last: after monkeypatch has restored the environment."""
    yield
    from service.config import get_settings

    get_settings.cache_clear()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """A real SeaweedFS S3 server for the whole session; os.environ points at it meanwhile."""
    server = EmbeddedS3(tmp_path_factory.mktemp("s3"), stop_timeout=2)
    server.start(timeout=90)
    env = {**server.env(), "AWS_REGION": server.region, "AWS_EC2_METADATA_DISABLED": "true", "COLLAGE_S3_BUCKET": TEST_BUCKET}
    try:
        with patched_environ(env, _S3_ENV_CLEARED):
            AssetStore(get_settings()).ensure_bucket()
            yield server
    finally:
        server.stop()


@pytest.fixture
def store(s3_server: EmbeddedS3) -> AssetStore:
    """An AssetStore on the test bucket with a prefix of its own (``t-<uuid>/``), so tests never collide."""
    settings = Settings(s3_endpoint_url=s3_server.endpoint_url, s3_bucket=TEST_BUCKET, s3_prefix=f"t-{uuid.uuid4().hex}/")
    asset_store = AssetStore(settings)
    asset_store.ensure_bucket()
    return asset_store


# ------------------------------------------------------------------------------ service
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


TEST_MAX_BODY_BYTES = 2 * 1024 * 1024
TEST_MAX_IMAGE_PIXELS = 1024 * 1024
TEST_INPAINT_PIXEL_BUDGET = 512 * 512  # per-op budget (model_pixel_budgets): a 1 MP photo is over it whole
TEST_RETARGET_PIXEL_BUDGET = 256 * 256  # below TEST_MAX_IMAGE_PIXELS, so an output can be returnable yet over it

# The test service requires API keys. ``client`` (and, through COLLAGE_CLIENT_TOKEN, the CLI, demo and
# load tests) use the admin key; tests/test_security.py uses the others.
TEST_TOKENS = {
    "admin": "clg_test-admin-token",
    "alice": "clg_test-alice-token",
    "bob": "clg_test-bob-token",
    "jobs-only": "clg_test-jobs-only-token",
    "limited": "clg_test-limited-token",
}
TEST_SCOPES = {
    "admin": ["edit", "jobs", "admin"],
    "alice": ["edit", "jobs"],
    "bob": ["edit", "jobs"],
    "jobs-only": ["jobs"],
    "limited": ["edit"],
}
TEST_LIMITED_RATE_PER_S = 0.2  # the "limited" key: a burst of TEST_RATE_BURST requests, then one per 5 s
TEST_RATE_BURST = 3
TEST_MAX_QUEUED_REQUESTS = 16  # edits queued per family at the ingress beyond those in the replica: overload is a 429 soon


def api_keys_json() -> str:
    from service.auth import key_entry

    entries = [
        key_entry(key_id, TEST_TOKENS[key_id], scopes, TEST_LIMITED_RATE_PER_S if key_id == "limited" else None)
        for key_id, scopes in TEST_SCOPES.items()
    ]
    return json.dumps([entry.model_dump() for entry in entries])


def auth_header(key_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TEST_TOKENS[key_id]}"}


@pytest.fixture(scope="session")
def service(s3_server: EmbeddedS3, tmp_path_factory: pytest.TempPathFactory):
    """The real Serve application (ingress + style family) on local Ray, against the session's S3 server.

    Small body/pixel caps and a long batch wait make limits and batching observable in tests.
    """
    from service.runtime import LocalService

    env = {
        "COLLAGE_HTTP_PORT": str(_free_port()),
        "COLLAGE_RAY_METRICS_PORT": str(_free_port()),
        "COLLAGE_MAX_BODY_BYTES": str(TEST_MAX_BODY_BYTES),
        "COLLAGE_MAX_IMAGE_PIXELS": str(TEST_MAX_IMAGE_PIXELS),
        "COLLAGE_MODEL_PIXEL_BUDGETS": json.dumps(
            {"inpaint.inpaint": TEST_INPAINT_PIXEL_BUDGET, "ingan.retarget": TEST_RETARGET_PIXEL_BUDGET}
        ),
        "COLLAGE_BATCH_MAX_SIZE": "8",
        "COLLAGE_BATCH_WAIT_TIMEOUT_S": "0.2",
        "COLLAGE_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "COLLAGE_WEBHOOK_SECRET": "test-webhook-secret",
        "COLLAGE_WEBHOOK_MAX_ATTEMPTS": "3",
        "COLLAGE_WEBHOOK_BACKOFF_S": "0.2",
        "COLLAGE_JOBS_POLL_INTERVAL_S": "1",
        # Two runners share every job test's jobs through their leases; a killed runner's job is taken over 10 s on
        "COLLAGE_JOBS_RUNNER_REPLICAS": "2",
        "COLLAGE_JOBS_LEASE_S": "10",
        "COLLAGE_WEBHOOK_ALLOW_PRIVATE": "true",  # the webhook receivers of the tests listen on loopback
        "COLLAGE_AUTH": "required",
        "COLLAGE_API_KEYS": api_keys_json(),
        "COLLAGE_CLIENT_TOKEN": TEST_TOKENS["admin"],
        "COLLAGE_RATE_LIMIT_BURST": str(TEST_RATE_BURST),
        "COLLAGE_MAX_QUEUED_REQUESTS": str(TEST_MAX_QUEUED_REQUESTS),
        "COLLAGE_STORAGE_DEADLINE_S": str(TEST_STORAGE_DEADLINE_S),
        "COLLAGE_STORAGE_BREAKER_FAILURES": "3",
        "COLLAGE_STORAGE_BREAKER_OPEN_S": "3",
    }
    with patched_environ(env):
        local = LocalService()
        local.start()
        try:
            yield local
        finally:
            local.stop()


@pytest.fixture(scope="session")
def client(service):
    import httpx

    with httpx.Client(base_url=service.url, timeout=120, headers=auth_header("admin")) as http:
        yield http


# ------------------------------------------------------------------------------ markers
# The README's test command runs the ``numeric`` tests a second and a third time under other ATEN_CPU_CAPABILITY (and
# oneDNN / MKL) settings, so that an assert which holds only for one CPU's kernels (bit-exact floats from different
# arithmetic) fails here, not on the next machine. ``numeric`` is every test that runs in this process only: none of
# the fixtures below (S3 server, Ray Serve) in its fixture closure and no ``server`` mark. A new test file is picked
# up without marking anything; a test that starts a server itself must carry @pytest.mark.server.
_SERVICE_FIXTURES = frozenset({"s3_server", "store", "service", "client"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("server") is None and _SERVICE_FIXTURES.isdisjoint(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.numeric)


@pytest.fixture(autouse=True)
def _numeric_tests_start_no_ray(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In a ``numeric`` test ray.init raises (LocalService and Serve start Ray through it): such a test belongs behind
    the service fixtures or @pytest.mark.server, and the numeric reruns must not start Ray."""
    if request.node.get_closest_marker("numeric") is not None:
        import ray

        def refuse(*args, **kwargs):
            raise RuntimeError("a numeric test may not start Ray: use the service fixtures or mark it @pytest.mark.server")

        monkeypatch.setattr(ray, "init", refuse)
        running_before = ray.is_initialized()  # the session's service may be up already: only a new start counts
        yield
        if not running_before and ray.is_initialized():
            ray.shutdown()
            pytest.fail("this numeric test started Ray: use the service fixtures or mark it @pytest.mark.server")
    else:
        yield


# ------------------------------------------------------------------------------ network namespaces
# A test marked ``netns`` could make the service connect to a non-loopback address (webhook SSRF cases). It runs in a
# child pytest inside a network namespace of its own (``unshare -n``, loopback only), so a regression can never send
# anything off the machine. Needs root (CI runs as root); outside CI a machine without it skips these tests.
NETNS_ENV = "COLLAGE_TEST_IN_NETNS"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if pyfuncitem.get_closest_marker("netns") is None:
        return None
    if os.environ.get(NETNS_ENV) == "1":
        interfaces = [name for _, name in socket.if_nameindex()]
        assert interfaces == ["lo"], f"a netns test must run with loopback only, not {interfaces}"
        return None  # the child: run the test itself
    script = 'ip link set lo up && exec "$@"'
    command = ["unshare", "--net", "--", "sh", "-c", script, "sh"]
    command += [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "--no-header", pyfuncitem.nodeid]
    try:
        completed = subprocess.run(
            command, env={**os.environ, NETNS_ENV: "1"}, capture_output=True, text=True, timeout=900, cwd=pyfuncitem.config.rootpath
        )
    except FileNotFoundError:
        completed = None
    if completed is None or (completed.returncode != 0 and "unshare failed" in completed.stderr):
        message = "no network namespace here (unshare -n needs root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if completed.returncode != 0:
        pytest.fail(f"in its network namespace the test failed:\n{completed.stdout[-6000:]}\n{completed.stderr[-3000:]}")
    return True
