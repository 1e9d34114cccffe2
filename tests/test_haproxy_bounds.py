"""collage-haproxy (service/tools/haproxy_bounds.py): Ray's HAProxy configuration, bounded, run by the real HAProxy.

tests/data/haproxy-ray-2.60.cfg is a configuration Ray 2.60's HAProxy manager wrote for the Collage app (its run
directory replaced by RUN)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from service.tools.haproxy_bounds import bounded_config, real_haproxy, unavailable_response

RAY_CONFIG = (Path(__file__).parent / "data" / "haproxy-ray-2.60.cfg").read_text()
REPLICA = "SERVE_REPLICA_collage-Ingress-9e5c1ngd"


def _sections(config: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = "top"
    for line in config.splitlines():
        if line and not line[0].isspace():
            current = line.strip()
        sections.setdefault(current, []).append(line.strip())
    return sections


def test_app_backends_get_a_connection_limit_a_queue_timeout_and_a_429_rule_and_nothing_else_changes():
    bounded = bounded_config(RAY_CONFIG, max_conn=7, max_queued=9, queue_timeout_ms=1500, unavailable_file="/x/503.http")
    sections = _sections(bounded)
    backend = sections["backend http-collage"]
    assert f"server {REPLICA} 127.0.0.1:30002 check observe layer4 error-limit 3 on-error mark-down maxconn 7" in backend
    assert any(line.startswith("server SERVE_PROXY_ACTOR-fallback-") and line.endswith("check backup maxconn 7") for line in backend)
    assert "timeout queue 1500ms" in backend
    assert not any("maxconn" in line or "timeout queue" in line for line in sections["backend default_backend"])
    frontend = sections["frontend http_frontend"]
    rule = next(i for i, line in enumerate(frontend) if line.startswith("http-request return status 429"))
    assert rule < frontend.index("use_backend http-collage if is_http-collage")  # before the request is routed
    assert frontend[rule].endswith("if is_http-collage { var(txn.collage_request_id) -m found }"), "the queue read once, by the rule above"
    assert frontend[rule - 1] == "http-request set-var(txn.collage_request_id) uuid if is_http-collage { queue(http-collage) ge 9 }"
    defaults = sections["defaults"]
    assert "errorfile 503 /x/503.http" in defaults
    assert "errorfile 502 /tmp/haproxy-serve/RUN/500.http" in defaults  # a broken replica stays Ray's 500
    # every other line is Ray's, in Ray's order
    added = {frontend[rule - 1], frontend[rule], "timeout queue 1500ms", "errorfile 503 /x/503.http"}
    kept = [line.replace(" maxconn 7", "") for line in bounded.splitlines() if line.strip() not in added]
    assert kept == [line for line in RAY_CONFIG.splitlines() if line.strip() != "errorfile 503 /tmp/haproxy-serve/RUN/500.http"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HoldingReplica:
    """A stand-in ingress replica: answers its health check at once and holds every other request until released."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held = 0
        self.release = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        except OSError:  # HAProxy closed a health check's connection first
            pass

    def _answer(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            while request_line := stream.readline():
                headers = {}
                while (line := stream.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                stream.read(int(headers.get("content-length", "0")))
                if b"/-/healthz" not in request_line:
                    self.held += 1
                    self.release.wait()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


def _post(port: int, answers: list, at: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(b"POST /v1/edits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    answers[at] = (int(lines[0].split()[1]), {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}, body)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


@pytest.mark.server
def test_real_haproxy_holds_the_bound_queues_the_next_and_answers_the_rest_429_then_503_problems(tmp_path):
    replica = HoldingReplica()
    front, fallback = _free_port(), _free_port()
    config = RAY_CONFIG.replace("/tmp/haproxy-serve/RUN", str(tmp_path)).replace("127.0.0.1:30002", f"127.0.0.1:{replica.port}")
    config = config.replace("127.0.0.1:45647", f"127.0.0.1:{front}").replace("127.0.0.1:46799", f"127.0.0.1:{fallback}")
    config = config.replace(":54313", f":{_free_port()}").replace("*:55175", f"127.0.0.1:{_free_port()}")
    (tmp_path / "500.http").write_bytes(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    (tmp_path / "503.http").write_bytes(unavailable_response())
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(bounded_config(config, max_conn=2, max_queued=2, queue_timeout_ms=1500, unavailable_file=str(tmp_path / "503.http")))
    check = subprocess.run([real_haproxy(), "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr  # HAProxy itself accepts the rewritten configuration
    proxy = subprocess.Popen([real_haproxy(), "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:  # up once HAProxy's first health check of the replica passed
            try:
                with socket.create_connection(("127.0.0.1", front), timeout=2) as conn:
                    conn.sendall(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    if conn.recv(64).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "HAProxy never reported the replica up"
            time.sleep(0.1)
        answers: list = [None] * 6
        threads = []
        for at in range(6):  # one at a time, so that which request lands where is known
            threads.append(threading.Thread(target=_post, args=(front, answers, at)))
            threads[-1].start()
            if at < 2:
                while replica.held < at + 1:
                    time.sleep(0.01)
            else:
                time.sleep(0.2)
        threads[4].join()
        threads[5].join()
        assert replica.held == 2  # the replica never had more than its bound
        for status, headers, body in answers[4:]:
            assert status == 429 and headers["content-type"] == "application/problem+json" and headers["retry-after"] == "1"
            problem = json.loads(body)
            assert problem["status"] == 429 and "at capacity" in problem["detail"]
            assert len(headers["x-request-id"]) == 36 and problem["instance"] == headers["x-request-id"]  # a uuid, one per refusal
        assert answers[4][1]["x-request-id"] != answers[5][1]["x-request-id"]
        threads[2].join()
        threads[3].join()
        for status, headers, body in answers[2:4]:  # queued past ingress_queue_timeout_ms
            assert status == 503 and headers["content-type"] == "application/problem+json" and headers["retry-after"] == "1"
            assert json.loads(body)["status"] == 503
        replica.release.set()
        threads[0].join()
        threads[1].join()
        assert [answer[0] for answer in answers[:2]] == [200, 200]
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        replica.listener.close()


def test_the_real_binary_is_never_this_command_even_when_ray_is_told_to_run_it(monkeypatch, tmp_path):
    wrapper = tmp_path / "collage-haproxy"
    wrapper.write_text("#!/bin/sh\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(wrapper))
    binary = real_haproxy()
    assert binary != str(wrapper) and Path(binary).name == "haproxy"
    assert subprocess.run([binary, "-v"], capture_output=True, text=True).stdout.startswith("HAProxy version")
    assert Path(os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"]) == wrapper  # left as Ray set it
