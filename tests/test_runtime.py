"""The local runner's care for HAProxy: free ports per run, and no HAProxy outliving a killed run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from service.runtime import LOCAL_SERVE_PORT_ENV, local_serve_ports, reap_orphaned_haproxy


def test_each_local_run_gets_free_haproxy_ports_that_its_later_children_do_not_inherit(monkeypatch):
    for name in LOCAL_SERVE_PORT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_STATS_PORT", "18404")  # set by the operator: kept
    with local_serve_ports() as chosen:
        assert set(chosen) == set(LOCAL_SERVE_PORT_ENV) - {"RAY_SERVE_HAPROXY_STATS_PORT"}
        assert len(set(chosen.values())) == len(chosen) and all(int(port) > 1024 for port in chosen.values())
        assert all(os.environ[name] == port for name, port in chosen.items()), "Ray, started now, inherits them"
    assert not set(chosen) & set(os.environ), "gone once Ray started: a later `collage serve` picks its own"
    assert os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"


def test_an_haproxy_left_by_a_killed_run_is_stopped_and_a_live_one_is_not(tmp_path):
    # Stand-ins: a process whose argv[0] ends in /haproxy with a config under /haproxy-serve/, one
    # whose parent is no Ray worker (an orphan), and one that is no HAProxy of Ray's at all.
    fake = tmp_path / "bin" / "haproxy"
    fake.parent.mkdir()
    fake.symlink_to(sys.executable)
    sleep = ["-c", "import time; time.sleep(60)"]
    orphan = subprocess.Popen([str(fake), *sleep, "-f", "/tmp/haproxy-serve/node/haproxy.cfg"])
    other = subprocess.Popen([str(fake), *sleep, "-f", str(tmp_path / "my-own.cfg")])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and b"haproxy-serve" not in open(f"/proc/{orphan.pid}/cmdline", "rb").read():
            time.sleep(0.05)
        assert orphan.pid in reap_orphaned_haproxy(wait_s=5)
        assert orphan.wait(timeout=10) is not None
        assert other.poll() is None, "an HAProxy that is not Ray's is left alone"
    finally:
        for process in (orphan, other):
            process.kill()
            process.wait(timeout=10)
