"""Kill the whole serving process (driver, Ray, every replica) mid-job; on restart the job resumes.

The service runs as ``collage serve`` in a process group of its own, against the session's S3
server under a fresh prefix, so its state survives the SIGKILL exactly as it would in production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import TEST_BUCKET, _free_port
from tests.test_jobs_api import all_results, sample, wait_for


def _start(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "service.tools.cli", "serve", "--families", "collage"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).parent.parent,
        )


def _wait_ready(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"collage serve exited early:\n{log_path.read_text()[-3000:]}"
        try:
            if httpx.get(url + "/readyz", timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"service not ready after {timeout_s} s:\n{log_path.read_text()[-3000:]}")


def _kill_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _listeners(port: int) -> set[int]:
    """Pids of the processes holding a listening TCP socket on ``port`` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                    pids.add(int(entry.name))
    return pids


def _wait_port_released(port: int, timeout_s: float = 90) -> None:
    """Ray's processes die with their driver, but not at once: wait until nothing of the killed run
    holds the port but an orphaned HAProxy, which the restart itself must stop (as after a real crash)."""
    from service.runtime import orphaned_haproxy_pids

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        holders = _listeners(port)
        if not holders or holders <= set(orphaned_haproxy_pids()):
            return
        time.sleep(0.5)
    described = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200] for pid in holders}
    raise AssertionError(f"port {port} still held {timeout_s} s after the kill by {described}")


def test_sigkill_of_the_serving_process_mid_job_then_restart_resumes_it(s3_server, tmp_path):
    from service.config import Settings
    from service.storage import AssetStore

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    prefix = f"restart-{uuid.uuid4().hex[:8]}/"
    env = {
        **os.environ,
        "COLLAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "COLLAGE_S3_BUCKET": TEST_BUCKET,
        "COLLAGE_S3_PREFIX": prefix,
        "COLLAGE_HTTP_PORT": str(port),
        "COLLAGE_RAY_METRICS_PORT": str(_free_port()),
        "COLLAGE_DATA_DIR": str(tmp_path / "data"),
        "COLLAGE_JOBS_POLL_INTERVAL_S": "1",
        "COLLAGE_JOBS_LEASE_S": "5",  # the restarted runner waits one lease duration before it takes the dead one's job over
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        "COLLAGE_AUTH": "disabled",  # a local `collage serve` run, as a developer starts it
    }
    log_path = tmp_path / "serve.log"
    store = AssetStore(Settings(s3_endpoint_url=s3_server.endpoint_url, s3_bucket=TEST_BUCKET, s3_prefix=prefix))
    total = 300

    first = _start(env, log_path)
    try:
        _wait_ready(url, first, log_path)
        with httpx.Client(base_url=url, timeout=60) as client:
            job_id = client.post("/v1/jobs", json={"items": [sample(20_000 + i, i % 4) for i in range(total)]}).json()["job_id"]
            wait_for(client, job_id, until=lambda s: s["counts"]["succeeded"] >= 30)
    finally:
        _kill_group(first, signal.SIGKILL)
    items_prefix = store.relative(store.job_key(job_id, "items")) + "/"
    before = {key: store.get(store.prefix + key) for key in store.list_keys(items_prefix)}
    assert 30 <= len(before) < total, "the service must die mid-job"
    _wait_port_released(port)

    second = _start(env, log_path)
    try:
        _wait_ready(url, second, log_path)
        with httpx.Client(base_url=url, timeout=60) as client:
            status = wait_for(client, job_id)  # nobody resubmits: the new runner finds the job in job-queue/
            assert status["state"] == "succeeded" and status["resumed"] == 1, status
            assert status["counts"] == {"total": total, "succeeded": total, "failed": 0, "cancelled": 0, "pending": 0}
            results = all_results(client, job_id, limit=1000)
    finally:
        _kill_group(second, signal.SIGTERM)
    after = {key: store.get(store.prefix + key) for key in store.list_keys(items_prefix)}
    assert sorted(int(key.rsplit("/", 1)[-1].split(".")[0]) for key in after) == list(range(total)), "each item recorded once"
    assert all(after[key] == record for key, record in before.items()), "items finished before the kill did not run again"
    assert [item["seed"] for item in results] == [20_000 + i for i in range(total)]
    assert all(store.exists(store.result_key(item["result_id"])) for item in results)
    assert not store.list_keys("job-queue/"), "a finished job leaves the queue"
